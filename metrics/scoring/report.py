"""What an evaluation writes for people and machines: `results.json`, a Markdown table, a plot per config and a
`model-index` snippet for a model card.

>>> write_outputs(evaluate_model(model, "ORG/aro"), Path("eval"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from .protocol import CHANCE


def headline_accuracy(numbers: dict) -> float:
    """The number a config is known by: macro accuracy where it has groups, else accuracy."""
    return numbers["macro_accuracy"] if numbers.get("macro_accuracy") is not None else numbers["accuracy"]


def blind_table(results: dict) -> str:
    """A Markdown table of the model's and the blind baseline's accuracy per config."""
    lines = [
        f"| config | model accuracy | blind accuracy ({results['blind_model']}) | blind right where model right |",
        "| --- | --- | --- | --- |",
    ]
    for config, numbers in results["configs"].items():
        blind = numbers["blind"]
        shared = f"{blind['right_where_model_right']:.3f}" if blind["right_where_model_right"] is not None else "-"
        lines.append(f"| {config} | {headline_accuracy(numbers):.3f} | {headline_accuracy(blind):.3f} | {shared} |")
    return "\n".join(lines)


def results_table(results: dict) -> str:
    """A Markdown table of every config's accuracy, macro accuracy and size."""
    lines = ["| config | accuracy | macro accuracy | items | ties | truncated captions |", "| --- | --- | --- | --- | --- | --- |"]
    for config, numbers in results["configs"].items():
        macro = f"{numbers['macro_accuracy']:.3f}" if numbers.get("macro_accuracy") is not None else "-"
        lines.append(
            f"| {config} | {numbers['accuracy']:.3f} | {macro} | {numbers['num_items']} | {numbers['num_ties']} | {numbers.get('truncated_captions', 0)} |"
        )
    return "\n".join(lines)


def model_index(results: dict, model_name: str | None = None) -> list[dict]:
    """`model-index` entries for a model card: the headline number of each config (macro where it has groups)."""
    entries = []
    for config, numbers in results["configs"].items():
        value = numbers["macro_accuracy"] if numbers.get("macro_accuracy") is not None else numbers["accuracy"]
        entries.append(
            {
                "task": {"type": "zero-shot-image-classification", "name": "ARO caption choice"},
                "dataset": {"name": f"ARO {config}", "type": results["dataset"], "config": config, "split": "test"},
                "metrics": [{"type": "accuracy", "value": round(float(value), 4), "name": f"{config} accuracy ({results['protocol']} protocol)"}],
            }
        )
    return [{"name": model_name or results["model"], "results": entries}]


def model_index_snippet(results: dict) -> str:
    import yaml

    return yaml.safe_dump({"model-index": model_index(results)}, sort_keys=False)


def plot_groups(config: str, numbers: dict, path: Path) -> None:
    """A bar per group (or one bar for the Order sets), with the chance level drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in numbers["per_group"] if row["in_macro"]] or [{"group": config, "accuracy": numbers["accuracy"]}]
    rows.sort(key=lambda row: row["accuracy"])
    figure, axes = plt.subplots(figsize=(max(5, 0.18 * len(rows) + 2), 3.5))
    axes.bar(range(len(rows)), [row["accuracy"] for row in rows], color="tab:blue")
    axes.axhline(CHANCE[config], color="black", linestyle="dashed", label="chance")
    axes.set_xticks(range(len(rows)), [row["group"] for row in rows], rotation=90, fontsize=7 if len(rows) > 20 else 9)
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy")
    headline = numbers["macro_accuracy"] if numbers.get("macro_accuracy") is not None else numbers["accuracy"]
    axes.set_title(f"{config}: {headline:.3f}")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def check_output_dir(output_dir: Path) -> None:
    """Refuse an output that is a file, or a folder holding something other than an earlier run's results (the
    folder is replaced as a whole, so that no plot of an earlier run survives beside new results)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"output folder {output_dir} is a file: choose another --out")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / "results.json").is_file():
        raise FileExistsError(f"output folder {output_dir} holds other files (no results.json of an earlier run): choose another --out")


def write_outputs(results: dict, output_dir: Path) -> None:
    """Write the reports into a folder beside `output_dir`, then move it into place (see `check_output_dir`)."""
    from aro.builders.staging import staged_folder

    check_output_dir(output_dir)
    with staged_folder(output_dir, overwrite=True) as staging:
        (staging / "results.json").write_text(json.dumps(results, indent=2))
        tables = [results_table(results)] + ([blind_table(results)] if results.get("blind_model") else [])
        (staging / "results.md").write_text("\n\n".join(tables) + "\n")
        (staging / "model-index.yaml").write_text(model_index_snippet(results))
        for config, numbers in results["configs"].items():
            plot_groups(config, numbers, staging / f"{config}.png")
