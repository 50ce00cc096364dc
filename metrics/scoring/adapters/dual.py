"""Dual encoders: an image tower and a text tower compared by cosine similarity.

CLIP, NegCLIP, SigLIP, SigLIP 2, ALIGN, AltCLIP, Chinese-CLIP and every model with `get_image_features` and
`get_text_features`; FLAVA through its contrastive embeddings. SigLIP's logits are `scale * cosine + bias`, a
rising function of the cosine, so they rank candidates exactly as the cosine does. Every unique image and every
distinct caption is encoded once; captions are batched by length to cut padding.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import Items, image_batches
from .base import Adapter, ImagePreprocess, features_of


class DualEncoderAdapter(Adapter):
    family = "dual-encoder"
    summary = (
        "dual encoders with get_image_features/get_text_features (CLIP, NegCLIP, SigLIP, SigLIP 2, ALIGN, AltCLIP, "
        "Chinese-CLIP)"
    )

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return features_of(self.model.get_image_features(pixel_values=pixel_values))

    def embed_texts(self, tokens: dict) -> torch.Tensor:
        return features_of(self.model.get_text_features(**tokens))

    @torch.no_grad()
    def image_features(self, dataset, rows: list[int], image_column: str = "image") -> torch.Tensor:
        """Normalised features of the images of `rows` of a dataset holding image bytes, in order."""
        features = []
        for pixel_values in image_batches(
            dataset, rows, image_column, ImagePreprocess(self.image_processor), self.runtime
        ):
            with self.runtime.autocast():
                features.append(
                    self.embed_images(pixel_values.to(self.runtime.device, non_blocking=True)).float().cpu()
                )
        return torch.nn.functional.normalize(torch.cat(features), dim=-1)

    @torch.no_grad()
    def text_features(self, captions: list[str]) -> torch.Tensor:
        """Normalised features of `captions`, batched by length to cut padding, returned in input order."""

        def encode(batch: list[str]) -> torch.Tensor:
            with self.runtime.autocast():
                return self.embed_texts(self.tokenize(batch)).float().cpu()

        return torch.nn.functional.normalize(self.by_length(encode, captions), dim=-1)

    def score(self, items: Items) -> np.ndarray:
        images = self.runtime.gathered(
            lambda rows: self.image_features(items.dataset, rows, items.image_column), items.image_rows
        )
        captions = items.unique_captions
        texts = self.runtime.gathered(self.text_features, captions)
        index = {caption: position for position, caption in enumerate(captions)}
        # Every item of a config has the same number of candidates, so one gather and one product score them all.
        item_images = images[torch.tensor(items.image_of_item)]
        item_captions = texts[torch.tensor([[index[caption] for caption in options] for options in items.candidates])]
        return torch.einsum("nd,nkd->nk", item_images, item_captions).numpy()


class FlavaAdapter(DualEncoderAdapter):
    """FLAVA's `get_*_features` project every token ([batch, tokens, dim], hence the size mismatch of scoring them
    as pooled features); its contrastive head compares the projected first token ([CLS]) of each tower."""

    family = "flava"
    summary = "FLAVA (its contrastive embeddings)"
    model_types = ("flava",)

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return super().embed_images(pixel_values)[:, 0]

    def embed_texts(self, tokens: dict) -> torch.Tensor:
        return super().embed_texts(tokens)[:, 0]
