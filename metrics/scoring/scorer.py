"""Score vision-language models on ARO items with the adapter of their family.

A model's score of an item is one number per candidate; the prediction is the candidate with the strictly highest
score, or -1 on a tie.

>>> model, processor = load_model("openai/clip-vit-base-patch32")  # doctest: +SKIP
>>> result = score_items(model, processor, load_dataset("ORG/aro", "relation", split="test"))  # doctest: +SKIP
>>> result.predictions[:3], result.truncated_captions  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .adapters import adapter_class
from .data import Items, predict
from .runtime import Runtime


@dataclass
class ScoreResult:
    """Scores of N items with K candidates each, and what the scorer did to get them."""

    scores: np.ndarray  # [N, K]
    predictions: list[int]  # index of the strictly best candidate, -1 on a tie
    references: list[int]  # index of the true caption: always 0
    groups: list[str] | None
    truncated_captions: int = 0
    unique_images: int = 0
    unique_captions: int = 0
    notes: dict = field(default_factory=dict)


class Scorer:
    """Scores ARO-shaped datasets with one model, through the adapter of its family.

    Options are those of `Runtime`: `device`, `dtype`, `batch_size`, `num_workers`, `distributed`.
    """

    def __init__(self, model, processor, **runtime_options):
        self.runtime = Runtime(**runtime_options)
        self.adapter = adapter_class(model)(model, processor, self.runtime)

    def score(self, dataset, group_column: str | None = None) -> ScoreResult:
        """Score every item of an ARO-shaped `datasets.Dataset`."""
        items = Items.from_dataset(dataset)
        scores = self.adapter.score(items)
        groups = [str(group) for group in dataset[group_column]] if group_column and group_column in dataset.column_names else None
        captions = items.unique_captions
        return ScoreResult(
            scores=scores,
            predictions=predict(scores),
            references=[0] * len(items.candidates),
            groups=groups,
            truncated_captions=self.adapter.truncated_captions(captions),
            unique_images=len(items.image_rows),
            unique_captions=len(captions),
        )


def score_items(model, processor, dataset, group_column: str | None = None, **runtime_options) -> ScoreResult:
    """Score an ARO-shaped dataset with an already loaded model and processor (see `Runtime` for the options)."""
    return Scorer(model, processor, **runtime_options).score(dataset, group_column=group_column)
