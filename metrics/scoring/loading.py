"""Load a model and its processor by Hub id or local path, as the class its checkpoint was saved from.

A checkpoint is built as the first of its `config.architectures` that an adapter scores (a BLIP matching
checkpoint as `BlipForImageTextRetrieval`, not as the `BlipModel` that `AutoModel` would build), else by
`AutoModel`. Weights the checkpoint lacks would be left random and give silently wrong scores, so a checkpoint
with any `missing_keys` is refused, naming the parts (heads, towers) it lacks. A folder without a processor or
weights, or with a weights file that is corrupt or cut short, is refused in one line too; the processor is loaded
first, as it takes a fraction of the weights' time.

A model that open_clip builds is named `hf-hub:ORG/NAME` or `open_clip:ARCH:PRETRAINED` (`OpenClipReference`) and
loaded by open_clip itself (`load_open_clip`, the `open_clip` extra).

The weights are loaded as the `Runtime` says (`placement_arguments`): in its dtype (fp32 unless asked otherwise,
whatever dtype the checkpoint was saved in, so that scores do not depend on how it was saved), with its attention
implementation, and with a device map spread over the devices by accelerate's big-model loading.
`describe_weights` says what came of it, for results.json.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
import warnings
import weakref
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from safetensors import SafetensorError, safe_open
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoProcessor,
    AutoTokenizer,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.utils import is_torchvision_available, logging

from aro.core.errors import InvalidInput, MissingInput
from aro.core.io import sha256_of

from .adapters import ADAPTERS, OpenClipProcessor, is_generative, refuse_unscored
from .results import Weights
from .runtime import Runtime


class MissingWeights(InvalidInput):
    """The checkpoint has no weights for part of the model it would be scored with."""


def first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def unreadable_weights(model_id: str) -> str:
    """The local weights files of `model_id` that safetensors cannot open (what a corrupt or truncated file gives)."""
    broken = []
    for path in sorted(Path(model_id).expanduser().glob("*.safetensors")):
        try:
            with safe_open(path, "pt"):
                pass
        except SafetensorError:
            broken.append(path.name)
    return ", ".join(broken) or "a weights file"


@contextmanager
def loading(model_id: str, what: str):
    """One line instead of a traceback where `model_id` has no `what` (its weights, its processor) that loads, or a
    weights file that is corrupt or truncated."""
    try:
        yield
    except SafetensorError as error:
        raise InvalidInput(
            f"model {model_id}: {unreadable_weights(model_id)} cannot be read ({error}): the file is corrupt or "
            "truncated; save or download it again"
        ) from None
    except OSError as error:  # transformers' "no file named ...", "Can't load image processor ..."
        raise MissingInput(f"model {model_id} has no {what} that can be loaded: {first_line(error)}") from None


def load_processor(model_id: str, revision: str | None = None, trust_remote_code: bool = False):
    """The checkpoint's processor, its image processor the PIL backend's wherever the family has one.

    transformers 5 has a torchvision and a PIL image backend whose pixel values differ (by up to 0.09 on the
    processors of the README's measurement), so the backend is pinned: scores must not depend on whether torchvision
    happens to be installed. Only the image processor is asked for PIL (the rest of the processor, a video processor
    that exists only for torchvision, say, is built as its checkpoint says); a processor that cannot be built without
    torchvision, or another package, is refused in one line saying which.
    """
    options = dict(revision=revision, trust_remote_code=trust_remote_code)
    with loading(model_id, "processor"), needing_packages(model_id):
        try:
            image_processor = AutoImageProcessor.from_pretrained(model_id, backend="pil", **options)
        except (OSError, ValueError):  # no image processor saved (a text-only tokenizer folder): the processor says
            image_processor = None
        parts = {"image_processor": image_processor} if image_processor is not None else {}
        try:
            processor = AutoProcessor.from_pretrained(model_id, **options, **parts)
        except TypeError:  # a processor that is an image processor alone takes no image_processor argument
            processor = image_processor or AutoProcessor.from_pretrained(model_id, **options)
    # transformers hands the image_processor argument to the tokenizer too, which would then fail to save it.
    getattr(getattr(processor, "tokenizer", None), "init_kwargs", {}).pop("image_processor", None)
    refuse_empty_tokenizer(model_id, getattr(processor, "tokenizer", processor))
    return processor


@contextmanager
def needing_packages(model_id: str):
    """One line instead of transformers' ImportError where the processor needs a package that is not installed:
    torchvision (Qwen2-VL's video processor, an image processor with no PIL backend), num2words (SmolVLM's)."""
    try:
        yield
    except (ImportError, ValueError) as error:
        message = " ".join(str(error).split())
        if "torchvision" in message.lower() and not is_torchvision_available():
            raise InvalidInput(
                f"model {model_id}: its processor needs torchvision, which is not installed: install the torchvision "
                f"release that matches torch {torch.__version__.split('+')[0]} (see the README's quick start)"
            ) from None
        if isinstance(error, ImportError):
            raise InvalidInput(
                f"model {model_id}: its processor needs a package that is not installed: {message}"
            ) from None
        raise


def refuse_empty_tokenizer(model_id: str, tokenizer) -> None:
    """transformers builds a tokenizer of its special tokens alone from a folder without tokenizer files: every
    caption would read as unknown tokens, and every item would tie. `MissingInput` for such a tokenizer."""
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    if special and len(tokenizer) <= len(special):
        raise MissingInput(
            f"model {model_id} has no tokenizer files: its tokenizer knows only its {len(tokenizer)} special tokens, "
            "so every caption would read as unknown tokens (save the processor with the model)"
        )


def refuse_missing_weights(model_id: str, model, missing_keys: list[str]) -> None:
    """`MissingWeights` naming the top-level modules of `missing_keys` (e.g. BLIP's `itm_head`), if any."""
    if missing_keys:
        parts = sorted({key.split(".")[0] for key in missing_keys})
        raise MissingWeights(
            f"{model_id} has no weights for {', '.join(parts)} of {type(model).__name__} ({len(missing_keys)} tensors "
            "missing): scoring with them would use random weights; give a checkpoint trained with that head"
        )


def model_config(model_id: str, revision: str | None = None, trust_remote_code: bool = False):
    """The checkpoint's config; a one-line `ValueError` when `model_id` is a file, a missing path or unreachable."""
    path = Path(model_id).expanduser()
    if path.is_file() or (model_id.startswith((".", "/", "~")) and not path.exists()):
        raise InvalidInput(
            f"model {model_id} is not a folder (a model is a folder saved by save_pretrained, or a Hub id ORG/NAME)"
        )
    try:
        return AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
    # OSError: not a folder, not on the Hub, or the Hub out of reach; ValueError: a folder without a model config
    # (a dataset folder, say). transformers says which.
    except (OSError, ValueError) as error:
        raise InvalidInput(f"model {model_id!r} cannot be loaded: {first_line(error)}") from None


@contextmanager
def quiet_load_report():
    """Silence transformers' multi-line load report: missing weights are refused in one line instead."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def placement_arguments(runtime: Runtime) -> dict:
    """`from_pretrained`'s arguments for the runtime's weights dtype, attention implementation and device map."""
    arguments = {"dtype": runtime.weights_dtype}
    if runtime.attn_implementation is not None:
        arguments["attn_implementation"] = runtime.attn_implementation
    if runtime.device_map is not None:
        arguments |= {"device_map": runtime.device_map, "max_memory": runtime.max_memory}
    return arguments


@contextmanager
def offload_space(runtime: Runtime):
    """A new folder inside the runtime's `offload_folder` (None without one) for the weights that transformers must
    re-save before offloading them to the disk; the user's folder is never written into otherwise. The caller ties
    its removal to the model (`remove_with`); it is removed at once if loading fails."""
    if runtime.offload_folder is None:
        yield None
        return
    Path(runtime.offload_folder).expanduser().mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="aro-offload-", dir=Path(runtime.offload_folder).expanduser())
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def remove_with(model, folder: str | None) -> None:
    """Remove `folder` now if it is empty, else once `model` is freed (or Python exits): it holds weights the model
    reads at every forward."""
    if folder is None:
        return
    if not any(Path(folder).iterdir()):
        Path(folder).rmdir()
    else:
        weakref.finalize(model, shutil.rmtree, folder, ignore_errors=True)


@contextmanager
def placement_refusals(model_id: str, model_class, runtime: Runtime):
    """One line instead of a traceback where the model class cannot run with the attention implementation asked for,
    or its device map needs an offload folder nobody gave."""
    try:
        with warnings.catch_warnings():  # accelerate names top-level parameters (CLIP's logit_scale) as unmatched keys
            warnings.filterwarnings("ignore", message="The following device_map keys do not match")
            yield
    except (ValueError, ImportError) as error:
        message = " ".join(str(error).split())
        name = getattr(model_class, "__name__", "the model")
        if runtime.attn_implementation is not None and "attention" in message.lower():
            raise InvalidInput(
                f"model {model_id} cannot run with --attn-implementation {runtime.attn_implementation}: "
                f"{message.split('. ')[0].rstrip('.')} ({name})"
            ) from None
        if "offload_folder" in message:
            raise InvalidInput(
                f"model {model_id}: the device map puts weights on the disk that transformers must re-save first (the "
                "checkpoint is not safetensors, or its weights are converted as they load): give --offload-folder"
            ) from None
        raise


@contextmanager
def offload_refusal(*models):
    """One line instead of a traceback where a model spread by a device map reads a weight that accelerate keeps
    offloaded (on the meta device) outside its hooks: transformers code that moves inputs to a weight's device or to
    `model.device` (BLIP-2's Q-Former embeddings; a model whose first layer went to the disk)."""
    try:
        yield
    except (RuntimeError, NotImplementedError) as error:
        spread = [type(model).__name__ for model in models if getattr(model, "hf_device_map", None) is not None]
        if not spread or "meta" not in str(error):
            raise
        raise InvalidInput(
            f"{' and '.join(spread)} cannot run with weights offloaded to the CPU or the disk: its code reads an "
            f"offloaded weight outside accelerate's hooks ({first_line(error)}); give the GPUs room for the whole "
            "model (--max-memory), or leave out --device-map"
        ) from None


def load_weights(model_class, model_id: str, revision: str | None, trust_remote_code: bool, runtime: Runtime):
    """`model_class.from_pretrained(model_id)` in eval mode, placed as `runtime` says (`placement_arguments`),
    refused in one line where weights are missing (in part, or as files) or unreadable, or the placement cannot be."""
    with offload_space(runtime) as offload_folder:
        with loading(model_id, "weights"), quiet_load_report(), placement_refusals(model_id, model_class, runtime):
            model, info = model_class.from_pretrained(
                model_id,
                revision=revision,
                trust_remote_code=trust_remote_code,
                output_loading_info=True,
                **placement_arguments(runtime),
                **({"offload_folder": offload_folder} if offload_folder else {}),
            )
        refuse_missing_weights(model_id, model, info["missing_keys"])
    remove_with(model, offload_folder)
    preload_offloaded_attention(model)
    return model.eval()


def preload_offloaded_attention(model) -> None:
    """torch's `MultiheadAttention` reads the weights of its `out_proj` without calling it, so where it is offloaded
    (SigLIP's pooling head, Idefics2's resampler) accelerate's hooks would leave them on the meta device: its own
    hook loads them with its weights (what accelerate's `preload_module_classes` does; transformers passes none)."""
    for module in model.modules():
        if isinstance(module, torch.nn.MultiheadAttention):
            hook = getattr(module, "_hf_hook", None)
            for each in getattr(hook, "hooks", [hook]):
                if getattr(each, "offload", False):
                    each.place_submodules = True


def load_model(model_id: str, revision: str | None = None, trust_remote_code: bool = False, runtime=None):
    """(model, processor) of `model_id`, the model built as the architecture its config names, its weights loaded
    as `runtime` (a `Runtime`; default fp32, whole) says; an open_clip model (`hf-hub:ORG/NAME`,
    `open_clip:ARCH:PRETRAINED`) by open_clip."""
    open_clip_model = open_clip_reference(model_id)
    if open_clip_model is not None:
        return load_open_clip(open_clip_model, revision)
    config = model_config(model_id, revision, trust_remote_code)
    architecture = next((name for name in config.architectures or [] if name in ADAPTERS or is_generative(name)), None)
    model_class = getattr(transformers, architecture) if architecture else AutoModel
    refuse_unscored(model_class, config)  # before the processor and the weights load
    processor = load_processor(model_id, revision, trust_remote_code)
    return load_weights(model_class, model_id, revision, trust_remote_code, runtime or Runtime()), processor


def load_blind_model(model_id: str, revision: str | None = None, trust_remote_code: bool = False, runtime=None):
    """(causal language model, tokenizer) of `model_id`, for the text-only baseline, loaded as `load_model` loads."""
    config = model_config(model_id, revision, trust_remote_code)
    remote_causal_lm = "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not remote_causal_lm:
        raise InvalidInput(
            f"--blind {model_id} is a {config.model_type} model, not a language model that writes text "
            "(AutoModelForCausalLM): the blind baseline needs one, such as Qwen/Qwen2.5-0.5B"
        )
    with loading(model_id, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
    refuse_empty_tokenizer(model_id, tokenizer)
    return load_weights(AutoModelForCausalLM, model_id, revision, trust_remote_code, runtime or Runtime()), tokenizer


def describe_weights(model) -> Weights:
    """What results.json records of a model's weights: parameters per dtype, bytes per device of a model spread by
    a device map (None: whole on one device), and the attention implementation of its config (and sub-configs)."""
    dtypes = Counter()
    for parameter in model.parameters():
        dtypes[str(parameter.dtype).removeprefix("torch.")] += parameter.numel()
    device_map = getattr(model, "hf_device_map", None)
    return Weights(
        parameters=dict(dtypes.most_common()),
        device_map=None if device_map is None else bytes_per_device(model, device_map),
        attn_implementation=attention_of(getattr(model, "config", None)),  # open_clip models have none
    )


def bytes_per_device(model, device_map: dict) -> dict[str, int]:
    """The bytes of parameters that `device_map` (module or parameter name -> device) puts on each device (a
    GPU index named cuda:N), each parameter counted once (tied weights share one)."""
    modules, counted, placed = dict(model.named_modules()), set(), Counter()
    for name, device in device_map.items():
        tensors = modules[name].parameters() if name in modules else [model.get_parameter(name)]
        for tensor in tensors:
            if id(tensor) not in counted:
                counted.add(id(tensor))
                placed[f"cuda:{device}" if isinstance(device, int) else str(device)] += (
                    tensor.numel() * tensor.element_size()
                )
    return dict(placed)


def attention_of(config) -> str | None:
    """The attention implementation of `config`, or of each of its sub-configs where they differ
    (`text_config=sdpa, vision_config=eager`)."""
    implementations = {"": getattr(config, "_attn_implementation", None)}
    for name in getattr(config, "sub_configs", {}):
        implementations[name] = getattr(getattr(config, name, None), "_attn_implementation", None)
    found = {value for value in implementations.values() if value is not None}
    if len(found) <= 1:
        return next(iter(found), None)
    return ", ".join(f"{name}={value}" for name, value in implementations.items() if name and value is not None)


OPEN_CLIP_INSTALL = 'pip install "aro[open_clip]"'
HUB_PREFIX, OPEN_CLIP_PREFIX = "hf-hub:", "open_clip:"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz")


@dataclass(frozen=True)
class OpenClipReference:
    """A model that open_clip builds, as `--model` names it: `hf-hub:ORG/NAME`, a Hub repo holding
    `open_clip_config.json` and the weights (timm's, laion's, apple's DFN...); or `open_clip:ARCH:PRETRAINED`, one of
    open_clip's architectures (`open_clip.list_models()`) with a pretrained tag (`open_clip.list_pretrained()`) or a
    local checkpoint file.

    >>> open_clip_reference("open_clip:ViT-B-32:/runs/negclip/epoch_3.pt").name
    'open_clip:ViT-B-32:epoch_3.pt'
    """

    model_name: str  # what open_clip's `create_model` takes: `hf-hub:ORG/NAME`, or ARCH
    pretrained: str | None = None  # a tag or a checkpoint file (None for `hf-hub:`, whose repo holds the weights)

    @property
    def checkpoint_file(self) -> Path | None:
        """The local checkpoint file `pretrained` names, if it names one."""
        if self.pretrained is None:
            return None
        path = Path(self.pretrained).expanduser()
        looks_like_a_file = path.suffix in CHECKPOINT_SUFFIXES or "/" in self.pretrained or "\\" in self.pretrained
        return path if path.is_file() or looks_like_a_file else None

    @property
    def name(self) -> str:
        """The reference as reports name it: a checkpoint file by its file name, never its path."""
        if self.pretrained is None:
            return self.model_name
        file = self.checkpoint_file
        return f"{OPEN_CLIP_PREFIX}{self.model_name}:{file.name if file else self.pretrained}"

    def weights_file(self) -> Path:
        """The file open_clip loads the weights from: the checkpoint file, or the tag's or repo's download (from the
        cache once loaded)."""
        from open_clip import pretrained  # the optional extra, loaded by `load_open_clip` first

        if self.checkpoint_file is not None:
            return self.checkpoint_file
        if self.pretrained is None:
            return Path(pretrained.download_pretrained_from_hf(self.model_name.removeprefix(HUB_PREFIX)))
        return Path(pretrained.download_pretrained(pretrained.get_pretrained_cfg(self.model_name, self.pretrained)))

    def commit(self) -> str:
        """The weights' revision: the Hub commit of the snapshot they were loaded from, else `sha256:` of the file."""
        weights = self.weights_file()
        if weights.parent.parent.name == "snapshots":  # huggingface_hub's cache: snapshots/<commit>/<file>
            return weights.parent.name
        return "sha256:" + sha256_of(weights)


def open_clip_reference(model_id: str) -> OpenClipReference | None:
    """The open_clip model `model_id` names (see `OpenClipReference`), or None for a transformers model; one line for
    a malformed reference."""
    if model_id.startswith(HUB_PREFIX):
        repo = model_id.removeprefix(HUB_PREFIX)
        if len(repo.split("/")) != 2 or not all(repo.split("/")):
            raise InvalidInput(f"model {model_id}: an open_clip Hub model is named hf-hub:ORG/NAME")
        return OpenClipReference(model_id)
    if model_id.startswith(OPEN_CLIP_PREFIX):
        architecture, _, pretrained = model_id.removeprefix(OPEN_CLIP_PREFIX).partition(":")
        if not architecture or not pretrained:
            raise InvalidInput(
                f"model {model_id}: name an open_clip model open_clip:ARCH:PRETRAINED, PRETRAINED a pretrained tag "
                "(open_clip.list_pretrained()) or a checkpoint file; without weights it would be scored at random"
            )
        return OpenClipReference(architecture, pretrained)
    return None


@contextmanager
def open_clip_loading(reference: OpenClipReference):
    """One line instead of a traceback where open_clip cannot build `reference`: weights that do not download, that
    are not the architecture's, a file that is not a checkpoint, a model config with keys open_clip does not take
    (open_clip checks some shapes with `assert`)."""
    try:
        yield
    except (
        RuntimeError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AssertionError,
        pickle.UnpicklingError,
        SafetensorError,
    ) as error:
        raise InvalidInput(f"model {reference.name} cannot be loaded by open_clip: {first_line(error)}") from None


def load_open_clip(reference: OpenClipReference, revision: str | None = None) -> tuple:
    """(model, `OpenClipProcessor`) of an open_clip reference, built by `open_clip.create_model_and_transforms` with
    its evaluation transform and `open_clip.get_tokenizer`; refused in one line where open_clip is not installed, the
    architecture or tag is unknown, or the checkpoint file is missing."""
    if revision is not None:
        raise InvalidInput(f"--revision does not apply to {reference.name}: open_clip loads the Hub's default branch")
    try:
        import open_clip  # the optional extra (it needs torchvision): only where an open_clip model is asked for
    except ImportError:
        raise InvalidInput(
            f"model {reference.name} is an open_clip model, and open_clip is not installed: {OPEN_CLIP_INSTALL}"
        ) from None
    if reference.pretrained is not None:
        if reference.model_name not in open_clip.list_models():
            raise InvalidInput(
                f"model {reference.name}: open_clip has no architecture {reference.model_name} "
                "(open_clip.list_models() lists them)"
            )
        tags = open_clip.list_pretrained_tags_by_model(reference.model_name)
        file = reference.checkpoint_file
        if file is not None and not file.is_file():
            raise MissingInput(f"model {reference.name}: no checkpoint file {reference.pretrained}")
        if file is None and reference.pretrained not in tags:
            raise InvalidInput(
                f"model {reference.name}: {reference.pretrained} is neither a checkpoint file nor a pretrained tag of "
                f"{reference.model_name} (its tags: {', '.join(tags) or 'none'})"
            )
    with open_clip_loading(reference):
        model, _, preprocess = open_clip.create_model_and_transforms(
            reference.model_name,
            pretrained=str(reference.checkpoint_file or reference.pretrained) if reference.pretrained else None,
            require_pretrained=True,
        )
        tokenizer = open_clip.get_tokenizer(reference.model_name)
    return model.eval(), OpenClipProcessor(preprocess, tokenizer)
