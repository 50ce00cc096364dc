"""What every adapter shares: the model on its device, its processor's parts, and caption tokenisation."""

from __future__ import annotations

import numpy as np
import torch

from ..data import Items
from ..runtime import Runtime

# SigLIP pools the last position, so it was trained (and must be run) with captions padded to the limit.
PAD_TO_LIMIT = ("siglip", "siglip2")


def features_of(output) -> torch.Tensor:
    """transformers 5 returns an output object from get_*_features; older versions a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ImagePreprocess:
    """Collate a batch of PIL images through an image processor at once (picklable, so it runs in workers)."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, images) -> torch.Tensor:
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]


class Adapter:
    """Scores ARO items for one model family: `score(items)` gives one number per candidate, higher is better.

    Subclasses set `family` (a short name recorded in results) and implement `score`.
    """

    family = "adapter"

    def __init__(self, model, processor, runtime: Runtime):
        self.runtime = runtime
        self.model = model.to(runtime.device).eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.image_processor = getattr(processor, "image_processor", processor)
        config = getattr(model.config, "text_config", model.config)
        limits = [getattr(config, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None)]
        self.text_limit = min((limit for limit in limits if limit and limit < 1_000_000), default=None)
        self.padding = "max_length" if model.config.model_type in PAD_TO_LIMIT else True

    def score(self, items: Items) -> np.ndarray:
        raise NotImplementedError

    def settings(self) -> dict:
        """How this adapter scores, beyond its family, as results.json records it (prompts, for instance)."""
        return {}

    def tokenize(self, captions: list[str]) -> dict:
        return self.tokenizer(
            captions, padding=self.padding, truncation=self.text_limit is not None, max_length=self.text_limit, return_tensors="pt"
        ).to(self.runtime.device)

    def token_lengths(self, captions: list[str]) -> list[int]:
        """Untruncated token counts, in one tokenizer call: for batching by length and counting truncations."""
        return [len(ids) for ids in self.tokenizer(captions)["input_ids"]]

    def truncated_captions(self, captions: list[str]) -> int:
        """How many of `captions` are longer than the text tower takes (they are cut to fit)."""
        if self.text_limit is None:
            return 0
        return sum(length > self.text_limit for length in self.token_lengths(captions))
