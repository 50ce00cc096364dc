"""Every number a report gives for one config, from the [N, K] scores: accuracies by the protocol, Order sets broken
down by perturbation, and bootstrap intervals for all of them.

The Order breakdown answers "which shuffle fools the model": `pairwise` is the accuracy of the true caption against
each perturbation alone (an item counts right against a shuffle when the true caption outscores it, ties by the
protocol's rule; an option with the true caption's text, scored NaN, does not beat it), and `chosen` the share of items on which each option was the model's choice (plus ties under a
ties-wrong protocol), which adds up to 1; the share of `original` is the micro accuracy.

>>> numbers = config_numbers(np.array([[0.9, 0.1, 0.95], [0.8, 0.2, 0.1]]), "coco_order", option_names=["original", "a", "b"])
>>> numbers["accuracy"], [row["accuracy"] for row in numbers["perturbations"]["pairwise"]]
(0.5, [1.0, 0.5])
"""

from __future__ import annotations

import numpy as np

from aro.core.protocol import accuracy_results, get_protocol, predict

from .bootstrap import Bootstrap, accuracy_intervals

TIE = "tie"


def _rounded(interval: tuple[float, float] | None) -> list[float] | None:
    return [round(interval[0], 6), round(interval[1], 6)] if interval else None


def config_numbers(
    scores: np.ndarray,
    config: str,
    groups: list[str] | None = None,
    protocol: str = "paper",
    option_names: list[str] | None = None,
    bootstrap: Bootstrap = Bootstrap(),
) -> dict:
    """`accuracy_results` of the protocol's predictions (the true caption is option 0), a 95% interval (`*_ci`) for
    every accuracy, and, for configs with more than two options, the per-perturbation breakdown."""
    scores = np.asarray(scores, dtype=float)
    predictions = predict(scores, protocol)
    references = [0] * len(scores)
    numbers = accuracy_results(predictions, references, groups=groups, config=config, protocol=protocol)
    correct = np.asarray(predictions) == 0
    group_codes = macro_groups = None
    if groups is not None and numbers["per_group"]:
        index_of = {row["group"]: index for index, row in enumerate(numbers["per_group"])}
        group_codes = np.array([index_of[group] for group in groups])
        macro_groups = np.array([row["in_macro"] for row in numbers["per_group"]])
    pairwise = None
    if scores.shape[1] > 2:
        names = list(option_names or ["original"] + [f"option_{index}" for index in range(1, scores.shape[1])])
        true, others = scores[:, :1], scores[:, 1:]
        beats = true >= others if get_protocol(protocol).ties_right else true > others
        pairwise = beats | np.isnan(others)  # an option with the true caption's text (NaN) is no negative to lose to
        counts = np.bincount(np.asarray(predictions) + 1, minlength=scores.shape[1] + 1)  # index 0 counts ties (-1)
        chosen = [{"option": name, "share": float(count / len(scores))} for name, count in zip(names, counts[1:])]
        if not get_protocol(protocol).ties_right:
            chosen.append({"option": TIE, "share": float(counts[0] / len(scores))})
        numbers["perturbations"] = {
            "pairwise": [
                {"perturbation": name, "accuracy": float(column.mean())} for name, column in zip(names[1:], pairwise.T)
            ],
            "chosen": chosen,
        }
    intervals = accuracy_intervals(correct, group_codes, macro_groups, pairwise, bootstrap)
    numbers["accuracy_ci"] = _rounded(intervals["accuracy"])
    numbers["macro_accuracy_ci"] = (
        _rounded(intervals["macro_accuracy"]) if numbers["macro_accuracy"] is not None else None
    )
    for row, interval in zip(numbers["per_group"], intervals["per_group"]):
        row["accuracy_ci"] = _rounded(interval)
    for row, interval in zip(numbers.get("perturbations", {}).get("pairwise", []), intervals["pairwise"]):
        row["accuracy_ci"] = _rounded(interval)
    numbers["bootstrap"] = {"draws": bootstrap.draws, "seed": bootstrap.seed, "confidence": bootstrap.confidence}
    return numbers
