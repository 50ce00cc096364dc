"""Score a model on ARO configs; with an output folder, write the reports of `report.py` there.

`aro eval` is a thin wrapper over `evaluate_model`; the NegCLIP trainer and the demo call it directly with a
model already in memory.

>>> results = evaluate_model("openai/clip-vit-base-patch32", "ORG/aro", "all", output_dir="eval")  # doctest: +SKIP
>>> results["configs"]["relation"]["macro_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from .data import check_dataset, load_split
from .loading import model_and_processor
from .protocol import CONFIGS, GROUP_COLUMNS, accuracy_results
from .report import check_output_dir, write_outputs
from .runtime import Runtime
from .scorer import Scorer

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
    score: str | None = None,
    prompts=None,
) -> dict:
    """Score `model` (a Hub id, a local path or a loaded model with its `processor`) on `configs` of `dataset`.

    Returns `{"model", "model_revision", "dataset", "dataset_revision", "protocol", "versions", "configs": {config:
    aro_accuracy results}}`; with `output_dir`, also writes `results.json`, `results.md`, one PNG per config and
    `model-index.yaml` there, replacing an earlier run's folder as a whole. The options, the dataset and the output
    folder are checked before the model loads. A generative model is scored by `score` ("vqa", the default, or
    "likelihood") with `prompts` (a `GenerativePrompts`), both recorded under "scoring".
    """
    configs = resolve_configs(configs)
    runtime = Runtime(device=device, dtype=dtype, batch_size=batch_size, num_workers=num_workers, distributed=distributed)
    if output_dir is not None:
        check_output_dir(Path(output_dir))
    check_dataset(dataset, configs)
    model_name, model, processor = model_and_processor(model, processor, revision, trust_remote_code)
    scorer = Scorer(model, processor, runtime, score=score, prompts=prompts)
    results = {
        "model": model_name,
        "model_revision": revision,
        "dataset": dataset,
        "dataset_revision": dataset_revision,
        "protocol": protocol,
        "adapter": scorer.adapter.family,
        "image_processor": type(scorer.adapter.image_processor).__name__,
        "device": runtime.device.type,
        "dtype": runtime.dtype or "fp32",
        "scoring": scorer.adapter.settings(),
        "versions": _versions(),
        "configs": {},
    }
    was_training = model.training
    for config in configs:
        data = load_split(dataset, config, "test", revision=dataset_revision)
        scored = scorer.score(data, group_column=GROUP_COLUMNS.get(config))
        predictions, references, groups = scored.counted()
        numbers = accuracy_results(predictions, references, groups=groups, config=config, protocol=protocol)
        numbers |= {
            "truncated_captions": scored.truncated_captions, "unique_images": scored.unique_images, "unique_captions": scored.unique_captions,
            # Options equal to the true caption are no negatives; items with none left are not in the accuracy.
            "items_with_identical_options": scored.identical_options, "items_without_negative": len(scored.without_negative),
        } | scored.notes
        results["configs"][config] = numbers
    model.train(was_training)
    if output_dir is not None:
        write_outputs(results, Path(output_dir))
    return results
