"""Zero-shot image classification: the downstream check that fine-tuning (NegCLIP) kept what the model could do.

Every class name goes into every template ("a photo of a {}."); a class's text embedding is the normalised mean of
its templates' embeddings (CLIP's prompt ensembling). Each image is assigned the class whose embedding is most
similar to its own; a tie between classes counts wrong, as in ARO accuracy. The result is top-1 accuracy.

Class names come from the label column's `ClassLabel` names (underscores read as spaces), from the distinct values
of a string label column, or from `class_names` given in label order.

>>> task = ZeroShotTask("uoft-cs/cifar10", image_column="img", label_column="label")  # doctest: +SKIP
>>> zero_shot_accuracy(model, processor, task, Runtime(batch_size=256)).accuracy  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from datasets import Image as ImageFeature

from aro.core.errors import InvalidInput
from aro.core.protocol import predict

from .data import load_split
from .provenance import name_of
from .retrieval import dual_encoder
from .runtime import Runtime

DEFAULT_TEMPLATES = ("a photo of a {}.",)


@dataclass(frozen=True)
class ZeroShotTask:
    """A labelled image dataset to classify zero-shot; the defaults are CIFAR-10 as the Hub has it."""

    dataset: str = "uoft-cs/cifar10"
    config: str | None = None
    split: str = "test"
    image_column: str = "img"
    label_column: str = "label"
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    class_names: tuple[str, ...] | None = None  # in label order; default: the label column's names
    max_images: int | None = None  # the first N images only (a quick check during training)
    revision: str | None = None

    def __post_init__(self):
        bad = [template for template in self.templates if "{}" not in template]
        if not self.templates or bad:
            raise InvalidInput(
                f"every zero-shot template needs a {{}} where the class name goes: {bad or 'none given'}"
            )
        if self.max_images is not None and self.max_images < 1:
            raise InvalidInput(f"max_images (--max-images) must be at least 1, not {self.max_images}")


def class_names_and_labels(data, task: ZeroShotTask) -> tuple[list[str], list[int]]:
    """The class names (in label order) and each row's label index."""
    for column in (task.image_column, task.label_column):
        if column not in data.column_names:
            raise InvalidInput(f"{task.dataset} ({task.split}) has no column {column!r}; it has {data.column_names}")
    labels = list(data[task.label_column])
    feature_names = getattr(data.features[task.label_column], "names", None)
    if labels and isinstance(labels[0], str):
        names = list(task.class_names or sorted(set(labels)))
        index = {name: position for position, name in enumerate(names)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise InvalidInput(f"{task.dataset}: labels {unknown[:5]} are not among the class names given")
        return names, [index[label] for label in labels]
    names = list(task.class_names or [name.replace("_", " ") for name in feature_names or []])
    if not names:
        raise InvalidInput(
            f"{task.dataset}: the label column {task.label_column!r} has no class names; pass them (--class-names)"
        )
    out_of_range = [row for row, label in enumerate(labels) if not 0 <= label < len(names)]
    if out_of_range:
        raise InvalidInput(
            f"{task.dataset}: row {out_of_range[0]} has label {labels[out_of_range[0]]}, but there are {len(names)} "
            "class names"
        )
    return names, labels


def class_embeddings(adapter, names: list[str], templates: tuple[str, ...]) -> torch.Tensor:
    """One unit-length text embedding per class: the mean of its templates' (unit-length) embeddings, normalised
    again, since a mean of unit vectors is shorter the more its templates disagree."""
    texts = [template.format(name) for name in names for template in templates]
    features = adapter.caption_features(texts).view(len(names), len(templates), -1)
    return torch.nn.functional.normalize(features.mean(dim=1), dim=-1)


@dataclass
class ZeroShotResult:
    """Top-1 accuracy of a zero-shot `task` (its dataset named by Hub id or folder name, never a local path)."""

    task: ZeroShotTask
    classes: list[str]
    images: int
    correct: int
    accuracy: float

    def to_json(self) -> dict:
        return asdict(self.task) | {
            "classes": self.classes,
            "images": self.images,
            "correct": self.correct,
            "accuracy": self.accuracy,
        }

    @classmethod
    def from_json(cls, data: dict) -> ZeroShotResult:
        task = {name: data[name] for name in ZeroShotTask.__dataclass_fields__ if name in data}
        task["templates"] = tuple(task.get("templates", DEFAULT_TEMPLATES))
        task["class_names"] = tuple(task["class_names"]) if task.get("class_names") else None
        return cls(ZeroShotTask(**task), data["classes"], data["images"], data["correct"], data["accuracy"])


@torch.no_grad()
def zero_shot_accuracy(model, processor, task: ZeroShotTask, runtime: Runtime | None = None) -> ZeroShotResult:
    """Top-1 zero-shot accuracy of a dual encoder on `task`, the model run as `runtime` says."""
    was_training = model.training
    data = load_split(task.dataset, task.config, task.split, revision=task.revision)
    if task.max_images is not None:
        data = data.select(range(min(task.max_images, len(data))))
    names, labels = class_names_and_labels(data, task)
    adapter = dual_encoder(model, processor, runtime or Runtime())
    classes = class_embeddings(adapter, names, task.templates)
    raw = data.cast_column(task.image_column, ImageFeature(decode=False))
    images = adapter.runtime.gathered(
        lambda rows: adapter.image_features(raw, rows, task.image_column), list(range(len(raw)))
    )
    predictions = predict((images @ classes.T).numpy())
    model.train(was_training)
    correct = int(np.sum(np.asarray(predictions) == np.asarray(labels)))
    return ZeroShotResult(
        task=replace(task, dataset=name_of(task.dataset)),
        classes=names,
        images=len(labels),
        correct=correct,
        accuracy=correct / len(labels) if labels else float("nan"),
    )
