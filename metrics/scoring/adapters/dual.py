"""Dual encoders: an image tower and a text tower compared by cosine similarity.

CLIP, NegCLIP, SigLIP, SigLIP 2, ALIGN, AltCLIP, Chinese-CLIP and every model with `get_image_features` and
`get_text_features`; FLAVA through its contrastive embeddings. SigLIP's logits are `scale * cosine + bias`, a
rising function of the cosine, so they rank candidates exactly as the cosine does. Every unique image and every
distinct caption is encoded once; captions are batched by length to cut padding. The image tower gets every output
of the image processor that `get_image_features` takes: SigLIP 2's variable-resolution (NaFlex) images come with
their patch grid (`spatial_shapes`) and the mask of their padding patches (`pixel_attention_mask`).
"""

from __future__ import annotations

import inspect

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

    def __init__(self, model, processor, runtime):
        super().__init__(model, processor, runtime)
        self.image_inputs = set(inspect.signature(model.get_image_features).parameters) - {"self", "kwargs"}

    def embed_images(self, **image_inputs: torch.Tensor) -> torch.Tensor:
        return features_of(self.model.get_image_features(**image_inputs))

    def embed_texts(self, tokens: dict) -> torch.Tensor:
        return features_of(self.model.get_text_features(**tokens))

    @torch.no_grad()
    def image_features(self, dataset, rows: list[int], image_column: str = "image") -> torch.Tensor:
        """Normalised features of the images of `rows` of a dataset holding image bytes, in order."""
        features = []
        preprocess = ImagePreprocess(self.image_processor, all_inputs=True)
        for inputs in image_batches(dataset, rows, image_column, preprocess, self.runtime):
            image_inputs = {
                name: value.to(self.runtime.device, non_blocking=True)
                for name, value in inputs.items()
                if name in self.image_inputs
            }
            with self.runtime.autocast():
                features.append(self.embed_images(**image_inputs).float().cpu())
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

    def embed_images(self, **image_inputs: torch.Tensor) -> torch.Tensor:
        return super().embed_images(**image_inputs)[:, 0]

    def embed_texts(self, tokens: dict) -> torch.Tensor:
        return super().embed_texts(tokens)[:, 0]
