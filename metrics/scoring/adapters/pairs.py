"""Scoring every (image, caption) pair with a forward that reads both: the shared machinery of matching heads and
the user's hook.

Each distinct pair (its image and what the model reads of its caption) is scored once (`Adapter.each_pair_once`).
The pairs are put in image order, split over the processes in contiguous shares, and walked a chunk of
`batch_size` unique images at a time: each chunk's images are decoded and encoded once (`encode_images`), then
every caption shown with them is scored in batches of pairs (`match`). Memory stays bounded by one chunk, however
large the config.
"""

from __future__ import annotations

from functools import partial
from itertools import groupby
from operator import itemgetter

import numpy as np
import torch

from ..data import Items, image_batches
from .base import Adapter, ImagePreprocess


class PairAdapter(Adapter):
    """Subclasses implement `encode_images(inputs)` (what every pair of a chunk reads from its image: vision
    states, or the pixel inputs themselves) and `match(states, pairs)`: scores of `(position in chunk, caption)`
    pairs, higher meaning a better match. `preprocess` turns a list of PIL images into the `inputs`."""

    @property
    def preprocess(self):
        return ImagePreprocess(self.image_processor, all_inputs=True)

    def encode_images(self, inputs):
        raise NotImplementedError

    def match(self, states, pairs: list[tuple[int, str]]) -> torch.Tensor:
        raise NotImplementedError

    def score(self, items: Items) -> np.ndarray:
        return self.score_pairs(items, self.match)

    def score_pairs(self, items: Items, match) -> np.ndarray:
        """`match` over each distinct pair of `items` once, sharded over the processes, as an [N, K, ...] array."""
        return self.each_pair_once(items, lambda share: self.score_share(items, share, match))

    @torch.no_grad()
    def score_share(self, items: Items, pairs: list[tuple[int, str]], match) -> torch.Tensor:
        """Scores of `pairs` (sorted by image), each image encoded once per chunk of `batch_size` images."""
        by_image = [(image, [caption for _, caption in group]) for image, group in groupby(pairs, key=itemgetter(0))]
        rows = [items.image_rows[image] for image, _ in by_image]
        size = self.runtime.batch_size
        scores = []
        for start, inputs in zip(
            range(0, len(by_image), size),
            image_batches(items.dataset, rows, items.image_column, self.preprocess, self.runtime),
        ):
            with self.runtime.autocast():
                states = self.encode_images(inputs)
            chunk = [
                (position, caption)
                for position, (_, captions) in enumerate(by_image[start : start + size])
                for caption in captions
            ]
            scores.append(self.runtime.batched(partial(self.match_batch, match, states), chunk, "pairs"))
        return torch.cat(scores)

    def match_batch(self, match, states, batch: list[tuple[int, str]]) -> torch.Tensor:
        """`match(states, batch)` under autocast, as float32 on the CPU."""
        with self.runtime.autocast():
            return match(states, batch).float().cpu()
