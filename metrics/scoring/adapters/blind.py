"""The text-only ("blind") baseline: a causal language model picks the caption it finds most likely, image unseen.

Each distinct caption (by the token ids the model reads) is scored once by its mean token log-likelihood,
`mean_t log p(token_t | tokens_<t)`, over every token after the first context token (the tokenizer's start token
where it has one, else its end token, else the caption's own first token). SugarCrepe (Hsieh et al., NeurIPS 2023)
showed that such a model beats CLIP on parts of ARO, since many swapped captions are ungrammatical or implausible: a
model's ARO accuracy means little where the blind model does as well.

>>> model, tokenizer = load_blind_model("gpt2")  # doctest: +SKIP
>>> result = score_items(model, tokenizer, dataset, adapter=BlindAdapter)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import Items
from ..runtime import Runtime
from .base import Adapter


class BlindAdapter(Adapter):
    family = "blind-lm"

    def __init__(self, model, tokenizer, runtime: Runtime):
        super().__init__(model, tokenizer, runtime)
        self.image_processor = None
        self.context = next(
            (token for token in (tokenizer.bos_token_id, tokenizer.eos_token_id) if token is not None), None
        )
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.context or 0)

    def token_ids(self, caption: str) -> list[int]:
        """The caption's tokens after a context token, so that its first word is scored too."""
        ids = self.tokenizer(caption)["input_ids"]
        if self.context is not None and (not ids or ids[0] != self.context):
            ids = [self.context] + ids
        return ids[-self.text_limit :] if self.text_limit else ids

    def text_keys(self, captions: list[str]) -> list[tuple[int, ...]]:
        return [tuple(self.token_ids(caption)) for caption in captions]

    @torch.no_grad()
    def log_likelihoods(self, captions: list[str]) -> torch.Tensor:
        """Mean token log-likelihood of each caption, batched (right-padded) by length, in input order."""

        def encode(batch: list[str]) -> torch.Tensor:
            ids = [self.token_ids(caption) for caption in batch]
            width = max(map(len, ids))
            input_ids = torch.tensor([row + [self.pad] * (width - len(row)) for row in ids], device=self.runtime.device)
            mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids], device=self.runtime.device)
            with self.runtime.autocast():
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
            token_log_probs = logits[:, :-1].log_softmax(dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]
            scored = mask[:, 1:].float()
            return ((token_log_probs * scored).sum(dim=1) / scored.sum(dim=1).clamp(min=1)).cpu()

        return self.by_length(encode, captions)

    def score(self, items: Items) -> np.ndarray:
        captions = items.unique_captions
        likelihoods = self.each_text_once(self.log_likelihoods, captions)
        index = {caption: position for position, caption in enumerate(captions)}
        return likelihoods[
            torch.tensor([[index[caption] for caption in options] for options in items.candidates])
        ].numpy()
