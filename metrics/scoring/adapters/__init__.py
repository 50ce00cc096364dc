"""One adapter per model family, chosen from the model's class (which `load_model` chose from the checkpoint's
`config.architectures`), never from what `AutoModel` happens to build."""

from __future__ import annotations

from .base import Adapter
from .dual import DualEncoderAdapter
from .generative import GenerativeAdapter
from .matching import BlipMatchingAdapter

# Architecture name (as in `config.architectures`) -> the adapter that scores it.
ADAPTERS: dict[str, type[Adapter]] = {
    "BlipForImageTextRetrieval": BlipMatchingAdapter,
}

SUPPORTED_FAMILIES = (
    "dual encoders with get_image_features/get_text_features (CLIP, NegCLIP, SigLIP, SigLIP 2, ALIGN, AltCLIP, "
    "Chinese-CLIP)",
    "BLIP image-text matching (BlipForImageTextRetrieval)",
    "generative models that AutoModelForImageTextToText builds and that take a key/value cache (LLaVA, LLaVA-NeXT, "
    "Qwen2-VL, Idefics3/SmolVLM, Gemma 3...), scored by --score vqa or likelihood",
)


def is_generative(architecture: str) -> bool:
    """Whether `architecture` is one that `AutoModelForImageTextToText` builds (a generative vision-language model)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return architecture in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.values()


class UnsupportedModel(ValueError):
    """The model belongs to no family that an adapter scores."""


def adapter_class(model) -> type[Adapter]:
    """The adapter for a loaded model; `UnsupportedModel` naming the supported families otherwise."""
    name = type(model).__name__
    if name in ADAPTERS:
        return ADAPTERS[name]
    if is_generative(name):
        return GenerativeAdapter
    if hasattr(model, "get_image_features") and hasattr(model, "get_text_features"):
        return DualEncoderAdapter
    raise UnsupportedModel(f"{name} cannot be scored on ARO. Supported: {'; '.join(SUPPORTED_FAMILIES)}.")


__all__ = ["ADAPTERS", "SUPPORTED_FAMILIES", "Adapter", "BlipMatchingAdapter", "DualEncoderAdapter", "GenerativeAdapter", "UnsupportedModel", "adapter_class", "is_generative"]
