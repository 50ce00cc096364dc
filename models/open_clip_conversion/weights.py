"""open_clip checkpoints: read without executing pickled code, and renamed onto `CLIPModel`'s parameters.

open_clip's layout (its `model.py` and `transformer.py`): the image tower under `visual.` (`conv1`, `class_embedding`,
`positional_embedding`, `ln_pre`, `transformer.resblocks.N`, `ln_post`, `proj`), the text tower at the top level
(`token_embedding`, `positional_embedding`, `transformer.resblocks.N`, `ln_final`, `text_projection`; under `text.` in
its CustomTextCLIP) and `logit_scale`. A block keeps query, key and value packed in one `attn.in_proj_weight` (and
bias), as `torch.nn.MultiheadAttention` does; projections are stored (in, out), where `nn.Linear` stores (out, in).

>>> weights = read_checkpoint("epoch_3.pt")  # doctest: +SKIP
>>> clip_weights = to_clip_state_dict(weights, OpenCLIPConfig.load("ViT-B-32-quickgelu"))  # doctest: +SKIP
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from aro.core.errors import InvalidInput, MissingInput
from aro.models.negclip.loading import reason_of

from .configs import OpenCLIPConfig

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
# A buffer some open_clip versions save: the text tower's causal mask, which CLIPModel builds itself.
_DERIVED_BUFFERS = ("attn_mask",)
# One transformer block: open_clip's names -> CLIPModel's (the packed attention input is split separately).
_BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The open_clip state dict in `path`: a state dict or a training checkpoint (`{"state_dict": ...}`), DDP's
    `module.` prefixes removed. Pickles are read with `weights_only=True`, which executes no code from the file."""
    path = Path(path)
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise InvalidInput(f"{path}: expected an open_clip checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
    if not path.is_file():
        raise MissingInput(f"{path}: no such checkpoint")
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path}: the file is empty, not an open_clip checkpoint")
    if path.suffix == ".safetensors":
        try:
            content = load_file(path)
        except SafetensorError as error:
            raise InvalidInput(f"{path}: not a readable safetensors file ({reason_of(error)})") from None
    else:
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError) as error:  # code it would have to run, a broken archive
            raise InvalidInput(
                f"{path}: cannot be read as tensors without executing pickled code ({reason_of(error)})"
            ) from None
        except (EOFError, KeyError, ValueError, UnicodeDecodeError):  # what pickle makes of a text or other file
            raise InvalidInput(f"{path}: not a PyTorch checkpoint (a text file, or another format)") from None
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    if not isinstance(content, dict) or not content:
        raise InvalidInput(f"{path}: holds no state dict (a mapping of parameter names to tensors)")
    not_tensors = [key for key, value in content.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise InvalidInput(
            f"{path}: {not_tensors[0]!r} is not a tensor; expected a state dict or {{'state_dict': ...}}"
        )
    if all(key.startswith("module.") for key in content):
        content = {key.removeprefix("module."): value for key, value in content.items()}
    return content


def _tower_names(prefix: str, layers: int) -> list[str]:
    block = [
        "ln_1.weight",
        "ln_1.bias",
        "attn.in_proj_weight",
        "attn.in_proj_bias",
        "attn.out_proj.weight",
        "attn.out_proj.bias",
        "ln_2.weight",
        "ln_2.bias",
        "mlp.c_fc.weight",
        "mlp.c_fc.bias",
        "mlp.c_proj.weight",
        "mlp.c_proj.bias",
    ]
    return [f"{prefix}transformer.resblocks.{index}.{name}" for index in range(layers) for name in block]


def expected_keys(config: OpenCLIPConfig) -> list[str]:
    """Every parameter an open_clip ViT CLIP of `config` saves."""
    text = config.text_prefix
    return [
        "logit_scale",
        "visual.conv1.weight",
        "visual.class_embedding",
        "visual.positional_embedding",
        "visual.ln_pre.weight",
        "visual.ln_pre.bias",
        *_tower_names("visual.", config.vision_layers),
        "visual.ln_post.weight",
        "visual.ln_post.bias",
        "visual.proj",
        f"{text}token_embedding.weight",
        f"{text}positional_embedding",
        *_tower_names(text, config.text_layers),
        f"{text}ln_final.weight",
        f"{text}ln_final.bias",
        f"{text}text_projection",
    ]


def _check_keys(weights: dict[str, torch.Tensor], config: OpenCLIPConfig) -> None:
    expected = expected_keys(config)
    missing = [key for key in expected if key not in weights]
    derived = {config.text_prefix + name for name in _DERIVED_BUFFERS}
    unexpected = sorted(set(weights) - set(expected) - derived)
    for problem, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise InvalidInput(
                f"{problem} key {keys[0]!r}{more} for open_clip {config.source}: is it the right config?"
            )


def _tower(weights: dict[str, torch.Tensor], source: str, target: str, layers: int) -> dict[str, torch.Tensor]:
    """One tower's transformer blocks, renamed, with the packed q/k/v split in open_clip's order."""
    renamed = {}
    for index in range(layers):
        old, new = f"{source}transformer.resblocks.{index}.", f"{target}encoder.layers.{index}."
        for part in ("weight", "bias"):
            packed = weights[f"{old}attn.in_proj_{part}"]
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), packed.chunk(3)):
                renamed[f"{new}self_attn.{name}.{part}"] = chunk
            for old_name, new_name in _BLOCK.items():
                renamed[f"{new}{new_name}.{part}"] = weights[f"{old}{old_name}.{part}"]
    return renamed


def to_clip_state_dict(weights: dict[str, torch.Tensor], config: OpenCLIPConfig) -> dict[str, torch.Tensor]:
    """`CLIPModel` parameter names -> tensors, from an open_clip state dict of `config`.

    Raises `ValueError` naming the first missing or unexpected key: a checkpoint must match its config exactly.
    """
    _check_keys(weights, config)
    text = config.text_prefix
    return {
        "logit_scale": weights["logit_scale"],
        "vision_model.embeddings.patch_embedding.weight": weights["visual.conv1.weight"],
        "vision_model.embeddings.class_embedding": weights["visual.class_embedding"],
        "vision_model.embeddings.position_embedding.weight": weights["visual.positional_embedding"],
        "vision_model.pre_layrnorm.weight": weights["visual.ln_pre.weight"],  # sic: transformers' spelling
        "vision_model.pre_layrnorm.bias": weights["visual.ln_pre.bias"],
        **_tower(weights, "visual.", "vision_model.", config.vision_layers),
        "vision_model.post_layernorm.weight": weights["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": weights["visual.ln_post.bias"],
        "visual_projection.weight": weights["visual.proj"].t(),
        "text_model.embeddings.token_embedding.weight": weights[f"{text}token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": weights[f"{text}positional_embedding"],
        **_tower(weights, text, "text_model.", config.text_layers),
        "text_model.final_layer_norm.weight": weights[f"{text}ln_final.weight"],
        "text_model.final_layer_norm.bias": weights[f"{text}ln_final.bias"],
        "text_projection.weight": weights[f"{text}text_projection"].t(),
    }
