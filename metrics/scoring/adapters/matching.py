"""Image-text matching heads: models that read an image and a caption together and say whether they match.

- BLIP (`BlipForImageTextRetrieval`): the vision tower runs once per unique image; the text encoder reads each
  caption with cross-attention to those states; the score is the matching head's probability of "match".
- BLIP-2 (`Blip2ForImageTextRetrieval`): the vision tower runs once per unique image; the Q-Former reads its
  learned queries and the caption together and the matching head's logits, averaged over the queries, give the
  probability of "match" (the main score). Its contrastive head is scored too (`itc`): the best cosine between
  the image's projected queries and the caption's projected [CLS], each distinct text encoded once.
- ViLT (`ViltForImageAndTextRetrieval`) and BridgeTower (`BridgeTowerForImageAndTextRetrieval`): image and text
  meet from the first layer (ViLT) or in every cross-modal layer (BridgeTower), so only the image preprocessing is
  shared across an image's captions; each pair goes through the model's own forward. ViLT's score is its
  retrieval logit, BridgeTower's the probability of "match".
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import Items
from .base import text_limit
from .pairs import PairAdapter


def image_mask(states: torch.Tensor) -> torch.Tensor:
    """Attend to every vision state."""
    return torch.ones(states.shape[:2], dtype=torch.long, device=states.device)


class BlipMatchingAdapter(PairAdapter):
    family = "blip-itm"
    summary = "BLIP image-text matching (BlipForImageTextRetrieval)"
    architectures = ("BlipForImageTextRetrieval",)

    def encode_images(self, inputs: dict) -> torch.Tensor:
        return self.model.vision_model(pixel_values=inputs["pixel_values"].to(self.runtime.device)).last_hidden_state

    def match(self, states: torch.Tensor, pairs: list[tuple[int, str]]) -> torch.Tensor:
        tokens = self.tokenize([caption for _, caption in pairs])
        image_states = states[[position for position, _ in pairs]]
        text = self.model.text_encoder(
            input_ids=tokens["input_ids"],
            attention_mask=tokens["attention_mask"],
            encoder_hidden_states=image_states,
            encoder_attention_mask=image_mask(image_states),
        ).last_hidden_state
        return self.model.itm_head(text[:, 0, :]).float().softmax(dim=-1)[:, 1]


class Blip2MatchingAdapter(PairAdapter):
    family = "blip2-itm"
    summary = "BLIP-2 image-text matching (Blip2ForImageTextRetrieval; its contrastive head as a second score)"
    architectures = ("Blip2ForImageTextRetrieval",)

    def __init__(self, model, processor, runtime):
        super().__init__(model, processor, runtime)
        # Captions go through the Q-Former, not the language model that `text_config` describes.
        self.text_limit = text_limit(model.config.qformer_config, self.tokenizer)

    def queries(self, batch_size: int) -> torch.Tensor:
        return self.model.query_tokens.expand(batch_size, -1, -1)

    def encode_images(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Vision states (for the matching head) and normalised projected queries (for the contrastive head)."""
        states = self.model.vision_model(pixel_values=inputs["pixel_values"].to(self.runtime.device)).last_hidden_state
        queries = self.model.qformer(
            query_embeds=self.queries(len(states)),
            encoder_hidden_states=states,
            encoder_attention_mask=image_mask(states),
        ).last_hidden_state
        return states, torch.nn.functional.normalize(
            self.model.vision_projection(queries.to(self.model.vision_projection.weight.dtype)), dim=-1
        )

    @torch.no_grad()
    def text_features(self, captions: list[str]) -> torch.Tensor:
        """Normalised projected [CLS] of each caption read by the Q-Former alone (the contrastive head's text side)."""

        def encode(batch: list[str]) -> torch.Tensor:
            tokens = self.tokenize(batch)
            with self.runtime.autocast():
                text = self.model.qformer(
                    query_embeds=self.model.embeddings(input_ids=tokens["input_ids"]),
                    query_length=0,
                    attention_mask=tokens["attention_mask"],
                ).last_hidden_state
                return (
                    self.model.text_projection(text[:, 0, :].to(self.model.text_projection.weight.dtype)).float().cpu()
                )

        return torch.nn.functional.normalize(self.by_length(encode, captions), dim=-1)

    def match_both(
        self, states, pairs: list[tuple[int, str]], texts: torch.Tensor, index: dict[str, int]
    ) -> torch.Tensor:
        """[pairs, 2]: the matching head's probability of "match" and the contrastive head's best query cosine."""
        vision, queries = states
        positions = [position for position, _ in pairs]
        tokens = self.tokenize([caption for _, caption in pairs])
        image_states, pair_queries = vision[positions], self.queries(len(pairs))
        attention = torch.cat([image_mask(pair_queries), tokens["attention_mask"]], dim=1)
        joint = self.model.qformer(
            query_embeds=self.model.embeddings(input_ids=tokens["input_ids"], query_embeds=pair_queries),
            query_length=pair_queries.shape[1],
            attention_mask=attention,
            encoder_hidden_states=image_states,
            encoder_attention_mask=image_mask(image_states),
        ).last_hidden_state
        logits = self.model.itm_head(joint[:, : pair_queries.shape[1], :].to(self.model.itm_head.weight.dtype)).mean(
            dim=1
        )
        text = texts[[index[caption] for _, caption in pairs]].to(queries.device, queries.dtype)
        contrastive = torch.einsum("bqd,bd->bq", queries[positions], text).max(dim=1).values
        return torch.stack([logits.float().softmax(dim=-1)[:, 1], contrastive.float()], dim=1)

    def score_heads(self, items: Items) -> dict[str, np.ndarray]:
        captions = items.unique_captions
        texts = self.each_text_once(self.text_features, captions)
        index = {caption: position for position, caption in enumerate(captions)}
        both = self.score_pairs(items, lambda states, pairs: self.match_both(states, pairs, texts, index))
        return {"itm": both[..., 0], "itc": both[..., 1]}

    def score(self, items: Items) -> np.ndarray:
        return self.score_heads(items)["itm"]


class JointForwardAdapter(PairAdapter):
    """Models whose image and text streams meet inside the encoder: the pixels are prepared once per image and
    each pair goes through the model's own forward."""

    def encode_images(self, inputs: dict) -> dict:
        return {name: tensor.to(self.runtime.device) for name, tensor in inputs.items()}

    def logits(self, pixels: dict, pairs: list[tuple[int, str]]) -> torch.Tensor:
        positions = [position for position, _ in pairs]
        return self.model(
            **self.tokenize([caption for _, caption in pairs]),
            **{name: tensor[positions] for name, tensor in pixels.items()},
        ).logits


class ViltMatchingAdapter(JointForwardAdapter):
    family = "vilt-itm"
    summary = "ViLT image-text retrieval (ViltForImageAndTextRetrieval)"
    architectures = ("ViltForImageAndTextRetrieval",)

    def match(self, pixels: dict, pairs: list[tuple[int, str]]) -> torch.Tensor:
        return self.logits(pixels, pairs)[:, 0]


class BridgeTowerMatchingAdapter(JointForwardAdapter):
    family = "bridgetower-itm"
    summary = "BridgeTower image-text retrieval (BridgeTowerForImageAndTextRetrieval)"
    architectures = ("BridgeTowerForImageAndTextRetrieval",)

    def match(self, pixels: dict, pairs: list[tuple[int, str]]) -> torch.Tensor:
        return self.logits(pixels, pairs).float().softmax(dim=-1)[:, 1]
