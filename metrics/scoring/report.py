"""What an evaluation writes, for people, machines and the Hub.

Per model, in its output folder: `results.json` (every number, with 95% bootstrap intervals: `EvalResult.to_json`),
`results.md` (the tables of `tables.py`), `<config>.png` (a plot per config, `plots.py`), with `--save-scores`
`scores/<config>.parquet`, and, where the dataset has a Hub id, the Hub's two formats (`hub_files.py`):
`model-index.yaml` and `.eval_results/aro.yaml`. Several models: `comparison.md`, `comparison.csv` and
`comparison.png` beside their folders.

No local path goes into anything meant for the Hub: models and datasets are named by Hub id, or by folder name
where they are local, and a Hub field that needs an id nobody gave is left out (the results say so).

>>> write_outputs(evaluate_model(model, "ORG/aro", processor=processor), Path("eval"))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aro.core.io import output_folder

from .hub_files import EVAL_RESULTS_PATH, write_eval_results, write_model_index
from .plots import plot_comparison, plot_config
from .results import EvalResult
from .tables import artifact_tables, blind_table, comparison_table, results_table

if TYPE_CHECKING:  # the scorer imports torch; writing reports does not need it
    from .scorer import ScoreResult

EVAL_COMMAND = "aro eval"
NO_HUB_ID = (
    f"no model-index.yaml or {EVAL_RESULTS_PATH}: the dataset is a local folder with no Hub id "
    "(pass --dataset-id ORG/NAME)"
)


def write_outputs(result: EvalResult, output_dir: Path, score_tables: dict | None = None) -> list[str]:
    """Write an evaluation's files (and `scores/<config>.parquet` of `score_tables`) into a folder beside
    `output_dir`, then move it into place (see `aro.core.io`); return one line per Hub file not written."""
    with output_folder(output_dir, EVAL_COMMAND) as staging:
        (staging / "results.json").write_text(json.dumps(result.to_json(), indent=2))
        tables = (
            [results_table(result)] + ([blind_table(result)] if result.blind_model else []) + artifact_tables(result)
        )
        (staging / "results.md").write_text("\n\n".join(tables) + "\n")
        for config, numbers in result.configs.items():
            plot_config(config, numbers, staging / f"{config}.png")
        for config, table in (score_tables or {}).items():
            (staging / "scores").mkdir(exist_ok=True)
            pq.write_table(table, staging / "scores" / f"{config}.parquet")
        if result.dataset_id:
            write_model_index(result, staging)
            write_eval_results(result, staging)
    return [] if result.dataset_id else [NO_HUB_ID]


def scores_table(item_ids: list, options: list[str], scored: ScoreResult, blind: ScoreResult | None = None) -> pa.Table:
    """Per-item scores as an Arrow table for `scores/<config>.parquet`: `item_id`, the group where the config has
    one, `score_<option>` for every candidate (the true caption first; NaN for an option with the true caption's
    text), the `prediction` (option index, -1 for a tie that counts wrong), `correct`, and `counted` (False for an
    item with no negative, left out of the accuracy), `same_words` (a negative uses exactly the true caption's words:
    only order can solve the item); with the `blind` baseline's scores, its `blind_score_<option>`
    (the caption's mean token log-likelihood), `blind_prediction` and `blind_correct` beside them."""
    columns = {"item_id": pa.array(item_ids)}
    if scored.groups is not None:
        columns["group"] = pa.array(scored.groups, pa.string())
    columns |= score_columns(scored, options)
    kept = set(scored.kept())
    columns["counted"] = pa.array([item in kept for item in range(len(scored.predictions))])
    columns["same_words"] = pa.array(scored.same_words, pa.bool_())
    if blind is not None:
        columns |= score_columns(blind, options, prefix="blind_")
    return pa.table(columns)


def score_columns(scored: ScoreResult, options: list[str], prefix: str = "") -> dict[str, pa.Array]:
    """`{prefix}score_<option>` per candidate, `{prefix}prediction` and `{prefix}correct` of one scorer's items."""
    columns = {
        f"{prefix}score_{option}": pa.array(np.asarray(scored.scores)[:, index], pa.float64())
        for index, option in enumerate(options)
    }
    columns[f"{prefix}prediction"] = pa.array(scored.predictions, pa.int8())
    columns[f"{prefix}correct"] = pa.array([prediction == 0 for prediction in scored.predictions])
    return columns


COMPARISON_FIELDS = (
    "model",
    "config",
    "protocol",
    "headline",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "macro_accuracy",
    "macro_accuracy_low",
    "macro_accuracy_high",
    "num_items",
)


def comparison_rows(runs: list[EvalResult]) -> list[dict]:
    """One row per (model, config) with the numbers of every run, for `comparison.csv`."""
    rows = []
    for result in runs:
        for config, numbers in result.configs.items():
            accuracy_ci = numbers.accuracy_ci or [None, None]
            macro_ci = numbers.macro_accuracy_ci or [None, None]
            rows.append(
                {
                    "model": result.model,
                    "config": config,
                    "protocol": result.protocol,
                    "headline": numbers.headline_number()[0],
                    "accuracy": numbers.accuracy,
                    "accuracy_low": accuracy_ci[0],
                    "accuracy_high": accuracy_ci[1],
                    "macro_accuracy": numbers.macro_accuracy,
                    "macro_accuracy_low": macro_ci[0],
                    "macro_accuracy_high": macro_ci[1],
                    "num_items": numbers.num_items,
                }
            )
    return rows


def write_comparison(runs: list[EvalResult], output_dir: Path) -> None:
    """`comparison.md` (headline per model and config), `comparison.csv` (every number) and `comparison.png`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COMPARISON_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(comparison_rows(runs))
    (output_dir / "comparison.csv").write_text(buffer.getvalue())
    (output_dir / "comparison.md").write_text(comparison_table(runs) + "\n")
    plot_comparison(runs, output_dir / "comparison.png")
