"""One adapter per model family, chosen from the model's class (which `load_model` chose from the checkpoint's
`config.architectures`) or its model type, never from what `AutoModel` happens to build.

A new family is an `Adapter` subclass naming the `architectures` (or `model_types`) it scores, added to `FAMILIES`.
A generative model gets one of two adapters: `SharedPrefixAdapter` where its pairs can share the image's prefix,
`PerPairAdapter` where they cannot (`why_no_shared_prefix` says why). A model of open_clip's classes gets
`OpenClipAdapter`.
"""

from __future__ import annotations

import torch
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from aro.core.errors import InvalidInput

from .base import Adapter
from .blind import BlindAdapter
from .dual import DualEncoderAdapter, FlavaAdapter
from .generative import GenerativeAdapter, PerPairAdapter, SharedPrefixAdapter, why_no_shared_prefix
from .hook import CallableAdapter, HookError, hook_name, load_hook
from .matching import Blip2MatchingAdapter, BlipMatchingAdapter, BridgeTowerMatchingAdapter, ViltMatchingAdapter
from .open_clip import OpenClipAdapter, OpenClipProcessor, is_open_clip_model

# Families chosen by architecture or model type, before the dual-encoder fallback (any model with
# get_image_features and get_text_features).
FAMILIES: tuple[type[Adapter], ...] = (
    FlavaAdapter,
    BlipMatchingAdapter,
    Blip2MatchingAdapter,
    ViltMatchingAdapter,
    BridgeTowerMatchingAdapter,
)

# Architecture name (as in `config.architectures`) -> the adapter that scores it; `load_model` builds these classes.
ADAPTERS: dict[str, type[Adapter]] = {
    architecture: family for family in FAMILIES for architecture in family.architectures
}
MODEL_TYPES: dict[str, type[Adapter]] = {model_type: family for family in FAMILIES for model_type in family.model_types}

SUPPORTED_FAMILIES = tuple(
    family.summary for family in (DualEncoderAdapter, *FAMILIES, GenerativeAdapter, OpenClipAdapter, CallableAdapter)
)


def is_generative(architecture: str) -> bool:
    """Whether `architecture` is one that `AutoModelForImageTextToText` builds (a generative vision-language model)."""
    return architecture in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.values()


class UnsupportedModel(InvalidInput):
    """The model belongs to no family that an adapter scores."""


def adapter_class(model) -> type[Adapter]:
    """The adapter for a loaded model (or a scoring function); `UnsupportedModel` naming the supported families."""
    if callable(model) and not isinstance(model, torch.nn.Module):
        return CallableAdapter
    name = type(model).__name__
    if name in ADAPTERS:
        return ADAPTERS[name]
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    if is_open_clip_model(model):
        return OpenClipAdapter
    if is_generative(name):
        return SharedPrefixAdapter if why_no_shared_prefix(model) is None else PerPairAdapter
    if hasattr(model, "get_image_features") and hasattr(model, "get_text_features"):
        return DualEncoderAdapter
    raise UnsupportedModel(f"{name} cannot be scored on ARO. Supported: {'; '.join(SUPPORTED_FAMILIES)}.")


__all__ = [
    "ADAPTERS",
    "FAMILIES",
    "MODEL_TYPES",
    "SUPPORTED_FAMILIES",
    "Adapter",
    "BlindAdapter",
    "Blip2MatchingAdapter",
    "BlipMatchingAdapter",
    "BridgeTowerMatchingAdapter",
    "CallableAdapter",
    "DualEncoderAdapter",
    "FlavaAdapter",
    "GenerativeAdapter",
    "HookError",
    "OpenClipAdapter",
    "OpenClipProcessor",
    "PerPairAdapter",
    "SharedPrefixAdapter",
    "UnsupportedModel",
    "ViltMatchingAdapter",
    "adapter_class",
    "hook_name",
    "is_generative",
    "load_hook",
]
