"""Score a model beyond ARO, and report it: retrieval with the captions as written and shuffled, and zero-shot
classification. `aro retrieval` is a thin wrapper over `evaluate_downstream`.

Writes `results.json` (`DownstreamResult.to_json`), `results.md` (`tables.downstream_table`: recall per caption
variant, its drop from the original captions, and zero-shot accuracy) and `retrieval.png` (`plots.plot_retrieval`,
the paper's picture: recall with each perturbation beside the original).

>>> options = EvalOptions(runtime=Runtime(batch_size=256))  # doctest: +SKIP
>>> model = "openai/clip-vit-base-patch32"
>>> result = evaluate_downstream(model, "ORG/aro", output_dir="retrieval", options=options)  # doctest: +SKIP
>>> result.retrieval.variants["shuffle_trigrams"]["text_to_image"]["recall@1"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from aro.core.errors import InvalidInput, MissingInput
from aro.core.io import check_output_folder, output_folder

from .data import check_dataset, load_split
from .evaluation import EvalOptions, library_versions, loaded_model
from .plots import plot_retrieval
from .provenance import name_of
from .retrieval import RetrievalResult, RetrievalSet, retrieval_results
from .tables import downstream_table
from .zero_shot import ZeroShotResult, ZeroShotTask, zero_shot_accuracy

RETRIEVAL_COMMAND = "aro retrieval"


@dataclass
class DownstreamResult:
    """A model's retrieval and zero-shot results (either may be missing); `to_json()` is `results.json`."""

    model: str
    model_revision: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    retrieval: RetrievalResult | None = None
    zero_shot: ZeroShotResult | None = None

    def to_json(self) -> dict:
        data = {"model": self.model, "model_revision": self.model_revision, "versions": self.versions}
        if self.retrieval is not None:
            data["retrieval"] = self.retrieval.to_json()
        if self.zero_shot is not None:
            data["zero_shot"] = self.zero_shot.to_json()
        return data

    @classmethod
    def read(cls, path: str | Path, option: str | None = None) -> DownstreamResult:
        """The `results.json` of `aro retrieval` at `path`; one line naming the file (after the `option` that gave
        it, if any) when it is not one."""
        where = f"{option} {path}" if option else str(path)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise MissingInput(f"{where} cannot be read ({error.strerror})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidInput(f"{where} is not JSON ({error}): give the results.json of `aro retrieval`") from None
        try:
            if not isinstance(data, dict) or not {"retrieval", "zero_shot"} & set(data):
                raise KeyError
            return cls.from_json(data)
        except (ValueError, KeyError, TypeError, AttributeError):
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise InvalidInput(
                f"{where} holds {found}, not the results of `aro retrieval` (its `retrieval` or `zero_shot` results)"
            ) from None

    @classmethod
    def from_json(cls, data: dict) -> DownstreamResult:
        """A `results.json` of `aro retrieval` read back."""
        return cls(
            model=data["model"],
            model_revision=data.get("model_revision"),
            versions=data.get("versions", {}),
            retrieval=RetrievalResult.from_json(data["retrieval"]) if "retrieval" in data else None,
            zero_shot=ZeroShotResult.from_json(data["zero_shot"]) if "zero_shot" in data else None,
        )


def evaluate_downstream(
    model,
    dataset: str | None = None,
    config: str = "coco_retrieval",
    zero_shot: ZeroShotTask | None = None,
    output_dir: str | Path | None = None,
    processor=None,
    perturbations: bool = True,
    options: EvalOptions | None = None,
) -> DownstreamResult:
    """Retrieval on `config` of `dataset` (when given) and zero-shot classification on `zero_shot` (when given).

    `model` is a Hub id, a local path, or a loaded dual encoder with its `processor`; of `options`, the runtime and
    what is loaded apply (ARO's scoring options are refused). With `output_dir`, the main process of the runtime's
    distributed state also writes the reports there. The dataset and the output folder are checked before the model
    loads.
    """
    options = options or EvalOptions()
    if options.aro_scoring_options():
        raise InvalidInput(f"retrieval and zero-shot take no ARO scoring options ({options.aro_scoring_options()})")
    if dataset is None and zero_shot is None:
        raise InvalidInput("nothing to evaluate: give a retrieval dataset, a zero-shot task, or both")
    if output_dir is not None:
        inputs = [dataset, zero_shot and zero_shot.dataset, model]
        check_output_folder(output_dir, RETRIEVAL_COMMAND, inputs=inputs)  # before any work
    if dataset is not None:
        check_dataset(dataset, [config])
    model, processor, model_name, _ = loaded_model(model, processor, options)
    result = DownstreamResult(model=model_name, model_revision=options.revision, versions=library_versions())
    if dataset is not None:
        data = load_split(dataset, config, "test", revision=options.dataset_revision)
        retrieval_set = RetrievalSet.from_retrieval_config(data, perturbations=perturbations)
        result.retrieval = replace(
            retrieval_results(model, processor, retrieval_set, options.runtime),
            dataset=name_of(dataset),
            dataset_revision=options.dataset_revision,
            config=config,
        )
    if zero_shot is not None:
        result.zero_shot = zero_shot_accuracy(model, processor, zero_shot, options.runtime)
    if output_dir is not None and getattr(options.runtime.distributed, "is_main_process", True):
        write_downstream_outputs(result, Path(output_dir))
    return result


def write_downstream_outputs(result: DownstreamResult, output_dir: Path) -> None:
    """Write the reports into a folder beside `output_dir`, then move it into place (see `aro.core.io`)."""
    with output_folder(output_dir, RETRIEVAL_COMMAND) as staging:
        (staging / "results.json").write_text(json.dumps(result.to_json(), indent=2))
        (staging / "results.md").write_text(downstream_table(result) + "\n")
        if result.retrieval is not None:
            plot_retrieval({result.model: result.retrieval.variants}, staging / "retrieval.png")
