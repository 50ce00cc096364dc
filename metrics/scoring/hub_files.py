"""The Hub's two formats for evaluation results, and the pull request that adds one to a model repo.

- `model-index` (a model card's metadata, the older format): per config, micro and macro accuracy as separate
  metrics, each named as what it is, with its 95% interval.
- `.eval_results/aro.yaml` (the format the Hub reads from model repos today): one entry per config, its task id in
  the dataset's `eval.yaml`, valued by the protocol's headline, its interval in the notes.

Both name the dataset by its Hub id; without one (a local folder and no `--dataset-id`) neither is written.

>>> model_index(result, "org/negclip")  # doctest: +SKIP
>>> write_eval_results(result, "negclip-run")  # doctest: +SKIP
PosixPath('negclip-run/.eval_results/aro.yaml')
"""

from __future__ import annotations

from pathlib import Path

import yaml
from huggingface_hub import CommitOperationAdd, EvalResultEntry, HfApi, eval_result_entries_to_yaml

from aro.core.errors import MissingInput

from .results import EvalResult, Interval

EVAL_RESULTS_PATH = ".eval_results/aro.yaml"
TASK_TYPE = "zero-shot-image-classification"


def hub_revision(result: EvalResult) -> str | None:
    """The dataset's Hub commit; None for a content hash of a local folder, which is no Hub revision."""
    commit = result.dataset_commit
    return commit if commit and not commit.startswith("sha256:") else None


def model_index(result: EvalResult, model_name: str | None = None) -> list[dict] | None:
    """The `model-index` of a model card: per config, micro and macro accuracy, each named as what it is.

    None when the dataset has no Hub id (`dataset.type` must be one).
    """
    if not result.dataset_id:
        return None
    entries = []
    for config, numbers in result.configs.items():
        dataset = {"name": f"ARO {config}", "type": result.dataset_id, "config": config, "split": "test"}
        if hub_revision(result):
            dataset["revision"] = hub_revision(result)
        metrics = [_metric("micro", numbers.accuracy, numbers.accuracy_ci, config, result.protocol)]
        if numbers.macro_accuracy is not None:
            metrics.append(_metric("macro", numbers.macro_accuracy, numbers.macro_accuracy_ci, config, result.protocol))
        entries.append(
            {"task": {"type": TASK_TYPE, "name": "ARO caption choice"}, "dataset": dataset, "metrics": metrics}
        )
    return [{"name": model_name or result.model, "results": entries}]


def _metric(average: str, value: float, interval: Interval | None, config: str, protocol: str) -> dict:
    over = {"micro": "items", "macro": "groups"}[average]
    return {
        "type": "accuracy",
        "value": round(float(value), 4),
        "name": f"{config} {average} accuracy over {over} ({protocol} protocol)",
        "args": {"average": average, "protocol": protocol}
        | ({"ci95": [round(bound, 4) for bound in interval]} if interval else {}),
    }


def eval_results_entries(result: EvalResult) -> list[dict] | None:
    """The `.eval_results/aro.yaml` entries, one per config (its task id in the dataset's `eval.yaml`), valued by
    the protocol's headline; None when the dataset has no Hub id."""
    if not result.dataset_id:
        return None
    entries = []
    for config, numbers in result.configs.items():
        name, value, interval = numbers.headline_number()
        notes = f"{name}, {result.protocol} protocol" + (
            f", 95% CI [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""
        )
        entries.append(
            EvalResultEntry(
                dataset_id=result.dataset_id,
                task_id=config,
                value=round(float(value), 4),
                dataset_revision=hub_revision(result),
                date=result.date,
                notes=notes,
            )
        )
    return eval_result_entries_to_yaml(entries)


def write_model_index(result: EvalResult, folder: Path) -> None:
    """`model-index.yaml` in `folder` (the dataset must have a Hub id)."""
    (folder / "model-index.yaml").write_text(yaml.safe_dump({"model-index": model_index(result)}, sort_keys=False))


def write_eval_results(result: EvalResult, folder: str | Path) -> Path | None:
    """Write `.eval_results/aro.yaml` into `folder` (a model folder or an evaluation's output); return its path,
    or None when the dataset has no Hub id to name. The NegCLIP trainer calls this for its model folder."""
    entries = eval_results_entries(result)
    if entries is None:
        return None
    path = Path(folder) / EVAL_RESULTS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return path


def eval_results_operations(folder: str | Path) -> list[CommitOperationAdd]:
    """The commit operations of `push_eval_results`: `.eval_results/aro.yaml` as written in `folder`."""
    path = Path(folder) / EVAL_RESULTS_PATH
    if not path.is_file():
        raise MissingInput(
            f"{path} does not exist: results are written for the Hub only when the dataset has a Hub id (--dataset-id)"
        )
    return [CommitOperationAdd(path_in_repo=EVAL_RESULTS_PATH, path_or_fileobj=path.read_bytes())]


def push_eval_results(folder: str | Path, repo_id: str) -> str:
    """Open a pull request on the model repo `repo_id` adding the `.eval_results/aro.yaml` written in `folder`."""
    info = HfApi().create_commit(
        repo_id, eval_results_operations(folder), commit_message="Add ARO evaluation results", create_pr=True
    )
    return info.pr_url
