"""What every adapter shares: the model on its device, its processor's parts, and caption tokenisation.

An adapter scores ARO items for one model family: `score(items)` gives an [N, K] array, one number per candidate,
higher is better. A family registers itself by the architecture names (`config.architectures`) or model types it
scores; `loading.load_model` builds a checkpoint as its registered architecture and `adapters.adapter_class` picks
the adapter of a loaded model.

Every adapter computes each distinct input once (see `data.Distinct`): a text by `text_keys`, what the model reads
of it, through `each_text_once`; a pair by its image and that text, through `each_pair_once`. Identical inputs thus
get the very same score wherever they recur, and `distinct_inputs` counts what was computed.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import torch

from ..data import Distinct, Items
from ..runtime import Runtime

# SigLIP pools the last position, so it was trained (and must be run) with captions padded to the limit.
PAD_TO_LIMIT = ("siglip", "siglip2")


def features_of(output) -> torch.Tensor:
    """transformers 5 returns an output object from get_*_features; older versions a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def text_limit(config, tokenizer) -> int | None:
    """The longest caption, in tokens, that both the text tower and the tokenizer take (None: no limit)."""
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    return min((limit for limit in limits if limit and limit < 1_000_000), default=None)


class ImagePreprocess:
    """Collate a batch of PIL images through an image processor at once (picklable, so it runs in workers).

    Gives the pixel values, or with `all_inputs` every tensor the processor makes (ViLT's `pixel_mask`).
    """

    def __init__(self, image_processor, all_inputs: bool = False):
        self.image_processor = image_processor
        self.all_inputs = all_inputs

    def __call__(self, images):
        inputs = self.image_processor(images=images, return_tensors="pt")
        return dict(inputs) if self.all_inputs else inputs["pixel_values"]


class Adapter:
    """Scores ARO items for one model family: `score(items)` gives one number per candidate, higher is better.

    Subclasses set `family` (a short name recorded in results), `summary` (how the supported-families message
    names them), the `architectures` and `model_types` they score, and implement `score`.
    """

    family = "adapter"
    summary = ""
    architectures: tuple[str, ...] = ()
    model_types: tuple[str, ...] = ()

    def __init__(self, model, processor, runtime: Runtime):
        self.runtime = runtime.place(model)  # on its device, or where a device map spread it
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.image_processor = getattr(processor, "image_processor", processor)
        self.text_limit = text_limit(getattr(model.config, "text_config", model.config), self.tokenizer)
        self.padding = "max_length" if model.config.model_type in PAD_TO_LIMIT else True
        self.distinct_inputs: dict[str, int] = {}  # distinct texts and pairs the last scoring computed

    @property
    def scorer_name(self) -> str:
        """What gave the scores, as error messages name it."""
        return type(self.model).__name__

    def score(self, items: Items) -> np.ndarray:
        raise NotImplementedError

    def settings(self) -> dict:
        """How this adapter scores, beyond its family, as results.json records it (prompts, for instance)."""
        return {}

    def score_heads(self, items: Items) -> dict[str, np.ndarray]:
        """The scores of every head the model scores with, its main head first (most families have one)."""
        return {self.family: self.score(items)}

    def tokenize(self, captions: list[str]) -> dict:
        return self.tokenizer(
            captions,
            padding=self.padding,
            truncation=self.text_limit is not None,
            max_length=self.text_limit,
            return_tensors="pt",
        ).to(self.runtime.device)

    def text_keys(self, captions: list[str]) -> list[Hashable]:
        """What the model reads of each caption: its token ids, cut to the text tower's limit as `tokenize` cuts them
        (padding adds nothing the ids do not decide). Captions that differ only in what the tokenizer drops or maps
        alike (case, spacing, unknown words) get one key."""
        ids = self.tokenizer(captions, truncation=self.text_limit is not None, max_length=self.text_limit)["input_ids"]
        return [tuple(row) for row in ids]

    def each_text_once(self, encode, captions: list[str]) -> torch.Tensor:
        """`encode` over the distinct texts of `captions` (by `text_keys`), sharded over the processes, as one row per
        caption: captions the model reads alike get the very same row."""
        distinct = Distinct.of(self.text_keys(captions))
        self.distinct_inputs["texts"] = len(distinct)
        return distinct.spread(self.runtime.gathered(encode, [captions[first] for first in distinct.firsts]))

    def each_pair_once(self, items: Items, score_pairs) -> np.ndarray:
        """`score_pairs` over the distinct (image, text) pairs of `items` (a list of `(image, caption)` sorted by
        image, each image's pairs side by side), sharded over the processes, as an [N, K, ...] array: pairs the model
        reads alike get the very same score."""
        captions = items.unique_captions
        key_of = dict(zip(captions, self.text_keys(captions), strict=True))
        pairs = items.pairs()
        distinct = Distinct.of((image, key_of[caption]) for image, caption in pairs)
        self.distinct_inputs["pairs"] = len(distinct)
        order = sorted(range(len(distinct)), key=lambda pair: pairs[distinct.firsts[pair]][0])
        scored = self.runtime.gathered(score_pairs, [pairs[distinct.firsts[pair]] for pair in order])
        in_distinct_order = torch.empty_like(scored)
        in_distinct_order[torch.tensor(order)] = scored
        return items.unflatten(distinct.spread(in_distinct_order).numpy())

    def token_lengths(self, captions: list[str]) -> list[int]:
        """Untruncated token counts, in one tokenizer call: for batching by length and counting truncations."""
        return [len(ids) for ids in self.tokenizer(captions)["input_ids"]]

    def truncated_captions(self, captions: list[str]) -> int:
        """How many of `captions` are longer than the text tower takes (they are cut to fit)."""
        if self.text_limit is None:
            return 0
        return sum(length > self.text_limit for length in self.token_lengths(captions))

    def by_length(self, encode, captions: list[str]) -> torch.Tensor:
        """`encode` over `captions` in batches of similar token length (less padding), returned in input order."""
        order = sorted(range(len(captions)), key=self.token_lengths(captions).__getitem__)
        sorted_outputs = self.runtime.batched(
            lambda batch: encode([captions[index] for index in batch]), order, "captions"
        )
        outputs = torch.empty_like(sorted_outputs)
        outputs[torch.tensor(order)] = sorted_outputs
        return outputs
