"""The reports' pictures, written as PNG: a config's accuracies, several models side by side, and retrieval with
shuffled captions. Bars carry their 95% interval as an error bar and their value above it; chance is dashed.

Figures are made with matplotlib's object API (no pyplot), so drawing them changes no global backend or state.

>>> plot_config("relation", result.configs["relation"], Path("eval/relation.png"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aro.core.contract import ARO_CONFIGS, CHANCE

from .results import ConfigResult, EvalResult, Interval
from .tables import DIRECTIONS

if TYPE_CHECKING:  # matplotlib loads when a plot is drawn: every `aro` command that imports the reports starts faster
    from matplotlib.figure import Figure

DPI = 120
# Tick labels of the caption variants in the retrieval plot.
SHORT_NAMES = {
    "original": "original",
    "shuffle_nouns_and_adjectives": "nouns and\nadjectives",
    "shuffle_all_but_nouns_and_adjectives": "all but nouns\nand adjectives",
    "shuffle_within_trigrams": "within\ntrigrams",
    "shuffle_trigrams": "trigrams",
}


def _errors(values: list[float], intervals: list[Interval | None]) -> np.ndarray:
    """Matplotlib's [2, n] error bar lengths below and above each value; 0 where a value has no interval."""
    lengths = [
        [value - interval[0], interval[1] - value] if interval else [0.0, 0.0]
        for value, interval in zip(values, intervals)
    ]
    return np.array(lengths).reshape(-1, 2).T


def _bars(axes, positions, values: list[float], intervals: list[Interval | None], width: float = 0.8, **style):
    """Bars with their 95% interval as an error bar and their value written above the interval."""
    bars = axes.bar(positions, values, width, yerr=_errors(values, intervals), capsize=2, ecolor="dimgray", **style)
    small = len(values) > 20
    for position, value, interval in zip(positions, values, intervals):
        top = interval[1] if interval else value
        axes.text(
            position,
            top + 0.02,
            f"{value:.2f}",
            ha="center",
            va="bottom",
            fontsize=5 if small else 7,
            rotation=90 if small else 0,
        )
    return bars


def _chance(axes, start: float, end: float, level: float, label: str | None) -> None:
    axes.hlines(level, start, end, colors="black", linestyles="dashed", linewidth=1, label=label)


def _style(axes, labels: list[str], ylabel: str) -> None:
    """Tick labels readable at any count, headroom for the value labels, the legend outside the axes."""
    many = len(labels) > 20
    long = max(map(len, labels), default=0) > 12
    axes.set_xticks(
        range(len(labels)),
        labels,
        rotation=90 if many else 30 if long else 0,
        ha="center" if many or not long else "right",
        fontsize=6 if many else 8,
    )
    axes.set_ylim(0, 1.18)
    axes.set_ylabel(ylabel)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)


def plot_config(config: str, numbers: ConfigResult, path: Path) -> None:
    """A config's plot: a bar per group in the macro accuracy, sorted (VG sets), or the whole item and the true
    caption against each perturbation alone (Order sets; a perturbation no item differs from plots as 0)."""
    if numbers.perturbations is not None:
        rows = numbers.perturbations.pairwise
        labels = ["whole item"] + [f"vs {row.perturbation}" for row in rows]
        values = [numbers.accuracy] + [row.accuracy or 0.0 for row in rows]
        intervals = [numbers.accuracy_ci] + [row.accuracy_ci for row in rows]
    else:
        rows = sorted((row for row in numbers.per_group if row.in_macro), key=lambda row: (row.accuracy, row.group))
        labels = [row.group for row in rows] or [config]
        values = [row.accuracy for row in rows] or [numbers.accuracy]
        intervals = [row.accuracy_ci for row in rows] or [numbers.accuracy_ci]
    figure = _figure(max(6, 0.2 * len(values) + 3.5), 4.2)
    axes = figure.subplots()
    _bars(axes, range(len(values)), values, intervals, color="tab:blue", label="accuracy (95% interval)")
    if numbers.perturbations is not None:
        _chance(axes, -0.45, 0.45, CHANCE[config], f"chance, whole item ({CHANCE[config]:g})")
        _chance(axes, 0.55, len(values) - 0.55, 0.5, "chance, one pair (0.5)")
    else:
        _chance(axes, -0.5, len(values) - 0.5, CHANCE[config], f"chance ({CHANCE[config]:g})")
    _style(axes, labels, "accuracy")
    name, value, _ = numbers.headline_number()
    axes.set_title(f"{config}: {name} {value:.3f}", fontsize=10)
    _save(figure, path)


def plot_comparison(runs: list[EvalResult], path: Path) -> None:
    """Each model's headline accuracy per config with its interval, models side by side, chance per config."""
    configs = list(dict.fromkeys(config for result in runs for config in result.configs))
    width = 0.8 / max(len(runs), 1)
    figure = _figure(max(6, 1.6 * len(configs) + 3.5), 4.2)
    axes = figure.subplots()
    for index, result in enumerate(runs):
        headlines = [
            result.configs[config].headline_number()[1:] if config in result.configs else (0.0, None)
            for config in configs
        ]
        positions = np.arange(len(configs)) + (index - (len(runs) - 1) / 2) * width
        _bars(
            axes, positions, [value for value, _ in headlines], [ci for _, ci in headlines], width, label=result.model
        )
    for index, config in enumerate(configs):
        _chance(axes, index - 0.45, index + 0.45, CHANCE[config], "chance" if index == 0 else None)
    _style(axes, configs, "headline accuracy (95% interval)")
    _save(figure, path)


def plot_side_by_side(accuracies: dict[str, dict[str, float]], path: Path) -> None:
    """Bars of each model's accuracy per ARO config (`{model: {config: accuracy}}`), with each config's chance level
    drawn across its group (the demo's CLIP, CLIP-FT and NegCLIP)."""
    models = list(accuracies)
    width = 0.8 / len(models)
    figure = _figure(7, 3.5)
    axes = figure.subplots()
    for offset, model in enumerate(models):
        xs = [index + (offset - (len(models) - 1) / 2) * width for index in range(len(ARO_CONFIGS))]
        axes.bar(xs, [accuracies[model][config] for config in ARO_CONFIGS], width, label=model)
    for index, config in enumerate(ARO_CONFIGS):
        _chance(axes, index - 0.45, index + 0.45, CHANCE[config], "chance" if index == 0 else None)
    axes.set_xticks(range(len(ARO_CONFIGS)), ARO_CONFIGS)
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy")
    axes.set_title("Synthetic ARO: " + ", ".join(models), pad=28)
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(models) + 1, frameon=False)
    _save(figure, path)


def plot_retrieval(variants_by_model: dict[str, dict], path: Path, k: int = 1, title: str | None = None) -> None:
    """The paper's picture: recall@k per caption variant beside the original, one bar per model, both directions
    (`{model: RetrievalResult.variants}`); each perturbation's bar is annotated with its drop from the same model's
    original captions."""
    models = list(variants_by_model)
    names = list(next(iter(variants_by_model.values())))
    width = 0.8 / len(models)
    figure = _figure(max(8, 2.2 * len(names)), 4)
    panels = figure.subplots(1, 2, sharey=True)
    for axes, (direction, label) in zip(panels, DIRECTIONS.items()):
        for offset, model in enumerate(models):
            values = [variants_by_model[model][name][direction][f"recall@{k}"] for name in names]
            xs = [index + (offset - (len(models) - 1) / 2) * width for index in range(len(names))]
            axes.bar(xs, values, width, label=model)
            for x, value, name in zip(xs, values, names):
                if name != "original":
                    axes.annotate(
                        f"{value - values[0]:+.2f}",
                        (x, value),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        rotation=90,
                        fontsize=7,
                    )
        axes.set_xticks(range(len(names)), [SHORT_NAMES.get(name, name) for name in names], fontsize=8)
        axes.set_xlabel("captions: as written, then shuffled")
        axes.set_ylim(0, 1.1)
        axes.set_title(f"{label} recall@{k}")
    panels[0].set_ylabel(f"recall@{k}")
    panels[0].legend(loc="upper right", fontsize=8)
    figure.suptitle(title or "Retrieval with the captions as written and with their words shuffled")
    _save(figure, path)


def plot_trade_off(figures: dict[str, dict[str, float]], path: Path, chance: dict[str, float] | None = None) -> None:
    """What compositionality costs: each model a point, its `ARO` score across, each other figure (`retrieval`,
    `zero-shot`, ...) up in its own panel (`{model: {"ARO": x, figure: y, ...}}`); `chance` draws a figure's chance
    level."""
    models = list(figures)
    costs = [figure for figure in next(iter(figures.values())) if figure != "ARO"]
    figure = _figure(4.2 * len(costs), 3.8)
    panels = np.atleast_1d(figure.subplots(1, len(costs)))
    for axes, cost in zip(panels, costs):
        for model in models:
            axes.scatter(figures[model]["ARO"], figures[model][cost], s=40, label=model)
        if chance and cost in chance:
            axes.axhline(chance[cost], color="grey", linestyle=":", linewidth=1)
        axes.set_xlim(0.4, 1.02)
        axes.set_ylim(0, 1)
        axes.set_xlabel("ARO (mean of relation and attribution)")
        axes.set_ylabel(cost)
        axes.grid(alpha=0.3)
    panels[0].legend(fontsize=8, loc="upper left", frameon=False)
    figure.suptitle("Compositionality against what it may cost (up and to the right is better)")
    _save(figure, path)
