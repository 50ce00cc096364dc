"""Bootstrap confidence intervals for ARO accuracies: items are resampled with replacement, seeded.

Every accuracy of a report (micro, macro, each group, each Order perturbation) is a function of which items were
right, so one set of resamples serves them all. A resample is held as weights, how many times each item was drawn,
so that a batch of draws is one matrix product per statistic; an interval is the central `confidence` share of a
number's draws (the percentile method).

>>> correct = np.array([1, 1, 0, 1, 0, 1, 1, 1], dtype=float)
>>> micro = lambda weights: weights @ correct / len(correct)  # the accuracy of each resample
>>> low, high = Bootstrap(draws=1000, seed=0).intervals(len(correct), micro)[0]
>>> bool(low <= correct.mean() <= high)
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

DEFAULT_DRAWS = 1000
DRAWS_PER_BATCH = 100


@dataclass(frozen=True)
class Bootstrap:
    """`draws` resamples of N items from a generator seeded with `seed`; `draws=0` turns intervals off."""

    draws: int = DEFAULT_DRAWS
    seed: int = 0
    confidence: float = 0.95

    def weights(self, num_items: int) -> Iterator[np.ndarray]:
        """Batches [B, N] of how many times each item was drawn, B draws at a time, `draws` in all."""
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.draws, DRAWS_PER_BATCH):
            batch = min(DRAWS_PER_BATCH, self.draws - start)
            drawn = rng.integers(0, num_items, (batch, num_items)) + np.arange(batch)[:, None] * num_items
            yield np.bincount(drawn.ravel(), minlength=batch * num_items).reshape(batch, num_items).astype(float)

    def intervals(
        self, num_items: int, statistics: Callable[[np.ndarray], np.ndarray]
    ) -> list[tuple[float, float] | None]:
        """Intervals of the columns of `statistics(weights)`, a [B] or [B, S] array for a [B, N] batch of weights.

        A statistic is NaN on a draw that leaves it undefined (a group that drew no item); such draws are left out
        of its interval. Returns [] without draws or items.
        """
        if self.draws <= 0 or num_items == 0:
            return []
        draws = np.concatenate(
            [np.asarray(statistics(batch), dtype=float).reshape(len(batch), -1) for batch in self.weights(num_items)]
        )
        tail = (1 - self.confidence) / 2 * 100
        intervals = []
        for column in draws.T:
            column = column[~np.isnan(column)]
            intervals.append(
                (float(np.percentile(column, tail)), float(np.percentile(column, 100 - tail))) if len(column) else None
            )
        return intervals


def accuracy_intervals(
    correct: np.ndarray,
    group_codes: np.ndarray | None = None,
    macro_groups: np.ndarray | None = None,
    pairwise: np.ndarray | None = None,
    bootstrap: Bootstrap = Bootstrap(),
) -> dict:
    """Intervals of the micro accuracy, and, when given, of each group's accuracy, the macro accuracy, and each
    column's pairwise accuracy.

    `correct` is [N] booleans; `group_codes` [N] integers 0..G-1 naming each item's group; `macro_groups` [G]
    booleans, the groups the protocol keeps in the macro accuracy; `pairwise` [N, P], the true caption against each
    Order perturbation: 1 where it wins, 0 where not, NaN where the perturbation is no negative (its text is the
    true caption's), which leaves the item out of that perturbation's accuracy.

    Returns `{"accuracy": (low, high), "macro_accuracy": ..., "per_group": [...], "pairwise": [...]}`, None where
    there is nothing to resample.
    """
    correct = np.asarray(correct, dtype=float)
    num_items = len(correct)
    num_groups = int(group_codes.max()) + 1 if group_codes is not None and num_items else 0
    num_pairwise = pairwise.shape[1] if pairwise is not None else 0
    if num_pairwise:
        compared = (~np.isnan(pairwise)).astype(float)
        wins = np.nan_to_num(pairwise, nan=0.0)
    if num_groups:
        # Items sorted by group, so that a group's draws are one contiguous slice to sum (`reduceat`).
        order = np.argsort(group_codes, kind="stable")
        starts = np.searchsorted(group_codes[order], np.arange(num_groups))
        kept = np.asarray(macro_groups, dtype=bool)

    def statistics(weights: np.ndarray) -> np.ndarray:
        columns = [weights @ correct / num_items]
        if num_groups:
            sorted_weights = weights[:, order]
            sizes = np.add.reduceat(sorted_weights, starts, axis=1)
            rights = np.add.reduceat(sorted_weights * correct[order], starts, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                per_group = np.where(sizes > 0, rights / sizes, np.nan)
                macro = (
                    np.nanmean(np.where(kept, per_group, np.nan), axis=1)
                    if kept.any()
                    else np.full(len(weights), np.nan)
                )
            columns += [macro, *per_group.T]
        if num_pairwise:
            with np.errstate(invalid="ignore", divide="ignore"):
                columns += list((weights @ wins / (weights @ compared)).T)
        return np.stack(columns, axis=1)

    intervals = bootstrap.intervals(num_items, statistics)
    if not intervals:
        return {
            "accuracy": None,
            "macro_accuracy": None,
            "per_group": [None] * num_groups,
            "pairwise": [None] * num_pairwise,
        }
    result = {"accuracy": intervals[0], "macro_accuracy": None, "per_group": [], "pairwise": intervals[1:]}
    if num_groups:
        result["macro_accuracy"], result["per_group"], result["pairwise"] = (
            intervals[1],
            intervals[2 : 2 + num_groups],
            intervals[2 + num_groups :],
        )
    return result
