"""Score a model beyond ARO, and report it: retrieval with the captions as written and shuffled, and zero-shot
classification. `aro retrieval` is a thin wrapper over `evaluate_downstream`.

Writes `results.json`, `results.md` (a table: recall per caption variant, its drop from the original captions, and
zero-shot accuracy) and `retrieval.png` (the paper's picture: recall with each perturbation beside the original).

>>> results = evaluate_downstream("openai/clip-vit-base-patch32", "ORG/aro", "coco_retrieval", output_dir="retrieval")  # doctest: +SKIP
>>> results["retrieval"]["variants"]["shuffle_trigrams"]["text_to_image"]["recall@1"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from aro.core.errors import InvalidInput
from aro.core.io import check_output_folder, output_folder

from .data import load_split
from .evaluation import _versions
from .loading import model_and_processor
from .retrieval import RetrievalSet, retrieval_results
from .zero_shot import ZeroShotTask, zero_shot_accuracy

DIRECTIONS = {"text_to_image": "text→image", "image_to_text": "image→text"}
# Tick labels of the caption variants in the plot.
SHORT_NAMES = {
    "original": "original",
    "shuffle_nouns_and_adjectives": "nouns and\nadjectives",
    "shuffle_all_but_nouns_and_adjectives": "all but nouns\nand adjectives",
    "shuffle_within_trigrams": "within\ntrigrams",
    "shuffle_trigrams": "trigrams",
}

RETRIEVAL_COMMAND = "aro retrieval"


def evaluate_downstream(
    model,
    dataset: str | None = None,
    config: str = "coco_retrieval",
    zero_shot: ZeroShotTask | None = None,
    output_dir: str | Path | None = None,
    processor=None,
    perturbations: bool = True,
    revision: str | None = None,
    dataset_revision: str | None = None,
    trust_remote_code: bool = False,
    batch_size: int = 64,
    device: str | None = None,
    dtype: str | None = None,
    num_workers: int = 0,
    distributed=None,
) -> dict:
    """Retrieval on `config` of `dataset` (when given) and zero-shot classification on `zero_shot` (when given).

    `model` is a Hub id, a local path, or a loaded dual encoder with its `processor`. Returns `{"model", ...,
    "retrieval": {"dataset", "config", "images", "captions", "ks", "variants": {...}}, "zero_shot": {...}}`; with
    `output_dir`, the main process of `distributed` also writes the reports there.
    """
    if dataset is None and zero_shot is None:
        raise InvalidInput("nothing to evaluate: give a retrieval dataset, a zero-shot task, or both")
    if output_dir is not None:
        check_output_folder(output_dir, RETRIEVAL_COMMAND, inputs=[dataset, zero_shot, model])  # before any work
    model_name, model, processor = model_and_processor(model, processor, revision, trust_remote_code)
    runtime = dict(device=device, dtype=dtype, batch_size=batch_size, num_workers=num_workers, distributed=distributed)
    results = {"model": model_name, "model_revision": revision, "versions": _versions()}
    if dataset is not None:
        data = load_split(dataset, config, "test", revision=dataset_revision)
        retrieval_set = RetrievalSet.from_retrieval_config(data, perturbations=perturbations)
        results["retrieval"] = {"dataset": dataset, "dataset_revision": dataset_revision, "config": config}
        results["retrieval"] |= retrieval_results(model, processor, retrieval_set, **runtime)
    if zero_shot is not None:
        results["zero_shot"] = zero_shot_accuracy(model, processor, zero_shot, **runtime)
    if output_dir is not None and getattr(distributed, "is_main_process", True):
        write_outputs(results, Path(output_dir))
    return results


def _shown(dataset: str) -> str:
    """A dataset as a card names it: a Hub id or relative path as given, an absolute local path by its folder name."""
    return Path(dataset).name if Path(dataset).is_absolute() else dataset


def _drop(value: float, original: float) -> str:
    return f"{value:.3f} ({value - original:+.3f})"


def downstream_table(results: dict, base: dict | None = None) -> str:
    """Markdown: recall@k both ways per caption variant, with its change from the original captions, and zero-shot
    accuracy. With `base` (the results of the model this one was fine-tuned from), every number is compared with
    the base model's same number instead: what fine-tuning kept or lost."""
    lines = []
    if "retrieval" in results:
        retrieval = results["retrieval"]
        compared = base is not None and "retrieval" in base
        ks = retrieval["ks"]
        columns = [f"{DIRECTIONS[direction]} R@{k}" for direction in DIRECTIONS for k in ks]
        lines += [
            f"Retrieval on `{_shown(retrieval['dataset'])}` `{retrieval['config']}` ({retrieval['images']} images, {retrieval['captions']} "
            f"captions); in brackets, the change from {'the base model' if compared else 'the original captions'}:",
            "",
            "| captions | " + " | ".join(columns) + " |",
            "| --- |" + " --- |" * len(columns),
        ]
        for variant, recalls in retrieval["variants"].items():
            reference = base["retrieval"]["variants"][variant] if compared else retrieval["variants"]["original"]
            cells = [
                f"{recalls[direction][f'recall@{k}']:.3f}"
                if variant == "original" and not compared
                else _drop(recalls[direction][f"recall@{k}"], reference[direction][f"recall@{k}"])
                for direction in DIRECTIONS
                for k in ks
            ]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    if "zero_shot" in results:
        zero_shot = results["zero_shot"]
        accuracy = f"{zero_shot['accuracy']:.3f}"
        if base is not None and "zero_shot" in base:
            accuracy = _drop(zero_shot["accuracy"], base["zero_shot"]["accuracy"]) + " against the base model"
        if lines:
            lines.append("")
        lines.append(
            f"Zero-shot classification on `{_shown(zero_shot['dataset'])}` ({zero_shot['split']}, {zero_shot['images']} images, "
            f"{len(zero_shot['classes'])} classes, {len(zero_shot['templates'])} template(s)): top-1 accuracy {accuracy}."
        )
    return "\n".join(lines)


def plot_retrieval(variants_by_model: dict[str, dict], path: Path, k: int = 1, title: str | None = None) -> None:
    """The paper's picture: recall@k per caption variant beside the original, one bar per model, both directions;
    each perturbation's bar is annotated with its drop from the same model's original captions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(variants_by_model)
    names = list(next(iter(variants_by_model.values())))
    width = 0.8 / len(models)
    figure, panels = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(names)), 4), sharey=True)
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
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(results: dict, output_dir: Path) -> None:
    """Write the reports into a folder beside `output_dir`, then move it into place (see `aro.core.io`)."""
    with output_folder(output_dir, RETRIEVAL_COMMAND) as staging:
        (staging / "results.json").write_text(json.dumps(results, indent=2))
        (staging / "results.md").write_text(downstream_table(results) + "\n")
        if "retrieval" in results:
            plot_retrieval({results["model"]: results["retrieval"]["variants"]}, staging / "retrieval.png")
