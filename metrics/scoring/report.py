"""What an evaluation writes for people, machines and the Hub.

Per model, in its output folder: `results.json` (every number, with 95% bootstrap intervals), `results.md` (the
tables), `<config>.png` (a plot per config), and, where the dataset has a Hub id, the two Hub formats:
`model-index.yaml` (the model card's `model-index`, the older format) and `.eval_results/aro.yaml` (the format the
Hub reads from model repos today, one entry per config, the task ids of the dataset's `eval.yaml`). Several models:
`comparison.md`, `comparison.csv` and `comparison.png` beside their folders.

No local path goes into anything meant for the Hub: models and datasets are named by Hub id, or by folder name
where they are local, and a Hub field that needs an id nobody gave is left out (the results say so).

>>> write_outputs(evaluate_model(model, "ORG/aro"), Path("eval"))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from aro.core.contract import CHANCE
from aro.core.errors import MissingInput
from aro.core.io import output_folder
from aro.core.protocol import get_protocol

EVAL_COMMAND = "aro eval"
EVAL_RESULTS_PATH = ".eval_results/aro.yaml"
TASK_TYPE = "zero-shot-image-classification"


def _number(value: float | None, interval: list[float] | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def headline(numbers: dict) -> tuple[str, float]:
    """The number a config reports first under its protocol: ("macro accuracy", value) or ("micro accuracy", value)."""
    if numbers.get("headline") == "macro_accuracy" and numbers.get("macro_accuracy") is not None:
        return "macro accuracy", numbers["macro_accuracy"]
    return "micro accuracy", numbers["accuracy"]


def blind_table(results: dict) -> str:
    """A Markdown table of the model's and the blind baseline's accuracy per config."""
    lines = [
        f"| config | model accuracy | blind accuracy ({results['blind_model']}) | blind right where model right |",
        "| --- | --- | --- | --- |",
    ]
    for config, numbers in results["configs"].items():
        blind = numbers["blind"]
        shared = f"{blind['right_where_model_right']:.3f}" if blind["right_where_model_right"] is not None else "-"
        lines.append(f"| {config} | {headline(numbers)[1]:.3f} | {headline(blind)[1]:.3f} | {shared} |")
    return "\n".join(lines)


def results_table(results: dict) -> str:
    """Markdown tables: every config's micro and macro accuracy with intervals, and the Order sets by perturbation."""
    lines = [
        f"{protocol_note(results['protocol'])}. Brackets: 95% bootstrap interval over items.",
        "",
        "| config | headline | micro accuracy | macro accuracy | items | ties | truncated captions |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config, numbers in results["configs"].items():
        lines.append(
            f"| {config} | {headline(numbers)[0]} | {_number(numbers['accuracy'], numbers.get('accuracy_ci'))} | "
            f"{_number(numbers.get('macro_accuracy'), numbers.get('macro_accuracy_ci'))} | {numbers['num_items']} | "
            f"{numbers['num_ties']} | {numbers.get('truncated_captions', 0)} |"
        )
    for config, numbers in results["configs"].items():
        if "perturbations" not in numbers:
            continue
        chosen = {row["option"]: row["share"] for row in numbers["perturbations"]["chosen"]}
        lines += [
            "",
            f"{config} by perturbation: accuracy of the true caption against each shuffle alone, and how often the model chose it.",
            "",
            "| perturbation | true caption preferred | chosen |",
            "| --- | --- | --- |",
        ]
        lines += [
            f"| {row['perturbation']} | {_number(row['accuracy'], row.get('accuracy_ci'))} | {chosen[row['perturbation']]:.3f} |"
            for row in numbers["perturbations"]["pairwise"]
        ]
    for warning in results.get("warnings", []):
        lines += ["", f"Note: {warning}"]
    return "\n".join(lines)


def model_index(results: dict, model_name: str | None = None) -> list[dict] | None:
    """The `model-index` of a model card: per config, micro and macro accuracy, each named as what it is.

    None when the dataset has no Hub id (`dataset.type` must be one).
    """
    dataset_id = results.get("dataset_id")
    if not dataset_id:
        return None
    entries = []
    for config, numbers in results["configs"].items():
        dataset = {"name": f"ARO {config}", "type": dataset_id, "config": config, "split": "test"}
        if results.get("dataset_commit") and not results["dataset_commit"].startswith("sha256:"):
            dataset["revision"] = results["dataset_commit"]
        metrics = [
            _model_index_metric("micro", numbers["accuracy"], numbers.get("accuracy_ci"), config, results["protocol"])
        ]
        if numbers.get("macro_accuracy") is not None:
            metrics.append(
                _model_index_metric(
                    "macro", numbers["macro_accuracy"], numbers.get("macro_accuracy_ci"), config, results["protocol"]
                )
            )
        entries.append(
            {"task": {"type": TASK_TYPE, "name": "ARO caption choice"}, "dataset": dataset, "metrics": metrics}
        )
    return [{"name": model_name or results["model"], "results": entries}]


def _model_index_metric(average: str, value: float, interval: list[float] | None, config: str, protocol: str) -> dict:
    over = {"micro": "items", "macro": "groups"}[average]
    metric = {
        "type": "accuracy",
        "value": round(float(value), 4),
        "name": f"{config} {average} accuracy over {over} ({protocol} protocol)",
    }
    metric["args"] = {"average": average, "protocol": protocol} | (
        {"ci95": [round(bound, 4) for bound in interval]} if interval else {}
    )
    return metric


def eval_results_entries(results: dict) -> list[dict] | None:
    """The `.eval_results/aro.yaml` entries, one per config (its task id in the dataset's `eval.yaml`), valued by
    the protocol's headline; None when the dataset has no Hub id."""
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    if not results.get("dataset_id"):
        return None
    revision = results.get("dataset_commit")
    entries = []
    for config, numbers in results["configs"].items():
        name, value = headline(numbers)
        interval = numbers.get("macro_accuracy_ci" if name == "macro accuracy" else "accuracy_ci")
        notes = f"{name}, {results['protocol']} protocol" + (
            f", 95% CI [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""
        )
        entries.append(
            EvalResultEntry(
                dataset_id=results["dataset_id"],
                task_id=config,
                value=round(float(value), 4),
                dataset_revision=revision if revision and not revision.startswith("sha256:") else None,
                date=results.get("date"),
                notes=notes,
            )
        )
    return eval_result_entries_to_yaml(entries)


def write_eval_results(results: dict, folder: str | Path) -> Path | None:
    """Write `.eval_results/aro.yaml` into `folder` (a model folder or an evaluation's output); return its path,
    or None when the dataset has no Hub id to name. The NegCLIP trainer calls this for its model folder."""
    import yaml

    entries = eval_results_entries(results)
    if entries is None:
        return None
    path = Path(folder) / EVAL_RESULTS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return path


def push_eval_results(folder: str | Path, repo_id: str) -> str:
    """Open a pull request on the model repo `repo_id` adding the `.eval_results/aro.yaml` written in `folder`."""
    from huggingface_hub import HfApi

    info = HfApi().create_commit(
        repo_id, eval_results_operations(folder), commit_message="Add ARO evaluation results", create_pr=True
    )
    return info.pr_url


def eval_results_operations(folder: str | Path) -> list:
    """The commit operations of `push_eval_results`: `.eval_results/aro.yaml` as written in `folder`."""
    from huggingface_hub import CommitOperationAdd

    path = Path(folder) / EVAL_RESULTS_PATH
    if not path.is_file():
        raise MissingInput(
            f"{path} does not exist: results are written for the Hub only when the dataset has a Hub id (--dataset-id)"
        )
    return [CommitOperationAdd(path_in_repo=EVAL_RESULTS_PATH, path_or_fileobj=path.read_bytes())]


def scores_table(
    item_ids: list,
    groups: list[str] | None,
    scores: np.ndarray,
    options: list[str],
    predictions: list[int],
    counted: list[int],
):
    """Per-item scores as an Arrow table for `scores/<config>.parquet`: `item_id`, the group where the config has
    one, `score_<option>` for every candidate (the true caption first; NaN for an option with the true caption's
    text), the `prediction` (option index, -1 for a tie that counts wrong), `correct`, and `counted` (False for an
    item with no negative, left out of the accuracy)."""
    import pyarrow as pa

    columns = {"item_id": pa.array(item_ids)}
    if groups is not None:
        columns["group"] = pa.array(groups, pa.string())
    for index, option in enumerate(options):
        columns[f"score_{option}"] = pa.array(np.asarray(scores)[:, index], pa.float64())
    columns["prediction"] = pa.array(predictions, pa.int8())
    columns["correct"] = pa.array([prediction == 0 for prediction in predictions])
    kept = set(counted)
    columns["counted"] = pa.array([item in kept for item in range(len(predictions))])
    return pa.table(columns)


def _errors(values: list[float], intervals: list) -> np.ndarray:
    """Matplotlib's [2, n] error bar lengths below and above each value; 0 where a value has no interval."""
    return (
        np.array(
            [
                [value - interval[0], interval[1] - value] if interval else [0.0, 0.0]
                for value, interval in zip(values, intervals)
            ]
        )
        .reshape(-1, 2)
        .T
    )


def _bars(axes, positions, values: list[float], intervals: list, width: float = 0.8, **style):
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


def plot_config(config: str, numbers: dict, path: Path) -> None:
    """A config's plot: a bar per group in the macro accuracy, sorted (VG sets), or the whole item and the true
    caption against each perturbation alone (Order sets); intervals as error bars, values above them, chance
    dashed, the legend outside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "perturbations" in numbers:
        rows = numbers["perturbations"]["pairwise"]
        labels = ["whole item"] + [f"vs {row['perturbation']}" for row in rows]
        values = [numbers["accuracy"]] + [row["accuracy"] for row in rows]
        intervals = [numbers.get("accuracy_ci")] + [row.get("accuracy_ci") for row in rows]
    else:
        rows = sorted(
            (row for row in numbers["per_group"] if row["in_macro"]), key=lambda row: (row["accuracy"], row["group"])
        )
        rows = rows or [{"group": config, "accuracy": numbers["accuracy"], "accuracy_ci": numbers.get("accuracy_ci")}]
        labels, values, intervals = (
            [row["group"] for row in rows],
            [row["accuracy"] for row in rows],
            [row.get("accuracy_ci") for row in rows],
        )
    figure, axes = plt.subplots(figsize=(max(6, 0.2 * len(values) + 3.5), 4.2))
    _bars(axes, range(len(values)), values, intervals, color="tab:blue", label="accuracy (95% interval)")
    if "perturbations" in numbers:
        _chance(axes, -0.45, 0.45, CHANCE[config], f"chance, whole item ({CHANCE[config]:g})")
        _chance(axes, 0.55, len(values) - 0.55, 0.5, "chance, one pair (0.5)")
    else:
        _chance(axes, -0.5, len(values) - 0.5, CHANCE[config], f"chance ({CHANCE[config]:g})")
    _style(axes, labels, "accuracy")
    name, value = headline(numbers)
    axes.set_title(f"{config}: {name} {value:.3f}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(results: dict, output_dir: Path, score_tables: dict | None = None) -> list[str]:
    """Write an evaluation's files (and `scores/<config>.parquet` of `score_tables`) into a folder beside
    `output_dir`, then move it into place (see `aro.core.io`); return one line per Hub file not written."""
    import pyarrow.parquet as pq
    import yaml

    not_written = []
    with output_folder(output_dir, EVAL_COMMAND) as staging:
        (staging / "results.json").write_text(json.dumps(results, indent=2))
        tables = [results_table(results)] + ([blind_table(results)] if results.get("blind_model") else [])
        (staging / "results.md").write_text("\n\n".join(tables) + "\n")
        for config, numbers in results["configs"].items():
            plot_config(config, numbers, staging / f"{config}.png")
        for config, table in (score_tables or {}).items():
            (staging / "scores").mkdir(exist_ok=True)
            pq.write_table(table, staging / "scores" / f"{config}.parquet")
        index = model_index(results)
        if index is None:
            not_written.append(
                f"no model-index.yaml or {EVAL_RESULTS_PATH}: the dataset is a local folder with no Hub id (pass --dataset-id ORG/NAME)"
            )
        else:
            (staging / "model-index.yaml").write_text(yaml.safe_dump({"model-index": index}, sort_keys=False))
            write_eval_results(results, staging)
    return not_written


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


def comparison_rows(runs: list[dict]) -> list[dict]:
    """One row per (model, config) with the numbers of every run, for the CSV and the combined table."""
    rows = []
    for results in runs:
        for config, numbers in results["configs"].items():
            accuracy_ci = numbers.get("accuracy_ci") or [None, None]
            macro_ci = numbers.get("macro_accuracy_ci") or [None, None]
            rows.append(
                {
                    "model": results["model"],
                    "config": config,
                    "protocol": results["protocol"],
                    "headline": headline(numbers)[0],
                    "accuracy": numbers["accuracy"],
                    "accuracy_low": accuracy_ci[0],
                    "accuracy_high": accuracy_ci[1],
                    "macro_accuracy": numbers.get("macro_accuracy"),
                    "macro_accuracy_low": macro_ci[0],
                    "macro_accuracy_high": macro_ci[1],
                    "num_items": numbers["num_items"],
                }
            )
    return rows


def write_comparison(runs: list[dict], output_dir: Path) -> None:
    """`comparison.md` (headline per model and config), `comparison.csv` (every number) and `comparison.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = comparison_rows(runs)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COMPARISON_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (output_dir / "comparison.csv").write_text(buffer.getvalue())

    configs = list(dict.fromkeys(row["config"] for row in rows))
    models = list(dict.fromkeys(row["model"] for row in rows))
    cell = {(row["model"], row["config"]): row for row in rows}

    def best(row: dict) -> tuple[float, list | None]:
        if row["headline"] == "macro accuracy":
            return row["macro_accuracy"], [row["macro_accuracy_low"], row["macro_accuracy_high"]] if row[
                "macro_accuracy_low"
            ] is not None else None
        return row["accuracy"], [row["accuracy_low"], row["accuracy_high"]] if row["accuracy_low"] is not None else None

    lines = ["| model | " + " | ".join(configs) + " |", "| --- |" + " --- |" * len(configs)]
    for model in models:
        lines.append(
            f"| {model} | "
            + " | ".join(_number(*best(cell[model, config])) if (model, config) in cell else "-" for config in configs)
            + " |"
        )
    protocols = sorted({row["protocol"] for row in rows})
    (output_dir / "comparison.md").write_text(
        f"Headline accuracy per config (protocol {', '.join(protocols)}), with 95% bootstrap intervals.\n\n"
        + "\n".join(lines)
        + "\n"
    )

    width = 0.8 / max(len(models), 1)
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(configs) + 3.5), 4.2))
    for index, model in enumerate(models):
        values = [best(cell[model, config])[0] if (model, config) in cell else 0.0 for config in configs]
        intervals = [best(cell[model, config])[1] if (model, config) in cell else None for config in configs]
        _bars(
            axes,
            np.arange(len(configs)) + (index - (len(models) - 1) / 2) * width,
            values,
            intervals,
            width,
            label=model,
        )
    for index, config in enumerate(configs):
        _chance(axes, index - 0.45, index + 0.45, CHANCE[config], "chance" if index == 0 else None)
    _style(axes, configs, "headline accuracy (95% interval)")
    figure.tight_layout()
    figure.savefig(output_dir / "comparison.png", dpi=120)
    plt.close(figure)


def protocol_note(protocol: str) -> str:
    """One line on what the protocol's numbers mean, for tables and cards."""
    rules = get_protocol(protocol)
    ties = "ties with the true caption count right (argmax)" if rules.ties_right else "ties count wrong"
    exclusions = "the paper's exclusions apply to macro accuracy" if rules.exclusions else "no group is excluded"
    return f"{protocol} protocol: {ties}; {exclusions}; headline {rules.headline.replace('_', ' ')}"
