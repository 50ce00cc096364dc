"""Score a model on ARO configs; with an output folder, write the reports of `report.py` there.

`aro eval` is a thin wrapper over `evaluate_model`; the NegCLIP trainer and the demo call it directly with a
model already in memory.

>>> results = evaluate_model("openai/clip-vit-base-patch32", "ORG/aro", "all", output_dir="eval")  # doctest: +SKIP
>>> results["configs"]["relation"]["macro_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .adapters import BlindAdapter, hook_name
from .data import check_dataset, load_split, predict
from .loading import load_blind_model, load_model
from .protocol import CONFIGS, GROUP_COLUMNS, accuracy_results
from .report import check_output_dir, write_outputs
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
    names = list(CONFIGS) if configs == "all" else [configs] if isinstance(configs, str) else list(configs)
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown ARO config(s) {unknown}: choose from {list(CONFIGS)} or 'all'")
    return names


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
    blind: str | None = None,
) -> dict:
    """Score `model` (a Hub id, a local path, a loaded model with its `processor`, or a scoring function
    `score(images, captions)`) on `configs` of `dataset`.

    Returns `{"model", "model_revision", "dataset", "dataset_revision", "protocol", "versions", "configs": {config:
    aro_accuracy results}}`; with `output_dir`, also writes `results.json`, `results.md`, one PNG per config and
    `model-index.yaml` there, replacing an earlier run's folder as a whole. The options, the dataset and the output
    folder are checked before the model loads. With `blind` (a causal language model's Hub id or path), each config
    also gets the text-only baseline's results beside the model's (`configs[config]["blind"]`, see `blind_results`).
    """
    configs = resolve_configs(configs)
    runtime = Runtime(device=device, dtype=dtype, batch_size=batch_size, num_workers=num_workers, distributed=distributed)
    if output_dir is not None:
        check_output_dir(Path(output_dir))
    check_dataset(dataset, configs)
    if isinstance(model, str):
        model_name = model
        model, processor = load_model(model, revision=revision, trust_remote_code=trust_remote_code)
    elif isinstance(model, torch.nn.Module):
        model_name = getattr(model.config, "_name_or_path", type(model).__name__)
        if processor is None:
            raise ValueError("a loaded model needs its processor")
    else:
        model_name = hook_name(model)
    scorer = Scorer(model, processor, runtime)
    blind_scorer = Scorer(*load_blind_model(blind, trust_remote_code=trust_remote_code), runtime, adapter=BlindAdapter) if blind else None
    image_processor = scorer.adapter.image_processor
    results = {
        "model": model_name,
        "model_revision": revision,
        "dataset": dataset,
        "dataset_revision": dataset_revision,
        "protocol": protocol,
        "adapter": scorer.adapter.family,
        "image_processor": type(image_processor).__name__ if image_processor is not None else None,
        "blind_model": blind,
        "device": runtime.device.type,
        "dtype": runtime.dtype or "fp32",
        "versions": _versions(),
        "configs": {},
    }
    was_training = getattr(model, "training", False)
    for config in configs:
        data = load_split(dataset, config, "test", revision=dataset_revision)
        scored = scorer.score(data, group_column=GROUP_COLUMNS.get(config))
        predictions, references, groups = scored.counted()
        numbers = accuracy_results(predictions, references, groups=groups, config=config, protocol=protocol)
        numbers |= {
            "truncated_captions": scored.truncated_captions, "unique_images": scored.unique_images, "unique_captions": scored.unique_captions,
            # Options equal to the true caption are no negatives; items with none left are not in the accuracy.
            "items_with_identical_options": scored.identical_options, "items_without_negative": len(scored.without_negative),
        }
        for head, scores in scored.other_heads.items():
            head_result = replace(scored, scores=scores, predictions=predict(scores))
            numbers.setdefault("other_heads", {})[head] = accuracies(accuracy_results(*head_result.counted(), config=config, protocol=protocol))
        if blind_scorer is not None:
            numbers["blind"] = blind_results(scored, blind_scorer.score(data, group_column=GROUP_COLUMNS.get(config)), config, protocol)
        results["configs"][config] = numbers
    if was_training:
        model.train()
    if output_dir is not None:
        write_outputs(results, Path(output_dir))
    return results


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


@torch.no_grad()
def retrieval_recall(model, processor, data, image_column="image", caption_column="caption", image_id_column="image_id", batch_size=64, device=None) -> dict:
    """Recall@1 of text-to-image and image-to-text retrieval over an image-caption split (several captions per image)."""
    from datasets import Image as ImageFeature

    was_training = model.training
    adapter = Scorer(model, processor, device=device, batch_size=batch_size).adapter
    image_ids = [str(image_id) for image_id in data[image_id_column]]
    column_of = {}
    first_row = []
    for row, image_id in enumerate(image_ids):
        if image_id not in column_of:
            column_of[image_id] = len(first_row)
            first_row.append(row)
    raw = data.cast_column(image_column, ImageFeature(decode=False))
    image_features = adapter.image_features(raw, first_row, image_column)
    captions = list(data[caption_column])
    text_features = adapter.text_features(captions)
    similarity = text_features @ image_features.t()
    truth = torch.tensor([column_of[image_id] for image_id in image_ids])
    text_to_image = float((similarity.argmax(dim=1) == truth).float().mean())
    image_to_text = float((truth[similarity.argmax(dim=0)] == torch.arange(len(first_row))).float().mean())
    model.train(was_training)
    return {"text_to_image_recall@1": text_to_image, "image_to_text_recall@1": image_to_text, "images": len(first_row), "captions": len(captions)}
