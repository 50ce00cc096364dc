"""Dual encoders: an image tower and a text tower compared by cosine similarity.

CLIP, NegCLIP, SigLIP, SigLIP 2, ALIGN, AltCLIP, Chinese-CLIP and every model with `get_image_features` and
`get_text_features`; FLAVA through its contrastive embeddings. SigLIP's logits are `scale * cosine + bias`, a
rising function of the cosine, so they rank candidates exactly as the cosine does. Every unique image and every
distinct text (a caption by its token ids) is encoded once, and every distinct (image, text) cosine computed once;
captions are batched by length to cut padding.
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

    @property
    def image_preprocess(self):
        """Turns a list of PIL images into the pixel values `embed_images` takes (picklable, for workers)."""
        return ImagePreprocess(self.image_processor)

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return features_of(self.model.get_image_features(pixel_values=pixel_values))

    def embed_texts(self, tokens: dict) -> torch.Tensor:
        return features_of(self.model.get_text_features(**tokens))

    @torch.no_grad()
    def image_features(self, dataset, rows: list[int], image_column: str = "image") -> torch.Tensor:
        """Normalised features of the images of `rows` of a dataset holding image bytes, in order."""
        features = []
        for pixel_values in image_batches(dataset, rows, image_column, self.image_preprocess, self.runtime):
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

    def caption_features(self, captions: list[str]) -> torch.Tensor:
        """`text_features` of `captions`, sharded over the processes, each distinct text encoded once: captions the
        model reads alike get the very same row."""
        return self.each_text_once(self.text_features, captions)

    def score(self, items: Items) -> np.ndarray:
        images = self.runtime.gathered(
            lambda rows: self.image_features(items.dataset, rows, items.image_column), items.image_rows
        )
        captions = items.unique_captions
        texts = self.caption_features(captions)
        row = {caption: position for position, caption in enumerate(captions)}

        def cosines(pairs: list[tuple[int, str]]) -> torch.Tensor:
            image_rows = torch.tensor([image for image, _ in pairs], dtype=torch.long)
            text_rows = torch.tensor([row[caption] for _, caption in pairs], dtype=torch.long)
            return (images[image_rows] * texts[text_rows]).sum(dim=-1)

        return self.each_pair_once(items, cosines)


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
