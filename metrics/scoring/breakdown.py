"""Every number a report gives for one config, from the [N, K] scores: accuracies by the protocol, ties, Order sets
broken down by perturbation, and bootstrap intervals for all of them.

One rule for options with the true caption's text (scored NaN): they are no negatives. The item's accuracy ignores
them, and so does the breakdown: such a pair is left out of that perturbation's accuracy, and counted (`left_out`).

The Order breakdown answers "which shuffle fools the model": `pairwise` is the accuracy of the true caption against
each perturbation alone (right when the true caption outscores it, ties by the protocol's rule), and `chosen` the
share of items on which each option was the model's choice (plus ties under a ties-wrong protocol), which adds up
to 1; the share of `original` is the micro accuracy.

>>> scores = np.array([[0.9, 0.1, 0.95], [0.8, 0.2, 0.1], [0.7, np.nan, 0.1]])
>>> result = config_result(scores, "coco_order", option_names=["original", "a", "b"], bootstrap=Bootstrap(draws=0))
>>> result.accuracy, [(row.accuracy, row.left_out) for row in result.perturbations.pairwise]
(0.6666666666666666, [(1.0, 1), (0.6666666666666666, 0)])

SugarCrepe's splits are averaged as the paper reports them (`sugarcrepe_summary`): per group (REPLACE, SWAP, ADD)
and over all seven, the unweighted mean of the splits' accuracies; and pooled over all items, mteb's number.

>>> right = {config: np.array([True, False]) for config in SUGARCREPE_CONFIGS}
>>> right["sugarcrepe_swap_obj"] = np.array([True, True, True, True])
>>> summary = sugarcrepe_summary(right, "paper", Bootstrap(draws=0))
>>> summary.averages["swap"].accuracy, summary.averages["mean"].accuracy, summary.averages["pooled"].accuracy
(0.75, 0.5714285714285714, 0.625)
"""

from __future__ import annotations

import numpy as np

from aro.core.contract import SUGARCREPE_CONFIGS, SUGARCREPE_GROUPS
from aro.core.protocol import accuracy_results, get_protocol, predict

from .bootstrap import Bootstrap, accuracy_intervals
from .results import (
    ChosenShare,
    ConfigResult,
    GroupAccuracy,
    PairwiseAccuracy,
    PerturbationBreakdown,
    SugarCrepeAverage,
    SugarCrepeSummary,
)

TIE = "tie"


def _rounded(interval: tuple[float, float] | None) -> list[float] | None:
    return [round(interval[0], 6), round(interval[1], 6)] if interval else None


def tied_items(scores: np.ndarray) -> int:
    """Items whose highest score is shared by two options, whatever the protocol then counts them as (mteb's argmax
    takes a tie with the true caption as right): the ties-wrong rule marks exactly those items -1."""
    return predict(scores, "paper").count(-1)


def pairwise_wins(scores: np.ndarray, protocol: str) -> np.ndarray:
    """[N, K-1]: 1 where the true caption (column 0) beats the option alone (ties by the protocol's rule), 0 where
    not, NaN where the option has the true caption's text and is no negative."""
    true, others = scores[:, :1], scores[:, 1:]
    beats = true >= others if get_protocol(protocol).ties_right else true > others
    return np.where(np.isnan(others), np.nan, beats.astype(float))


def config_result(
    scores: np.ndarray,
    config: str,
    groups: list[str] | None = None,
    protocol: str = "paper",
    option_names: list[str] | None = None,
    bootstrap: Bootstrap | None = None,
) -> ConfigResult:
    """`accuracy_results` of the protocol's predictions (the true caption is option 0), the ties counted from the
    scores, a 95% interval for every accuracy, and, for configs with more than two options, the per-perturbation
    breakdown."""
    scores = np.asarray(scores, dtype=float)
    bootstrap = bootstrap or Bootstrap()
    predictions = predict(scores, protocol)
    numbers = accuracy_results(predictions, [0] * len(scores), groups=groups, config=config, protocol=protocol)
    correct = np.asarray(predictions) == 0
    group_codes = macro_groups = None
    if groups is not None and numbers["per_group"]:
        index_of = {row["group"]: index for index, row in enumerate(numbers["per_group"])}
        group_codes = np.array([index_of[group] for group in groups])
        macro_groups = np.array([row["in_macro"] for row in numbers["per_group"]])
    wins = pairwise_wins(scores, protocol) if scores.shape[1] > 2 else None
    intervals = accuracy_intervals(correct, group_codes, macro_groups, wins, bootstrap)
    return ConfigResult(
        accuracy=numbers["accuracy"],
        macro_accuracy=numbers["macro_accuracy"],
        headline=numbers["headline"],
        num_items=numbers["num_items"],
        num_ties=tied_items(scores),
        per_group=[
            GroupAccuracy(**row, accuracy_ci=_rounded(interval))
            for row, interval in zip(numbers["per_group"], intervals["per_group"])
        ],
        perturbations=None
        if wins is None
        else breakdown(scores, wins, predictions, protocol, option_names, intervals["pairwise"]),
        accuracy_ci=_rounded(intervals["accuracy"]),
        macro_accuracy_ci=_rounded(intervals["macro_accuracy"]) if numbers["macro_accuracy"] is not None else None,
        bootstrap=bootstrap,
    )


def breakdown(
    scores: np.ndarray,
    wins: np.ndarray,
    predictions: list[int],
    protocol: str,
    option_names: list[str] | None,
    intervals: list,
) -> PerturbationBreakdown:
    """The pairwise accuracy of the true caption against each perturbation (over the items where it is a negative)
    and the share of items on which each option was chosen."""
    names = list(option_names or ["original"] + [f"option_{index}" for index in range(1, scores.shape[1])])
    compared = ~np.isnan(wins)
    pairwise = [
        PairwiseAccuracy(
            perturbation=name,
            accuracy=float(np.nanmean(column)) if counted.any() else None,
            accuracy_ci=_rounded(interval),
            left_out=int((~counted).sum()),
        )
        for name, column, counted, interval in zip(names[1:], wins.T, compared.T, intervals)
    ]
    counts = np.bincount(np.asarray(predictions) + 1, minlength=scores.shape[1] + 1)  # index 0 counts ties (-1)
    chosen = [ChosenShare(name, float(count / len(scores))) for name, count in zip(names, counts[1:])]
    if not get_protocol(protocol).ties_right:
        chosen.append(ChosenShare(TIE, float(counts[0] / len(scores))))
    return PerturbationBreakdown(pairwise, chosen)


def sugarcrepe_summary(
    right: dict[str, np.ndarray],
    protocol: str,
    bootstrap: Bootstrap,
    blind_right: dict[str, np.ndarray] | None = None,
) -> SugarCrepeSummary | None:
    """SugarCrepe's averages of the splits in `right` (config: per item of its accuracy, whether the model got it
    right): each group's where all its splits are there, and the mean and pooled accuracy where all seven are; None
    when no average can be formed. Intervals come from `bootstrap.draws` resamples of each split's items, the splits
    resampled independently; `blind_right` gives the blind baseline's averages beside.

    The headline is `pooled` under mteb's protocol (its `SugarCrepe` task scores the seven splits merged) and the
    paper's `mean` otherwise.
    """
    draws = _split_accuracy_draws(right, bootstrap)
    averages = {}
    for name, splits in {**SUGARCREPE_GROUPS, "mean": SUGARCREPE_CONFIGS, "pooled": SUGARCREPE_CONFIGS}.items():
        if not set(splits) <= set(right):
            continue
        pooled = name == "pooled"
        interval = None
        if draws:
            averaged = _average({config: draws[config] for config in splits}, right, pooled)
            tail = (1 - bootstrap.confidence) / 2 * 100
            interval = _rounded(tuple(float(bound) for bound in np.percentile(averaged, [tail, 100 - tail])))
        averages[name] = SugarCrepeAverage(
            splits=list(splits),
            accuracy=float(_average({config: np.mean(right[config]) for config in splits}, right, pooled)),
            accuracy_ci=interval,
            pooled=pooled,
            num_items=sum(len(right[config]) for config in splits),
            blind_accuracy=float(
                _average({config: np.mean(blind_right[config]) for config in splits}, blind_right, pooled)
            )
            if blind_right
            else None,
        )
    if not averages:
        return None
    return SugarCrepeSummary(headline="pooled" if protocol == "mteb" else "mean", averages=averages)


def _average(accuracies: dict, right: dict[str, np.ndarray], pooled: bool):
    """The mean of the splits' `accuracies` (numbers, or arrays of draws), or with `pooled` their mean weighted by the
    splits' item counts: the accuracy over all their items."""
    if not pooled:
        return np.mean(list(accuracies.values()), axis=0)
    sizes = {config: len(right[config]) for config in accuracies}
    return sum(accuracies[config] * sizes[config] for config in accuracies) / sum(sizes.values())


def _split_accuracy_draws(right: dict[str, np.ndarray], bootstrap: Bootstrap) -> dict[str, np.ndarray]:
    """Each split's accuracy on `bootstrap.draws` resamples of its items, from one generator seeded with the
    bootstrap's seed, split after split in SugarCrepe's order. A resample of n items of which k are right holds a
    Binomial(n, k/n) count of right items, drawn here directly. Empty without draws."""
    if bootstrap.draws <= 0:
        return {}
    generator = np.random.default_rng(bootstrap.seed)
    return {
        config: generator.binomial(len(right[config]), np.mean(right[config]), bootstrap.draws) / len(right[config])
        for config in SUGARCREPE_CONFIGS
        if config in right
    }
