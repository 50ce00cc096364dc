"""Load a model and its processor by Hub id or local path, as the class its checkpoint was saved from.

A checkpoint is built as the first of its `config.architectures` that an adapter scores (a BLIP matching
checkpoint as `BlipForImageTextRetrieval`, not as the `BlipModel` that `AutoModel` would build), else by
`AutoModel`. Weights the checkpoint lacks would be left random and give silently wrong scores, so a checkpoint
with any `missing_keys` is refused, naming the parts (heads, towers) it lacks.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from aro.core.errors import InvalidInput

from .adapters import ADAPTERS, is_generative


class MissingWeights(InvalidInput):
    """The checkpoint has no weights for part of the model it would be scored with."""


def load_processor(model_id: str, revision: str | None = None, trust_remote_code: bool = False):
    """The checkpoint's processor, with the PIL image backend pinned where there is a choice.

    transformers 5 has a torchvision and a PIL image backend that differ slightly; scores must not depend on
    whether torchvision happens to be installed.
    """
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(
            model_id, revision=revision, trust_remote_code=trust_remote_code, backend="pil"
        )
    except (TypeError, ValueError):
        return AutoProcessor.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)


def refuse_missing_weights(model_id: str, model, missing_keys: list[str]) -> None:
    """`MissingWeights` naming the top-level modules of `missing_keys` (e.g. BLIP's `itm_head`), if any."""
    if missing_keys:
        parts = sorted({key.split(".")[0] for key in missing_keys})
        raise MissingWeights(
            f"{model_id} has no weights for {', '.join(parts)} of {type(model).__name__} ({len(missing_keys)} tensors missing): "
            "scoring with them would use random weights; give a checkpoint trained with that head"
        )


def model_config(model_id: str, revision: str | None = None, trust_remote_code: bool = False):
    """The checkpoint's config; a one-line `ValueError` when `model_id` is a file, a missing path or unreachable."""
    from transformers import AutoConfig

    path = Path(model_id).expanduser()
    if path.is_file() or (model_id.startswith((".", "/", "~")) and not path.exists()):
        raise InvalidInput(
            f"model {model_id} is not a folder (a model is a folder saved by save_pretrained, or a Hub id ORG/NAME)"
        )
    try:
        return AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as error:  # not a folder, not on the Hub, or the Hub out of reach: transformers says which
        raise InvalidInput(f"model {model_id!r} cannot be loaded: {str(error).splitlines()[0]}") from None


@contextmanager
def quiet_load_report():
    """Silence transformers' multi-line load report: missing weights are refused in one line instead."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def load_model(model_id: str, revision: str | None = None, trust_remote_code: bool = False, dtype=None):
    """(model, processor) of `model_id`, the model built as the architecture its config names."""
    import transformers
    from transformers import AutoModel

    config = model_config(model_id, revision, trust_remote_code)
    architecture = next((name for name in config.architectures or [] if name in ADAPTERS or is_generative(name)), None)
    model_class = getattr(transformers, architecture) if architecture else AutoModel
    with quiet_load_report():
        model, info = model_class.from_pretrained(
            model_id, revision=revision, trust_remote_code=trust_remote_code, dtype=dtype, output_loading_info=True
        )
    refuse_missing_weights(model_id, model, info["missing_keys"])
    return model.eval(), load_processor(model_id, revision, trust_remote_code)


def model_and_processor(model, processor=None, revision: str | None = None, trust_remote_code: bool = False):
    """(name, model, processor) of a Hub id or local path (loaded here), or of a model already loaded with its processor."""
    if isinstance(model, str):
        return (model, *load_model(model, revision=revision, trust_remote_code=trust_remote_code))
    if processor is None:
        raise InvalidInput("a loaded model needs its processor")
    return getattr(model.config, "_name_or_path", type(model).__name__), model, processor


def load_blind_model(model_id: str, revision: str | None = None, trust_remote_code: bool = False, dtype=None):
    """(causal language model, tokenizer) of `model_id`, for the text-only baseline."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_config(model_id, revision, trust_remote_code)
    with quiet_load_report():
        model, info = AutoModelForCausalLM.from_pretrained(
            model_id, revision=revision, trust_remote_code=trust_remote_code, dtype=dtype, output_loading_info=True
        )
    refuse_missing_weights(model_id, model, info["missing_keys"])
    return model.eval(), AutoTokenizer.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
