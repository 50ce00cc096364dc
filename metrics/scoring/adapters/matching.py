"""Image-text matching heads: a model that reads an image and a caption together and says whether they match.

BLIP's ITM head (`BlipForImageTextRetrieval`): the vision tower runs once per unique image, and its states are
reused by every (image, caption) pair, batched; the score is the probability of "match".
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import Items, image_batches
from .base import Adapter, ImagePreprocess


class BlipMatchingAdapter(Adapter):
    family = "blip-itm"

    @torch.no_grad()
    def vision_states(self, items: Items, rows: list[int]) -> torch.Tensor:
        states = []
        for pixel_values in image_batches(items.dataset, rows, items.image_column, ImagePreprocess(self.image_processor), self.runtime):
            with self.runtime.autocast():
                output = self.model.vision_model(pixel_values=pixel_values.to(self.runtime.device, non_blocking=True))
            states.append(output.last_hidden_state.float().cpu())
        return torch.cat(states)

    @torch.no_grad()
    def match_probabilities(self, image_states: torch.Tensor, pairs: list[tuple[int, str]]) -> torch.Tensor:
        def encode(batch: list[tuple[int, str]]) -> torch.Tensor:
            tokens = self.tokenize([caption for _, caption in batch])
            states = image_states[[image for image, _ in batch]].to(self.runtime.device)
            with self.runtime.autocast():
                text = self.model.text_encoder(
                    input_ids=tokens["input_ids"],
                    attention_mask=tokens["attention_mask"],
                    encoder_hidden_states=states,
                    encoder_attention_mask=torch.ones(states.shape[:2], dtype=torch.long, device=self.runtime.device),
                ).last_hidden_state
                return self.model.itm_head(text[:, 0, :]).float().softmax(dim=-1)[:, 1].cpu()

        return self.runtime.batched(encode, pairs, "pairs")

    def score(self, items: Items) -> np.ndarray:
        states = self.runtime.gathered(lambda rows: self.vision_states(items, rows), items.image_rows)
        flat = self.runtime.gathered(lambda pairs: self.match_probabilities(states, pairs), items.pairs())
        return items.unflatten(flat.numpy())
