"""The training batches of one epoch: rows, their nearest-neighbour images and swapped-word negatives, as tensors.

An epoch is one caption per image (`epoch_rows="images"`, as in the authors' training file, where each image
appears once): every epoch draws, for every image, one of its caption rows, then shuffles them. With
`epoch_rows="captions"` an epoch is every caption row instead (about five times longer on COCO).

Each row of a step brings (every draw derives from (seed, epoch, row) alone, never from a global generator, so the
data order is the same on any number of processes and a resumed run sees exactly the batches the interrupted one
would have):
- its image, randomly cropped (`recipe.random_resized_crop`) when `augment` is on, and its caption;
- with `image_negatives`, one of its nearest-neighbour images, with one of *that image's* captions;
- with `hard_negatives`, one swapped-word negative of each of those captions. A caption with no possible swap
  has no negative: its slot holds an empty placeholder text and `negative_mask` is False there, and the loss
  leaves that column out (`loss_negclip.py`). The slot keeps the tensors the same shape on every process.

With several processes, each global batch of `batch_size x processes` rows is cut into one slice per process.

>>> batches = NegCLIPBatches(data, args, negatives, neighbours, processor, 0, process=0, processes=2)  # doctest: +SKIP
>>> list(batches[0])  # doctest: +SKIP
['pixel_values', 'input_ids', 'attention_mask', 'negative_input_ids', 'negative_attention_mask', 'negative_mask']
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

from aro.core.errors import InvalidInput

from .arguments import NegCLIPTrainingArguments
from .recipe import input_size, random_resized_crop

EPOCH_ROWS = ("images", "captions")


def rows_by_image(image_ids: Sequence[str]) -> dict[str, list[int]]:
    """The rows of every image id, images in order of first appearance."""
    rows: dict[str, list[int]] = {}
    for row, image_id in enumerate(image_ids):
        rows.setdefault(image_id, []).append(row)
    return rows


def epoch_order(image_rows: dict[str, list[int]], seed: int, epoch: int, epoch_rows: str = "images") -> list[int]:
    """The rows of epoch `epoch` in training order: one drawn caption row per image, or every row."""
    if epoch_rows == "captions":
        total = sum(len(rows) for rows in image_rows.values())
        return torch.randperm(total, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    if epoch_rows != "images":
        raise InvalidInput(f"epoch_rows must be one of {EPOCH_ROWS}, not {epoch_rows!r}")
    rng = np.random.default_rng([seed, epoch])
    candidates = list(image_rows.values())
    picks = rng.integers(0, [len(rows) for rows in candidates])
    chosen = [rows[pick] for rows, pick in zip(candidates, picks)]
    return [chosen[index] for index in rng.permutation(len(chosen))]


def rows_per_epoch(image_ids: Sequence[str], epoch_rows: str = "images") -> int:
    """How many rows an epoch holds: the number of images, or of caption rows."""
    return len(set(image_ids)) if epoch_rows == "images" else len(image_ids)


class NegCLIPBatches(torch.utils.data.Dataset):
    """Step `index` of an epoch as model inputs; every process takes its own `batch_size` rows of each global batch.

    `args` is a `NegCLIPTrainingArguments`; `negatives[row]` lists the row's swapped-word captions (may be empty),
    `neighbours[row]` rows of its nearest images (any row of an image stands for the image).
    """

    def __init__(
        self,
        data,
        args: NegCLIPTrainingArguments,
        negatives,
        neighbours,
        processor,
        epoch: int,
        process: int = 0,
        processes: int = 1,
    ):
        self.data, self.args, self.negatives, self.neighbours, self.processor, self.epoch = (
            data,
            args,
            negatives,
            neighbours,
            processor,
            epoch,
        )
        self.image_ids = [str(image_id) for image_id in data[args.image_id_column]]
        self.image_rows = rows_by_image(self.image_ids)
        order = epoch_order(self.image_rows, args.seed, epoch, args.epoch_rows)
        size = args.batch_size * processes
        self.steps = [
            order[start + process * args.batch_size : start + (process + 1) * args.batch_size]
            for start in range(0, len(order) - size + 1, size)
        ]
        self.size = input_size(processor.image_processor)

    def __len__(self) -> int:
        return len(self.steps)

    def _rng(self, row: int, draw: str) -> random.Random:
        return random.Random(f"{self.args.seed}:{self.epoch}:{row}:{draw}")

    def neighbour_of(self, row: int) -> int:
        """A caption row of one of `row`'s nearest images: the image drawn first, then one of its captions."""
        image = self.image_ids[self._rng(row, "image").choice(self.neighbours[row])]
        return self._rng(row, "neighbour caption").choice(self.image_rows[image])

    def negative_of(self, row: int, key: tuple[int, str]) -> str | None:
        """One of the row's swapped-word captions drawn under `key`, or None when its caption has none."""
        return self._rng(*key).choice(self.negatives[row]) if self.negatives[row] else None

    def __getitem__(self, index: int) -> dict:
        rows = self.steps[index]
        anchors = list(rows)
        if self.args.image_negatives:
            rows = rows + [self.neighbour_of(row) for row in anchors]
        examples = self.data[
            rows
        ]  # one read of the rows, columns as lists (a column of `select(rows)` reads row by row)
        images = [image.convert("RGB") for image in examples[self.args.image_column]]
        if self.args.augment:
            draws = [(row, "crop") for row in anchors] + [(row, "neighbour crop") for row in anchors]
            images = [random_resized_crop(image, self.size, self._rng(*draw)) for image, draw in zip(images, draws)]
        texts = list(examples[self.args.caption_column])
        negatives = []
        if self.args.hard_negatives:
            # A neighbour's negative is drawn under its anchor's key, so that it differs from the anchor's own draw.
            keys = [(row, "text") for row in anchors] + [(anchor, "neighbour text") for anchor in anchors]
            negatives = [self.negative_of(row, key) for row, key in zip(rows, keys)]
            texts = texts + [negative or "" for negative in negatives]
        batch = self.processor(images=images, text=texts, padding=True, truncation=True, return_tensors="pt")
        count = len(rows)
        inputs = {
            "pixel_values": batch["pixel_values"],
            "input_ids": batch["input_ids"][:count],
            "attention_mask": batch["attention_mask"][:count],
        }
        if self.args.hard_negatives:
            inputs |= {
                "negative_input_ids": batch["input_ids"][count:],
                "negative_attention_mask": batch["attention_mask"][count:],
                "negative_mask": torch.tensor([negative is not None for negative in negatives]),
            }
        return inputs
