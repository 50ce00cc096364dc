"""One adapter per model family, chosen from the model's class (which `load_model` chose from the checkpoint's
`config.architectures`) and its config, never from what `AutoModel` happens to build.

`decide(model_class, config)` makes the choice from the class and config alone, before any weights load: an adapter,
or a refusal with its reason (one line, never a traceback at scoring time). A new family is an `Adapter` subclass
naming the `architectures` (or `model_types`) it scores, added to `FAMILIES`. A generative model gets one of two
adapters: `SharedPrefixAdapter` where its pairs can share the image's prefix, `PerPairAdapter` where they cannot
(`why_no_shared_prefix` says why), or none (`why_not_scored` says why).

>>> from transformers import CONFIG_MAPPING, Kosmos2ForConditionalGeneration, Pix2StructForConditionalGeneration
>>> decide(Kosmos2ForConditionalGeneration, CONFIG_MAPPING["kosmos-2"]()).how
'per pair'
>>> decide(Pix2StructForConditionalGeneration, CONFIG_MAPPING["pix2struct"]()).how
'refused'
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import transformers
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES, MODEL_MAPPING_NAMES

from aro.core.errors import InvalidInput

from .base import Adapter
from .blind import BlindAdapter
from .dual import DualEncoderAdapter, FlavaAdapter
from .generative import GenerativeAdapter, PerPairAdapter, SharedPrefixAdapter, why_no_shared_prefix, why_not_scored
from .hook import CallableAdapter, HookError, hook_name, load_hook
from .matching import Blip2MatchingAdapter, BlipMatchingAdapter, BridgeTowerMatchingAdapter, ViltMatchingAdapter

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
    family.summary for family in (DualEncoderAdapter, *FAMILIES, GenerativeAdapter, CallableAdapter)
)


def is_generative(architecture: str) -> bool:
    """Whether `architecture` is one that `AutoModelForImageTextToText` builds (a generative vision-language model)."""
    return architecture in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.values()


class UnsupportedModel(InvalidInput):
    """The model belongs to no family that an adapter scores."""


@dataclass(frozen=True)
class Decision:
    """How a model class is scored: by `adapter`, or refused (`adapter` None) for `reason`; a generative model's
    `reason` says why its pairs run whole (`PerPairAdapter`)."""

    adapter: type[Adapter] | None
    reason: str | None = None

    @property
    def how(self) -> str:
        """ "refused", "shared prefix", "per pair", or the adapter's family ("dual-encoder", "blip-itm", ...)."""
        if self.adapter is None:
            return "refused"
        return {SharedPrefixAdapter: "shared prefix", PerPairAdapter: "per pair"}.get(self.adapter, self.adapter.family)

    def refusal(self, name: str) -> str:
        """The one line a refused `name` gets."""
        if self.reason is None:
            return f"{name} cannot be scored on ARO. Supported: {'; '.join(SUPPORTED_FAMILIES)}."
        return f"{name} is not scored: {self.reason}"


def decide(model_class: type, config) -> Decision:
    """How `model_class` with `config` is scored, from the class and the config alone (no weights, no instance):
    its registered family, its generative adapter, a dual encoder (`get_image_features` and `get_text_features`),
    or a refusal with its reason."""
    name, model_type = model_class.__name__, getattr(config, "model_type", None)
    if name in ADAPTERS:
        return Decision(ADAPTERS[name])
    if model_type in MODEL_TYPES:
        return Decision(MODEL_TYPES[model_type])
    if is_generative(name):
        refusal = why_not_scored(model_class, config)
        if refusal is not None:
            return Decision(None, refusal)
        per_pair = why_no_shared_prefix(model_class, config)
        return Decision(SharedPrefixAdapter if per_pair is None else PerPairAdapter, per_pair)
    if hasattr(model_class, "get_image_features") and hasattr(model_class, "get_text_features"):
        return Decision(DualEncoderAdapter)
    return Decision(None)


def refuse_unscored(model_class: type, config) -> None:
    """`UnsupportedModel` where `decide` refuses the class that `model_class` builds for `config` (an auto class
    builds its mapping's class), so that a model that would not be scored is refused before its weights load."""
    if model_class.__module__.startswith("transformers.models.auto"):
        name = MODEL_MAPPING_NAMES.get(getattr(config, "model_type", None))
        if not isinstance(name, str) or not hasattr(transformers, name):
            return  # a class transformers does not name (remote code): decided once it is built
        model_class = getattr(transformers, name)
    decision = decide(model_class, config)
    if decision.adapter is None:
        raise UnsupportedModel(decision.refusal(model_class.__name__))


def adapter_class(model) -> type[Adapter]:
    """The adapter for a loaded model (or a scoring function); `UnsupportedModel` in one line where `decide` refuses
    it (naming the supported families where it belongs to none)."""
    if callable(model) and not isinstance(model, torch.nn.Module):
        return CallableAdapter
    decision = decide(type(model), getattr(model, "config", None))
    if decision.adapter is None:
        raise UnsupportedModel(decision.refusal(type(model).__name__))
    return decision.adapter


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
    "Decision",
    "DualEncoderAdapter",
    "FlavaAdapter",
    "GenerativeAdapter",
    "HookError",
    "PerPairAdapter",
    "SharedPrefixAdapter",
    "UnsupportedModel",
    "ViltMatchingAdapter",
    "adapter_class",
    "decide",
    "hook_name",
    "is_generative",
    "load_hook",
    "refuse_unscored",
]
