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

The split is read once per run (`TrainingRows`: its captions and image ids by column, never row by row), and so are
its images where they fit in memory (`TrainingImages`: each image decoded once, and without crops preprocessed
once). Batches are preprocessed as tensors by the image processor the run loaded: the torchvision backend where
torchvision is installed (training pixels are never compared across machines; ARO scores are, and keep the pinned
PIL backend of the scoring library).

>>> rows = TrainingRows(data, args, processor)  # once per run  # doctest: +SKIP
>>> batches = NegCLIPBatches(data, args, negatives, neighbours, processor, 0, 0, 2, rows=rows)  # doctest: +SKIP
>>> list(batches[0])  # doctest: +SKIP
['pixel_values', 'input_ids', 'attention_mask', 'negative_input_ids', 'negative_attention_mask', 'negative_mask']
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from datasets import Image as ImageFeature

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


# Images are kept in memory when all of them fit in this many bytes (the synthetic world's 2,000 images take 98 MB as
# 64x64 pixel values); a larger split is decoded batch by batch, in the DataLoader's workers.
IMAGE_MEMORY_BYTES = 1 << 30
SAMPLED_IMAGES = 8  # images decoded to estimate what all of them would take


def decode(stored) -> torch.Tensor:
    """An image as `datasets` stores it (bytes or a path) as an RGB uint8 tensor (3, height, width)."""
    image = ImageFeature().decode_example(stored).convert("RGB")
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


def preprocess(image_processor, images: list[torch.Tensor]) -> torch.Tensor:
    """The model's pixel values of uint8 (3, height, width) tensors, by the processor's own resizing and
    normalisation."""
    return image_processor(images=images, return_tensors="pt", input_data_format="channels_first")["pixel_values"]


class TrainingImages:
    """The images of the training rows, read through their image ids, each decoded once where all of them fit in
    `memory_bytes`: as pixel values when the run takes no crops (then preprocessed once too), else as uint8 tensors
    that each step crops. A split too large is decoded batch by batch."""

    def __init__(
        self,
        data,
        image_column: str,
        image_ids: list[str],
        image_processor,
        augment: bool,
        memory_bytes: int = IMAGE_MEMORY_BYTES,
    ):
        self.stored = data.select_columns([image_column]).cast_column(image_column, ImageFeature(decode=False))
        self.column, self.image_ids, self.image_processor, self.augment = (
            image_column,
            image_ids,
            image_processor,
            augment,
        )
        first_rows = list({image_id: row for row, image_id in reversed(list(enumerate(image_ids)))}.values())
        self.kept: dict[str, torch.Tensor] | None = None
        sample = self._prepared(first_rows[:SAMPLED_IMAGES])
        if sum(image.nbytes for image in sample) * len(first_rows) <= memory_bytes * len(sample):
            self.kept = {}
            for start in range(0, len(first_rows), 256):
                chunk = first_rows[start : start + 256]
                self.kept |= {image_ids[row]: image for row, image in zip(chunk, self._prepared(chunk))}

    def _prepared(self, rows: list[int]) -> list[torch.Tensor]:
        """The images of `rows` as kept: pixel values without crops, else decoded uint8 tensors."""
        decoded = [decode(stored) for stored in self.stored[rows][self.column]]
        return decoded if self.augment or not decoded else list(preprocess(self.image_processor, decoded))

    def pixel_values(self, rows: list[int], crops: list[random.Random] | None = None) -> torch.Tensor:
        """The model's pixel values for `rows`; with `crops`, each image randomly cropped by its own generator."""
        if self.kept is not None:
            images = [self.kept[self.image_ids[row]] for row in rows]
        else:
            images = self._prepared(rows)
        if not self.augment:
            return torch.stack(images)
        size = input_size(self.image_processor)
        return preprocess(
            self.image_processor, [random_resized_crop(image, size, rng) for image, rng in zip(images, crops)]
        )


# Texts whose token ids a run keeps (captions and negatives come back every epoch); beyond it, texts are tokenized at
# each use. The synthetic world has about 24,000; COCO's captions and their negatives, some 2.4 million, would take
# gigabytes as Python lists.
CACHED_TEXTS = 200_000


class TextTokens:
    """Token ids of texts as the tokenizer gives them (truncated to its length, its start and end tokens), each text
    tokenized once per run up to `CACHED_TEXTS`, padded per batch to the longest as the tokenizer pads: its pad id, on
    its padding side. The same tensors as `tokenizer(texts, padding=True, truncation=True)`, without tokenizing the
    same captions again every epoch."""

    def __init__(self, tokenizer, cached_texts: int = CACHED_TEXTS):
        self.tokenizer, self.cached_texts, self.ids = tokenizer, cached_texts, {}

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.tokenizer.pad_token_id is None:  # the tokenizer's own error: it cannot pad
            return self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        new = list(dict.fromkeys(text for text in texts if text not in self.ids))
        new_ids = dict(zip(new, self.tokenizer(new, truncation=True)["input_ids"])) if new else {}
        self.ids |= dict(list(new_ids.items())[: max(0, self.cached_texts - len(self.ids))])
        rows = [self.ids[text] if text in self.ids else new_ids[text] for text in texts]
        # Padded here, not by `tokenizer.pad`: for 256 texts 0.3 ms against its 2.5 ms (and its warning that fast
        # tokenizers pad faster through `__call__`, which tokenizes again).
        width = max(len(ids) for ids in rows)
        input_ids = np.full((len(rows), width), self.tokenizer.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, ids in enumerate(rows):
            place = slice(0, len(ids)) if self.tokenizer.padding_side == "right" else slice(width - len(ids), width)
            input_ids[row, place] = ids
            attention_mask[row, place] = 1
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}


class TrainingRows:
    """The training split as a run reads it, once: captions and image ids by column, every image's rows, the images
    (`TrainingImages`) and the texts' tokens (`TextTokens`)."""

    def __init__(self, data, args: NegCLIPTrainingArguments, processor):
        self.captions = list(data[args.caption_column])
        self.image_ids = [str(image_id) for image_id in data[args.image_id_column]]
        self.image_rows = rows_by_image(self.image_ids)
        self.images = TrainingImages(data, args.image_column, self.image_ids, processor.image_processor, args.augment)
        self.tokens = TextTokens(processor.tokenizer)


class NegCLIPBatches(torch.utils.data.Dataset):
    """Step `index` of an epoch as model inputs; every process takes its own `batch_size` rows of each global batch.

    `args` is a `NegCLIPTrainingArguments`; `negatives[row]` lists the row's swapped-word captions (may be empty),
    `neighbours[row]` rows of its nearest images (any row of an image stands for the image). `rows` is the split as
    read once per run (`TrainingRows`); without it, it is read here.
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
        rows: TrainingRows | None = None,
    ):
        self.args, self.negatives, self.neighbours, self.processor, self.epoch = (
            args,
            negatives,
            neighbours,
            processor,
            epoch,
        )
        self.rows = rows or TrainingRows(data, args, processor)
        order = epoch_order(self.rows.image_rows, args.seed, epoch, args.epoch_rows)
        size = args.batch_size * processes
        self.steps = [
            order[start + process * args.batch_size : start + (process + 1) * args.batch_size]
            for start in range(0, len(order) - size + 1, size)
        ]

    def __len__(self) -> int:
        return len(self.steps)

    def _rng(self, row: int, draw: str) -> random.Random:
        return random.Random(f"{self.args.seed}:{self.epoch}:{row}:{draw}")

    def neighbour_of(self, row: int) -> int:
        """A caption row of one of `row`'s nearest images: the image drawn first, then one of its captions."""
        image = self.rows.image_ids[self._rng(row, "image").choice(self.neighbours[row])]
        return self._rng(row, "neighbour caption").choice(self.rows.image_rows[image])

    def negative_of(self, row: int, key: tuple[int, str]) -> str | None:
        """One of the row's swapped-word captions drawn under `key`, or None when its caption has none."""
        return self._rng(*key).choice(self.negatives[row]) if self.negatives[row] else None

    def __getitem__(self, index: int) -> dict:
        rows = self.steps[index]
        anchors = list(rows)
        if self.args.image_negatives:
            rows = rows + [self.neighbour_of(row) for row in anchors]
        crops = None
        if self.args.augment:
            draws = [(row, "crop") for row in anchors] + [(row, "neighbour crop") for row in anchors]
            crops = [self._rng(*draw) for draw in draws]
        pixel_values = self.rows.images.pixel_values(rows, crops)
        texts = [self.rows.captions[row] for row in rows]
        negatives = []
        if self.args.hard_negatives:
            # A neighbour's negative is drawn under its anchor's key, so that it differs from the anchor's own draw.
            keys = [(row, "text") for row in anchors] + [(anchor, "neighbour text") for anchor in anchors]
            negatives = [self.negative_of(row, key) for row, key in zip(rows, keys)]
            texts = texts + [negative or "" for negative in negatives]
        tokens = self.rows.tokens(texts)
        count = len(rows)
        inputs = {
            "pixel_values": pixel_values,
            "input_ids": tokens["input_ids"][:count],
            "attention_mask": tokens["attention_mask"][:count],
        }
        if self.args.hard_negatives:
            inputs |= {
                "negative_input_ids": tokens["input_ids"][count:],
                "negative_attention_mask": tokens["attention_mask"][count:],
                "negative_mask": torch.tensor([negative is not None for negative in negatives]),
            }
        return inputs
