"""The training batches of one epoch: rows, their nearest-neighbour images and swapped-word negatives.

Step `index` of an epoch is drawn from (seed, epoch, row) alone, never from a global generator, so the data order
is the same on any number of processes and a resumed run sees exactly the batches the interrupted one would have.
With several processes, each global batch of `batch_size x processes` rows is cut into one slice per process.

>>> batches = NegCLIPBatches(data, args, negatives, neighbours, processor, epoch=0, process=0, processes=2)  # doctest: +SKIP
>>> batches[0].keys()  # doctest: +SKIP
dict_keys(['pixel_values', 'input_ids', 'attention_mask', 'negative_input_ids', 'negative_attention_mask'])
"""

from __future__ import annotations

import random

import torch

from .arguments import NegCLIPTrainingArguments


class NegCLIPBatches(torch.utils.data.Dataset):
    """Step `index` of an epoch: its rows, neighbours and negatives, drawn from (seed, epoch, row) alone."""

    def __init__(self, data, args: NegCLIPTrainingArguments, negatives, neighbours, processor, epoch: int, process: int = 0, processes: int = 1):
        self.data, self.args, self.negatives, self.neighbours, self.processor = data, args, negatives, neighbours, processor
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed * 100_003 + epoch)).tolist()
        # Every process takes its own B rows of each global batch of B x processes rows.
        size = args.batch_size * processes
        self.steps = [order[start + process * args.batch_size : start + (process + 1) * args.batch_size] for start in range(0, len(order) - size + 1, size)]
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> dict:
        rows = self.steps[index]
        if self.args.image_negatives:
            rows = rows + [random.Random(f"{self.args.seed}:{self.epoch}:{row}:image").choice(self.neighbours[row]) for row in rows]
        examples = self.data.select(rows)
        captions = list(examples[self.args.caption_column])
        texts = captions
        if self.args.hard_negatives:
            texts = captions + [
                random.Random(f"{self.args.seed}:{self.epoch}:{row}:text").choice(self.negatives[row] or [caption])
                for row, caption in zip(rows, captions)
            ]
        batch = self.processor(
            images=[image.convert("RGB") for image in examples[self.args.image_column]], text=texts, padding=True, truncation=True, return_tensors="pt"
        )
        count = len(rows)
        inputs = {"pixel_values": batch["pixel_values"], "input_ids": batch["input_ids"][:count], "attention_mask": batch["attention_mask"][:count]}
        if self.args.hard_negatives:
            inputs |= {"negative_input_ids": batch["input_ids"][count:], "negative_attention_mask": batch["attention_mask"][count:]}
        return inputs
