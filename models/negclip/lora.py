"""LoRA for CLIP and NegCLIP through `peft`, merged into the weights when saved so that a checkpoint stays a plain
CLIP/NegCLIP folder (`from_pretrained` loads it without peft).

FSC-CLIP (Oh et al., 2024) fine-tunes with LoRA of rank 4 as one of its two recipes (`--lora-rank 4`, learning
rate 5e-5 instead of 5e-6). `add_lora` puts a rank-r adapter (W + alpha/r B A, B starting at zero) on the named
linear layers of both towers, in place, and freezes every other weight (`logit_scale` included), as their
`mark_only_lora_as_trainable` does. Differences from their LoRA: theirs adapts every linear layer (attention,
MLP) and the patch embedding, the attention's q, k and v through one shared A (OpenCLIP's fused `in_proj`), with
alpha 1; the default here adapts the attention projections, q, k, v and out each with its own A and B, with the
same alpha 1 (scale alpha / r = 1/4). `LoraOptions(targets=(..., "fc1", "fc2", "patch_embedding"))` comes closer.

>>> model = add_lora(NegCLIPModel.from_pretrained(start), LoraOptions(rank=4))  # doctest: +SKIP
>>> ...  # train: only the adapters have requires_grad
>>> merged_model(model).save_pretrained(folder)  # a plain NegCLIP folder  # doctest: +SKIP
>>> save_lora(model, folder)  # lora.json + lora.safetensors beside it, for resuming  # doctest: +SKIP
>>> resumed = load_lora(NegCLIPModel.from_pretrained(folder), folder)  # continues bitwise  # doctest: +SKIP

A checkpoint's merged weights are for use, not for resuming: the adapted layers' weights there are W + alpha/r B A,
and taking B A out again would not give W bit for bit. So `save_lora` stores, besides the adapters, the frozen base
weights of the adapted layers, and `load_lora` puts both back over the merged ones.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aro.core.errors import InvalidInput, MissingInput

from .loading import reason_of

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")  # of both towers' attention layers
LORA_FILE = "lora"  # lora.json (the options) and lora.safetensors (adapters and base weights) in a checkpoint


@dataclass(frozen=True)
class LoraOptions:
    """A LoRA adapter: its rank, its alpha (the update is scaled by alpha / rank) and the layers it adapts (names
    that end a module's path, as peft's `target_modules`)."""

    rank: int = 4
    alpha: float = 1.0
    targets: tuple[str, ...] = ATTENTION_PROJECTIONS

    def check(self) -> None:
        if self.rank < 1:
            raise InvalidInput(f"--lora-rank must be at least 1, not {self.rank}")
        if not self.alpha > 0:
            raise InvalidInput(f"--lora-alpha must be positive, not {self.alpha}")
        if not self.targets:
            raise InvalidInput("--lora-targets names no layer")


def add_lora(model: torch.nn.Module, options: LoraOptions) -> torch.nn.Module:
    """Put LoRA adapters on `model`'s target layers (in place) and freeze every other weight; returns `model`."""
    options.check()
    from peft import LoraConfig, inject_adapter_in_model  # here: a run without LoRA never loads peft (half a second)

    config = LoraConfig(
        r=options.rank, lora_alpha=options.alpha, target_modules=list(options.targets), lora_dropout=0.0
    )
    try:
        return inject_adapter_in_model(config, model)
    except ValueError as error:  # peft's: no module of the model has one of these names
        raise InvalidInput(
            f"--lora-targets {' '.join(options.targets)}: {reason_of(error)} "
            "(CLIP's layers: q_proj k_proj v_proj out_proj fc1 fc2 patch_embedding)"
        ) from None


def _lora_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """`model`'s modules that carry an adapter, by name. Without peft loaded (`add_lora` loads it) there are none."""
    lora = sys.modules.get("peft.tuners.lora")
    if lora is None:
        return []
    return [(name, module) for name, module in model.named_modules() if isinstance(module, lora.LoraLayer)]


def has_lora(model: torch.nn.Module) -> bool:
    return bool(_lora_layers(model))


def lora_options(model: torch.nn.Module) -> LoraOptions:
    """The options `add_lora` gave `model`."""
    config = model.peft_config["default"]
    return LoraOptions(rank=config.r, alpha=config.lora_alpha, targets=tuple(sorted(config.target_modules)))


def merged_model(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` (same class) with every adapter added into its layer's weight and taken out: what
    `save_pretrained` writes of it is a plain checkpoint. `model` itself keeps training."""
    merged = copy.deepcopy(model)
    for name, module in _lora_layers(merged):
        module.merge()
        parent, _, child = name.rpartition(".")
        setattr(merged.get_submodule(parent), child, module.get_base_layer())
    del merged.peft_config
    return merged


def save_lora(model: torch.nn.Module, folder: Path) -> None:
    """Write the adapters of `model` and the base weights under them to `folder` (`lora.json`, `lora.safetensors`)."""
    (folder / f"{LORA_FILE}.json").write_text(json.dumps(asdict(lora_options(model)), indent=2))
    save_file(
        {name: tensor.contiguous() for name, tensor in _lora_state(model).items()}, folder / f"{LORA_FILE}.safetensors"
    )


def load_lora(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """Give `model` (loaded from `folder`'s merged weights, or any model of the same shape) the adapters and base
    weights `save_lora` wrote to `folder`, adding the adapters first when it has none; returns `model`."""
    options_file, tensor_file = folder / f"{LORA_FILE}.json", folder / f"{LORA_FILE}.safetensors"
    if not options_file.is_file() or not tensor_file.is_file():
        raise MissingInput(f"{folder} holds no LoRA adapters ({options_file.name} and {tensor_file.name})")
    try:
        saved = json.loads(options_file.read_text())
        options = LoraOptions(rank=saved["rank"], alpha=saved["alpha"], targets=tuple(saved["targets"]))
        tensors = load_file(tensor_file)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as error:
        raise InvalidInput(f"{folder}: its LoRA adapters cannot be read ({reason_of(error)})") from None
    if not has_lora(model):
        add_lora(model, options)
    elif lora_options(model) != options:
        raise InvalidInput(f"{folder}: its LoRA adapters ({options}) are not the model's ({lora_options(model)})")
    expected = _lora_state(model)
    wrong = sorted(
        name
        for name in expected.keys() | tensors.keys()
        if name not in tensors or name not in expected or tensors[name].shape != expected[name].shape
    )
    if wrong:
        raise InvalidInput(
            f"{tensor_file}: not the adapters of this model ({len(wrong)} tensors differ: {wrong[0]}, ...)"
        )
    model.load_state_dict(tensors, strict=False)
    return model


def _lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' weights and the frozen base weights of the layers they adapt, by state-dict name."""
    return {name: tensor for name, tensor in model.state_dict().items() if ".lora_" in name or ".base_layer." in name}
