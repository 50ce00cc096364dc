"""Score models on ARO configs; with an output folder, write the reports of `report.py` there.

`aro eval` is a thin wrapper over `evaluate_models`; the NegCLIP trainer and the demo call `evaluate_model` directly
with a model already in memory.

>>> results = evaluate_model("openai/clip-vit-base-patch32", "ORG/aro", "all", output_dir="eval")  # doctest: +SKIP
>>> results["configs"]["relation"]["macro_accuracy"], results["configs"]["relation"]["macro_accuracy_ci"]  # doctest: +SKIP
>>> runs = evaluate_models(["openai/clip-vit-base-patch32", "ORG/negclip"], "ORG/aro", output_dir="eval")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import importlib.metadata
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from aro.core.contract import ARO_CONFIGS, GROUP_COLUMNS
from aro.core.errors import InvalidInput
from aro.core.io import check_output_folder, output_folder
from aro.core.protocol import accuracy_results, get_protocol, predict

from .adapters import BlindAdapter, hook_name
from .bootstrap import DEFAULT_DRAWS, Bootstrap
from .breakdown import config_numbers
from .checks import check_at_least_one
from .data import check_dataset, config_names, config_to_read, load_split
from .hub_copies import as_aro_config
from .loading import load_blind_model, load_model
from .provenance import dataset_commit, hub_id, model_commit, name_of
from .report import EVAL_COMMAND, scores_table, write_comparison, write_outputs
from .runtime import Runtime
from .scorer import Scorer, ScoreResult

LIBRARIES = ("torch", "transformers", "datasets", "evaluate", "aro")


def _versions() -> dict[str, str]:
    versions = {}
    for library in LIBRARIES:
        try:
            versions[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            versions[library] = "not installed"
    return versions


def resolve_configs(configs: str | list[str]) -> list[str]:
    names = list(ARO_CONFIGS) if configs == "all" else [configs] if isinstance(configs, str) else list(configs)
    unknown = [name for name in names if name not in ARO_CONFIGS]
    if unknown:
        raise InvalidInput(f"unknown ARO config(s) {unknown}: choose from {list(ARO_CONFIGS)} or 'all'")
    return names


def load_config(dataset: str, config: str, revision: str | None = None):
    """The test split of `config`; a dataset with a single config of another name (a Hub copy, whose config is
    `default`) gives that one (see `data.config_to_read`)."""
    return load_split(
        dataset, config_to_read(dataset, config_names(dataset, revision), config), "test", revision=revision
    )


def subsample(data, limit: int | None, seed: int):
    """`limit` rows drawn without replacement by a generator seeded with `seed`, in their original order, and their
    row numbers; the whole split when `limit` is None or not smaller."""
    if limit is None or limit >= len(data):
        return data, list(range(len(data)))
    rows = sorted(np.random.default_rng(seed).choice(len(data), limit, replace=False).tolist())
    return data.select(rows), rows


def evaluate_model(
    model,
    dataset: str,
    configs: str | list[str] = "all",
    output_dir: str | Path | None = None,
    processor=None,
    protocol: str = "paper",
    revision: str | None = None,
    dataset_revision: str | None = None,
    trust_remote_code: bool = False,
    batch_size: int = 64,
    device: str | None = None,
    dtype: str | None = None,
    num_workers: int = 0,
    distributed=None,
    score: str | None = None,
    prompts=None,
    limit: int | None = None,
    seed: int = 0,
    bootstrap_draws: int = DEFAULT_DRAWS,
    save_scores: bool = False,
    dataset_id: str | None = None,
    blind: str | None = None,
) -> dict:
    """Score `model` (a Hub id, a local path, a loaded model with its `processor`, or a scoring function
    `score(images, captions)`) on `configs` of `dataset`.

    `dataset` is a Hub id or a local folder of our build, or a Hub copy (see `hub_copies`); `dataset_id` names the
    Hub repo of a local folder for the Hub formats. `limit` scores a seeded subsample of each config; every accuracy
    gets a 95% bootstrap interval over `bootstrap_draws` resamples seeded with `seed` (0 draws: none). Options equal
    to the true caption are no negatives, and items with none left are not in the accuracy (`ScoreResult.counted`).

    Returns `{"model", "model_commit", "dataset", "dataset_id", "dataset_commit", "protocol", ..., "configs":
    {config: numbers}}` (see `breakdown.config_numbers`); with `output_dir`, also writes the files of
    `report.write_outputs` there (and with `save_scores` `scores/<config>.parquet`), replacing an earlier run's
    folder as a whole. The options, the dataset and the output folder are checked before the model loads. A
    generative model is scored by `score` ("vqa", the default, or "likelihood") with `prompts` (a
    `GenerativePrompts`), both recorded under "scoring".
    With `blind` (a causal language model's Hub id or path), each config also gets the text-only baseline's results
    beside the model's (`configs[config]["blind"]`, see `blind_results`).
    """
    get_protocol(protocol)
    check_at_least_one("--limit", limit)
    configs = resolve_configs(configs)
    runtime = Runtime(
        device=device, dtype=dtype, batch_size=batch_size, num_workers=num_workers, distributed=distributed
    )
    if output_dir is not None:
        check_output_folder(output_dir, EVAL_COMMAND, inputs=[dataset, model if isinstance(model, str) else None])
    check_dataset(dataset, configs, dataset_revision)
    if isinstance(model, str):
        reference = model
        model, processor = load_model(reference, revision=revision, trust_remote_code=trust_remote_code)
        model_name, commit = name_of(reference), model_commit(reference, model)
    elif isinstance(model, torch.nn.Module):
        if processor is None:
            raise InvalidInput("a loaded model needs its processor")
        model_name, commit = name_of(getattr(model.config, "_name_or_path", "") or type(model).__name__), None
    else:
        model_name, commit = hook_name(model), None
    scorer = Scorer(model, processor, runtime, score=score, prompts=prompts)
    blind_scorer = (
        Scorer(*load_blind_model(blind, trust_remote_code=trust_remote_code), runtime, adapter=BlindAdapter)
        if blind
        else None
    )
    image_processor = scorer.adapter.image_processor
    results = {
        "model": model_name,
        "model_revision": revision,
        "model_commit": commit,
        "dataset": name_of(dataset),
        "dataset_id": dataset_id or hub_id(dataset),
        "dataset_revision": dataset_revision,
        "dataset_commit": dataset_commit(dataset, dataset_revision),
        "protocol": protocol,
        "limit": limit,
        "seed": seed,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "adapter": scorer.adapter.family,
        "image_processor": type(image_processor).__name__ if image_processor is not None else None,
        "blind_model": blind,
        "device": runtime.device.type,
        "dtype": runtime.dtype or "fp32",
        "scoring": scorer.adapter.settings(),
        "versions": _versions(),
        "warnings": [],
        "configs": {},
    }
    bootstrap = Bootstrap(draws=bootstrap_draws, seed=seed)
    score_tables = {}
    was_training = getattr(model, "training", False)
    for config in configs:
        data, warnings = as_aro_config(load_config(dataset, config, dataset_revision), config)
        results["warnings"] += warnings
        data, rows = subsample(data, limit, seed)
        scored = scorer.score(data, group_column=GROUP_COLUMNS.get(config), protocol=protocol)
        options = (
            list(data[0]["perturbations"])
            if "perturbations" in data.column_names
            else ["true_caption", "false_caption"]
        )
        kept = scored.kept()
        groups = None if scored.groups is None else [scored.groups[item] for item in kept]
        numbers = config_numbers(scored.scores[kept], config, groups, protocol, options, bootstrap)
        numbers |= {
            "truncated_captions": scored.truncated_captions,
            "unique_images": scored.unique_images,
            "unique_captions": scored.unique_captions,
            # Options equal to the true caption are no negatives; items with none left are not in the accuracy.
            "items_with_identical_options": scored.identical_options,
            "items_without_negative": len(scored.without_negative),
        } | scored.notes
        if save_scores:
            item_ids = list(data["item_id"]) if "item_id" in data.column_names else rows
            score_tables[config] = scores_table(
                item_ids, scored.groups, scored.scores, options, scored.predictions, kept
            )
        for head, scores in scored.other_heads.items():
            head_result = replace(scored, scores=scores, predictions=predict(scores, protocol))
            numbers.setdefault("other_heads", {})[head] = accuracies(
                accuracy_results(*head_result.counted(), config=config, protocol=protocol)
            )
        if blind_scorer is not None:
            blind_scored = blind_scorer.score(data, group_column=GROUP_COLUMNS.get(config), protocol=protocol)
            numbers["blind"] = blind_results(scored, blind_scored, config, protocol)
        results["configs"][config] = numbers
    if was_training:
        model.train()
    if output_dir is not None:
        results["not_written"] = write_outputs(results, Path(output_dir), score_tables)
    return results


def evaluate_models(models: list, dataset: str, output_dir: str | Path | None, **options) -> list[dict]:
    """`evaluate_model` for each model, each into `output_dir/<model name>/`, then `comparison.md`, `.csv` and
    `.png` in `output_dir`; one model writes straight into `output_dir`, and none is written without one."""
    if output_dir is None or len(models) == 1:
        return [evaluate_model(model, dataset, output_dir=output_dir, **options) for model in models]
    output_dir = Path(output_dir)
    folders = [name_of(model).replace("/", "__") for model in models]
    if len(set(folders)) < len(folders):
        raise InvalidInput(f"two models share a name ({folders}): their results would overwrite each other")
    check_output_folder(
        output_dir, EVAL_COMMAND, inputs=[dataset, *(model for model in models if isinstance(model, str))]
    )
    with output_folder(output_dir, EVAL_COMMAND) as staging:  # all models' results, or none, replace an earlier run's
        runs = [
            evaluate_model(model, dataset, output_dir=staging / folder, **options)
            for model, folder in zip(models, folders)
        ]
        write_comparison(runs, staging)
    return runs


def accuracies(numbers: dict) -> dict:
    """Micro and macro accuracy of `accuracy_results`, without the per-group table."""
    return {"accuracy": numbers["accuracy"], "macro_accuracy": numbers["macro_accuracy"]}


def blind_results(model: ScoreResult, blind: ScoreResult, config: str, protocol: str) -> dict:
    """The blind baseline's accuracy (micro and macro, as the model's) and `right_where_model_right`: of the items
    the model gets right, the share the blind model also gets right (high: text priors explain the model's hits)."""
    model_predictions, references, _ = model.counted()
    blind_predictions, _, groups = blind.counted()
    model_right = np.asarray(model_predictions) == np.asarray(references)
    blind_right = np.asarray(blind_predictions) == np.asarray(references)
    numbers = accuracies(accuracy_results(blind_predictions, references, groups, config, protocol))
    numbers["right_where_model_right"] = float(blind_right[model_right].mean()) if model_right.any() else None
    return numbers


def read_models_file(path: str | Path) -> list[str]:
    """Model references listed one per line (blank lines and `#` comments ignored), as CLIP_benchmark's
    `--pretrained_model models.txt`."""
    lines = [line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines()]
    models = [line for line in lines if line]
    if not models:
        raise InvalidInput(f"{path} lists no model")
    return models
