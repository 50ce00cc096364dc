"""Score models on ARO configs; with an output folder, write the reports of `report.py` there.

`aro eval` is a thin wrapper over `evaluate_models`; the NegCLIP trainer and the demo call `evaluate_model` directly
with a model already in memory. What to do is one `EvalOptions` (where and how the model runs is its `Runtime`);
what comes back is an `EvalResult` (`results.py`), read through attributes, whose `to_json()` is `results.json`.

>>> options = EvalOptions(runtime=Runtime(device="cuda", dtype="bf16", batch_size=256), limit=500)  # doctest: +SKIP
>>> model = "openai/clip-vit-base-patch32"
>>> result = evaluate_model(model, "ORG/aro", output_dir="eval", options=options)  # doctest: +SKIP
>>> result.configs["relation"].macro_accuracy, result.configs["relation"].macro_accuracy_ci  # doctest: +SKIP
>>> runs = evaluate_models(["openai/clip-vit-base-patch32", "ORG/negclip"], "ORG/aro", "eval")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import importlib.metadata
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from aro.core.contract import ARO_CONFIGS, CHOICE_CONFIGS, GROUP_COLUMNS, SUGARCREPE_CONFIGS, expand_config_names
from aro.core.errors import InvalidInput
from aro.core.io import check_output_folder, output_folder
from aro.core.protocol import accuracy_results, get_protocol, predict

from .adapters import BlindAdapter, hook_name
from .adapters.prompts import GenerativePrompts
from .bootstrap import DEFAULT_DRAWS, Bootstrap
from .breakdown import config_result, sugarcrepe_summary
from .data import check_dataset, config_names, config_to_read, load_split
from .hub_copies import as_aro_config
from .loading import describe_weights, load_blind_model, load_model, offload_refusal
from .provenance import dataset_commit, hub_id, model_commit, name_of
from .report import EVAL_COMMAND, scores_table, write_comparison, write_outputs
from .results import BlindAccuracy, ConfigResult, EvalResult, HeadAccuracy
from .runtime import Runtime
from .scorer import Scorer, ScoreResult

LIBRARIES = ("torch", "transformers", "datasets", "evaluate", "aro")
# Names of `--config` that stand for several configs.
CONFIG_SETS = {"all": ARO_CONFIGS, "sugarcrepe": SUGARCREPE_CONFIGS}


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate; every option is checked when the options are made, before any model loads.

    - Where and how the model runs: `runtime` (the dtype of its weights, its device or a device map spreading it over
      several, its attention implementation, batch size, image-decoding workers, the distributed state of several
      processes); the blind model is loaded and run the same way.
    - What is loaded: the model's `revision`, `trust_remote_code`, the `dataset_revision`; `dataset_id` names the Hub
      repo a local dataset folder is published as, for the Hub files (`model-index.yaml`, `.eval_results/`).
    - How ARO is scored: the `protocol` (see `aro.core.protocol`); `limit` scores a seeded subsample of that many
      items per config; every accuracy gets a 95% bootstrap interval over `bootstrap_draws` resamples seeded with
      `seed` (0 draws: none); `save_scores` also writes every item's scores; `blind` (a causal language model's Hub
      id or path) adds the text-only baseline; a generative model is scored by `score` ("vqa", the default, or
      "likelihood") with `prompts` (`GenerativePrompts`).

    `evaluate_downstream` (retrieval, zero-shot) reads the runtime and what is loaded, and refuses ARO's scoring
    options rather than ignore them.
    """

    runtime: Runtime = field(default_factory=Runtime)
    revision: str | None = None
    trust_remote_code: bool = False
    dataset_revision: str | None = None
    dataset_id: str | None = None
    protocol: str = "paper"
    limit: int | None = None
    seed: int = 0
    bootstrap_draws: int = DEFAULT_DRAWS
    save_scores: bool = False
    blind: str | None = None
    score: str | None = None
    prompts: GenerativePrompts | None = None

    def __post_init__(self):
        get_protocol(self.protocol)
        if self.limit is not None and self.limit < 1:
            raise InvalidInput(f"the limit (--limit) must be at least 1 item per config, not {self.limit}")
        if self.seed < 0:  # numpy's generators take none
            raise InvalidInput(f"the seed (--seed) must be 0 or more, not {self.seed}")
        if self.bootstrap_draws < 0:
            raise InvalidInput(
                f"bootstrap draws (--bootstrap) must be 0 (no intervals) or more, not {self.bootstrap_draws}"
            )

    def aro_scoring_options(self) -> list[str]:
        """The names of ARO's scoring options given other values than their defaults."""
        loading = {"runtime", "revision", "trust_remote_code", "dataset_revision"}
        default = EvalOptions(runtime=self.runtime)
        return [
            option.name
            for option in fields(self)
            if option.name not in loading and getattr(self, option.name) != getattr(default, option.name)
        ]


def library_versions() -> dict[str, str]:
    versions = {}
    for library in LIBRARIES:
        try:
            versions[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            versions[library] = "not installed"
    return versions


def resolve_configs(configs: str | list[str]) -> list[str]:
    """The configs that `configs` names: "all" stands for ARO's four and "sugarcrepe" for SugarCrepe's seven
    splits, alone or in a list."""
    names = list(expand_config_names([configs] if isinstance(configs, str) else configs, CONFIG_SETS))
    unknown = [name for name in names if name not in CHOICE_CONFIGS]
    if unknown:
        raise InvalidInput(
            f"unknown ARO config(s) {unknown}: choose from {list(CHOICE_CONFIGS)}, 'all' or 'sugarcrepe'"
        )
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
    options: EvalOptions | None = None,
) -> EvalResult:
    """Score `model` (a Hub id, a local path, a loaded model with its `processor`, or a scoring function
    `score(images, captions)`) on `configs` of `dataset` (a Hub id, a local folder of our build, or a Hub copy: see
    `hub_copies`), as `options` say.

    Options equal to the true caption are no negatives, and items with none left are not in the accuracy
    (`ScoreResult.counted`). With `output_dir`, also writes the files of `report.write_outputs` there (and with
    `options.save_scores` `scores/<config>.parquet`), replacing an earlier run's folder as a whole. The dataset and
    the output folder are checked before the model loads.

    >>> result = evaluate_model(model, "ORG/aro", "relation", processor=processor)  # doctest: +SKIP
    >>> result.configs["relation"].headline_number()  # doctest: +SKIP
    ('macro accuracy', 0.61, [0.58, 0.64])
    """
    options = options or EvalOptions()
    configs = resolve_configs(configs)
    if output_dir is not None:
        inputs = [dataset, model if isinstance(model, str) else None, options.runtime.offload_folder]
        check_output_folder(output_dir, EVAL_COMMAND, inputs=inputs)
    check_dataset(dataset, configs, options.dataset_revision)
    model, processor, model_name, commit = loaded_model(model, processor, options)
    scorer = Scorer(model, processor, options.runtime, score=options.score, prompts=options.prompts)
    blind_scorer = None
    if options.blind:
        blind_model = load_blind_model(
            options.blind, trust_remote_code=options.trust_remote_code, runtime=options.runtime
        )
        blind_scorer = Scorer(*blind_model, options.runtime, adapter=BlindAdapter)
    image_processor = scorer.adapter.image_processor
    result = EvalResult(
        model=model_name,
        model_revision=options.revision,
        model_commit=commit,
        dataset=name_of(dataset),
        dataset_id=options.dataset_id or hub_id(dataset),
        dataset_revision=options.dataset_revision,
        dataset_commit=dataset_commit(dataset, options.dataset_revision),
        protocol=options.protocol,
        limit=options.limit,
        seed=options.seed,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        adapter=scorer.adapter.family,
        image_processor=type(image_processor).__name__ if image_processor is not None else None,
        blind_model=options.blind,
        device=scorer.adapter.runtime.device.type,
        dtype=options.runtime.dtype or "fp32",
        weights=describe_weights(model) if isinstance(model, torch.nn.Module) else None,
        blind_weights=describe_weights(blind_scorer.adapter.model) if blind_scorer is not None else None,
        scoring=scorer.adapter.settings(),
        versions=library_versions(),
    )
    bootstrap = Bootstrap(draws=options.bootstrap_draws, seed=options.seed)
    score_tables = {}
    right, blind_right = {}, {}  # SugarCrepe's splits: per counted item, whether it was got right
    was_training = getattr(model, "training", False)
    with offload_refusal(model, blind_scorer and blind_scorer.adapter.model):
        for config in configs:
            data, warnings = as_aro_config(load_config(dataset, config, options.dataset_revision), config)
            result.warnings += warnings
            data, rows = subsample(data, options.limit, options.seed)
            scored = scorer.score(data, group_column=GROUP_COLUMNS.get(config), protocol=options.protocol)
            result.configs[config] = scored_config(scored, data, config, options.protocol, bootstrap)
            if config in SUGARCREPE_CONFIGS:
                right[config] = right_items(scored)
            blind_scored = None
            if blind_scorer is not None:
                blind_scored = blind_scorer.score(
                    data, group_column=GROUP_COLUMNS.get(config), protocol=options.protocol
                )
                result.configs[config].blind = blind_accuracy(scored, blind_scored, config, options.protocol)
                if config in SUGARCREPE_CONFIGS:
                    blind_right[config] = right_items(blind_scored)
            if options.save_scores:
                item_ids = list(data["item_id"]) if "item_id" in data.column_names else rows
                score_tables[config] = scores_table(item_ids, option_names(data), scored, blind_scored)
    result.sugarcrepe = sugarcrepe_summary(right, options.protocol, bootstrap, blind_right or None)
    if was_training:
        model.train()
    if output_dir is not None:
        result.not_written = write_outputs(result, Path(output_dir), score_tables)
    return result


def loaded_model(model, processor, options: EvalOptions) -> tuple:
    """(model, processor, the model's name in reports, its commit) of a Hub id or path (loaded here), a loaded model
    with its processor, or a scoring function."""
    if isinstance(model, str):
        loaded, processor = load_model(
            model, revision=options.revision, trust_remote_code=options.trust_remote_code, runtime=options.runtime
        )
        return loaded, processor, name_of(model), model_commit(model, loaded)
    if isinstance(model, torch.nn.Module):
        if processor is None:
            raise InvalidInput("a loaded model needs its processor")
        name = getattr(getattr(model, "config", None), "_name_or_path", "")  # open_clip's models have no config
        return model, processor, name_of(name or type(model).__name__), None
    return model, processor, hook_name(model), None


def option_names(data) -> list[str]:
    """The names of an item's candidates: the Order sets' perturbations (`original` and `option_1`... for an Order
    set without them), else the VG sets' two captions."""
    if "perturbations" in data.column_names:
        return list(data[0]["perturbations"])
    if "caption_options" in data.column_names:
        return ["original", *(f"option_{index}" for index in range(1, len(data[0]["caption_options"])))]
    return ["true_caption", "false_caption"]


def scored_config(scored: ScoreResult, data, config: str, protocol: str, bootstrap: Bootstrap) -> ConfigResult:
    """The numbers of one config's scores: over the items that have a negative, with the scorer's counts and the
    accuracy of every further head of the model."""
    kept = scored.kept()
    groups = None if scored.groups is None else [scored.groups[item] for item in kept]
    result = config_result(scored.scores[kept], config, groups, protocol, option_names(data), bootstrap)
    result.truncated_captions = scored.truncated_captions
    result.unique_images = scored.unique_images
    result.unique_captions = scored.unique_captions
    result.distinct_inputs = dict(scored.distinct_inputs)
    result.items_with_identical_options = scored.identical_options
    result.items_without_negative = len(scored.without_negative)
    result.same_words_items = sum(scored.same_words[item] for item in kept)
    result.same_words_share = result.same_words_items / len(kept) if kept else None
    result.notes = dict(scored.notes)
    for head, scores in scored.other_heads.items():
        head_result = replace(scored, scores=scores, predictions=predict(scores, protocol))
        numbers = accuracy_results(*head_result.counted(), config=config, protocol=protocol)
        result.other_heads[head] = HeadAccuracy(numbers["accuracy"], numbers["macro_accuracy"])
    return result


def evaluate_models(
    models: list,
    dataset: str,
    output_dir: str | Path | None = None,
    configs: str | list[str] = "all",
    options: EvalOptions | None = None,
) -> list[EvalResult]:
    """`evaluate_model` for each model, each into `output_dir/<model name>/`, then `comparison.md`, `.csv` and
    `.png` in `output_dir`; one model writes straight into `output_dir`, and none is written without one."""
    if output_dir is None or len(models) == 1:
        return [evaluate_model(model, dataset, configs, output_dir, options=options) for model in models]
    output_dir = Path(output_dir)
    folders = [name_of(model).replace("/", "__") for model in models]
    if len(set(folders)) < len(folders):
        raise InvalidInput(f"two models share a name ({folders}): their results would overwrite each other")
    check_output_folder(
        output_dir, EVAL_COMMAND, inputs=[dataset, *(model for model in models if isinstance(model, str))]
    )
    with output_folder(output_dir, EVAL_COMMAND) as staging:  # all models' results, or none, replace an earlier run's
        runs = [
            evaluate_model(model, dataset, configs, staging / folder, options=options)
            for model, folder in zip(models, folders)
        ]
        write_comparison(runs, staging)
    return runs


def right_items(scored: ScoreResult) -> np.ndarray:
    """Per item in the accuracy, whether the prediction is the true caption."""
    predictions, references, _ = scored.counted()
    return np.asarray(predictions) == np.asarray(references)


def blind_accuracy(model: ScoreResult, blind: ScoreResult, config: str, protocol: str) -> BlindAccuracy:
    """The blind baseline's accuracy (micro and macro, as the model's) and `right_where_model_right`: of the items
    the model gets right, the share the blind model also gets right (high: text priors explain the model's hits)."""
    blind_predictions, references, groups = blind.counted()
    model_right, blind_right = right_items(model), right_items(blind)
    numbers = accuracy_results(blind_predictions, references, groups, config, protocol)
    return BlindAccuracy(
        accuracy=numbers["accuracy"],
        macro_accuracy=numbers["macro_accuracy"],
        right_where_model_right=float(blind_right[model_right].mean()) if model_right.any() else None,
    )


def read_models_file(path: str | Path) -> list[str]:
    """Model references listed one per line (blank lines and `#` comments ignored), as CLIP_benchmark's
    `--pretrained_model models.txt`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(
            f"--models-file {path} cannot be read ({getattr(error, 'strerror', None) or error})"
        ) from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    models = [line for line in lines if line]
    if not models:
        raise InvalidInput(f"{path} lists no model")
    return models
