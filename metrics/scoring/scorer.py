"""Score vision-language models on ARO items with the adapter of their family.

A model's score of an item is one number per candidate; the prediction is the candidate with the strictly highest
score, or -1 on a tie. An option with the true caption's text is no negative: its score is NaN and it is ignored;
an item with no negative left is not counted (`ScoreResult.counted`). A score that a model or scorer gives as NaN
or infinity is refused, naming the item and the option (`checks.check_scores_finite`).

>>> model, processor = load_model("openai/clip-vit-base-patch32")  # doctest: +SKIP
>>> result = score_items(model, processor, load_dataset("ORG/aro", "relation", split="test"))  # doctest: +SKIP
>>> result.predictions[:3], result.truncated_captions  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aro.core.contract import uses_same_words
from aro.core.errors import InvalidInput
from aro.core.protocol import predict

from .adapters import Adapter, GenerativeAdapter, adapter_class
from .checks import check_scores_finite
from .data import Items
from .runtime import Runtime


@dataclass
class ScoreResult:
    """Scores of N items with K candidates each, and what the scorer did to get them."""

    scores: np.ndarray  # [N, K]; NaN where an option has the true caption's text (not a negative)
    predictions: list[int]  # index of the chosen candidate (see `protocol.predict`), -1 on a tie that counts wrong
    references: list[int]  # index of the true caption: always 0
    groups: list[str] | None
    identical_options: int = 0  # items with at least one option equal to the true caption
    without_negative: list[int] = field(default_factory=list)  # items whose every option equals it: not counted
    truncated_captions: int = 0
    unique_images: int = 0
    unique_captions: int = 0
    distinct_inputs: dict[str, int] = field(default_factory=dict)  # texts and pairs computed, each once
    notes: dict = field(default_factory=dict)
    other_heads: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # [N, K] scores of a model's further heads (BLIP-2's itc)
    same_words: list[bool] = field(default_factory=list)  # per item: a negative has the true caption's very words

    def kept(self) -> list[int]:
        """The items that have a negative: what accuracy is computed over."""
        left_out = set(self.without_negative)
        return [item for item in range(len(self.predictions)) if item not in left_out]

    def counted(self, groups: list[str] | None = None) -> tuple[list[int], list[int], list[str] | None]:
        """Predictions, references and groups (`groups`, default the result's own) of the items that have a
        negative: what accuracy is computed over."""
        groups = self.groups if groups is None else groups
        kept = self.kept()
        return (
            [self.predictions[item] for item in kept],
            [self.references[item] for item in kept],
            None if groups is None else [groups[item] for item in kept],
        )


class Scorer:
    """Scores ARO-shaped datasets with one model, through the adapter of its family.

    `model` is a loaded model, or a function `score(images, captions) -> one number per pair` (see
    `adapters.hook`); `adapter` overrides the family's adapter (`BlindAdapter` for a causal language model).
    Options are a `runtime`, or those of `Runtime`: `device`, `dtype`, `batch_size`, `num_workers`, `distributed`; a
    generative model also takes `score` ("vqa" or "likelihood") and `prompts` (`GenerativePrompts`).
    """

    def __init__(
        self,
        model,
        processor=None,
        runtime: Runtime | None = None,
        adapter: type[Adapter] | None = None,
        score: str | None = None,
        prompts=None,
        **runtime_options,
    ):
        self.runtime = runtime or Runtime(**runtime_options)
        adapter = adapter or adapter_class(model)
        generative = {name: value for name, value in (("score", score), ("prompts", prompts)) if value is not None}
        if generative and not issubclass(adapter, GenerativeAdapter):
            raise InvalidInput(
                f"--score and the prompts apply to generative models; {type(model).__name__} is scored by the "
                f"{adapter.family} adapter"
            )
        self.adapter = adapter(model, processor, self.runtime, **generative)

    def score(self, dataset, group_column: str | None = None, protocol: str = "paper") -> ScoreResult:
        """Score every item of an ARO-shaped `datasets.Dataset`; `protocol` decides how ties predict."""
        items = Items.from_dataset(dataset, progress=self.runtime.progress)
        same = items.same_as_true()
        self.adapter.distinct_inputs = {}
        heads = self.adapter.score_heads(items)
        for head, scores in heads.items():
            named = self.adapter.scorer_name + (f" (its {head} head)" if len(heads) > 1 else "")
            check_scores_finite(scores, items.candidates, items.item_ids, named)
        (_, scores), *others = ((head, np.where(same, np.nan, scores)) for head, scores in heads.items())
        groups = (
            [str(group) for group in dataset[group_column]]
            if group_column and group_column in dataset.column_names
            else None
        )
        captions = items.unique_captions
        return ScoreResult(
            scores=scores,
            predictions=predict(scores, protocol),
            references=[0] * len(items.candidates),
            groups=groups,
            identical_options=int(same.any(axis=1).sum()),
            without_negative=np.flatnonzero(same[:, 1:].all(axis=1)).tolist(),
            truncated_captions=self.adapter.truncated_captions(captions),
            unique_images=len(items.image_rows),
            unique_captions=len(captions),
            distinct_inputs=dict(self.adapter.distinct_inputs),
            notes=dict(getattr(self.adapter, "notes", {})),
            other_heads=dict(others),
            same_words=[uses_same_words(options) for options in items.candidates],
        )


def score_items(
    model,
    processor,
    dataset,
    group_column: str | None = None,
    protocol: str = "paper",
    adapter: type[Adapter] | None = None,
    **runtime_options,
) -> ScoreResult:
    """Score an ARO-shaped dataset with an already loaded model and processor, or a scoring function and None
    (see `Scorer`, and `Runtime` for the options)."""
    return Scorer(model, processor, adapter=adapter, **runtime_options).score(
        dataset, group_column=group_column, protocol=protocol
    )
