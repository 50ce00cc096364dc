"""What `aro mine` and `aro train` read, loaded with one-line errors naming the option: the rows of an image-caption
dataset, and a CLIP (the model a run starts from, mines with, or resumes).

A dataset config the folder lacks, a folder that is not a CLIP, a truncated weights file: each is the user's input,
refused as an `AroError` naming it, never a library's traceback.

>>> data = load_rows("coco/", "karpathy", "train", ["image", "caption", "image_id"])  # doctest: +SKIP
>>> model = load_clip("openai/clip-vit-base-patch32", "--model-name-or-path", NegCLIPModel)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from datasets.exceptions import DatasetsError
from safetensors import SafetensorError
from transformers import AutoConfig, AutoProcessor, CLIPModel

from aro.core.errors import AroError, InvalidInput, MissingInput
from aro.metrics.scoring import load_split


def reason_of(error: Exception) -> str:
    """The first line of a library's message (they run to paragraphs), or the error's kind when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def load_rows(dataset: str, config: str | None, split: str, columns: list[str], option: str = "--dataset"):
    """The `split` of `dataset` (`config`), holding every one of `columns`."""
    where = f"{option} {dataset} ({f'config {config}, ' if config else ''}split {split})"
    try:
        data = load_split(dataset, config, split)
    except AroError:
        raise
    except (ValueError, FileNotFoundError, DatasetsError) as error:  # no such config or split, unreadable files
        raise InvalidInput(f"{where}: {reason_of(error)}") from None
    for column in columns:
        if column not in data.column_names:
            raise InvalidInput(f"{where} has no column {column!r}; it has {data.column_names}")
    return data


def _failed(name_or_path: str, option: str, what: str, error: Exception) -> AroError:
    if Path(name_or_path).expanduser().exists():
        return InvalidInput(f"{option} {name_or_path}: cannot load its {what} ({reason_of(error)})")
    return MissingInput(f"{option} {name_or_path}: no such folder, and no {what} of that Hub id ({reason_of(error)})")


def load_clip(name_or_path: str, option: str, model_class=CLIPModel):
    """The CLIP at `name_or_path` as `model_class` (a `CLIPModel` or subclass); refused when it is another kind of
    model, or its config or weights cannot be read."""
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise _failed(name_or_path, option, "config", error) from None
    if config.model_type != "clip":
        raise InvalidInput(f"{option} {name_or_path} is a {config.model_type} model, not a CLIP")
    try:
        return model_class.from_pretrained(name_or_path)
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:  # missing, truncated or mis-shaped weights
        raise _failed(name_or_path, option, "weights", error) from None


def load_processor(name_or_path: str, option: str):
    """The processor at `name_or_path`, refused unless it has a tokenizer and an image processor, as a CLIP's has."""
    try:
        processor = AutoProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError, TypeError) as error:
        raise _failed(name_or_path, option, "processor", error) from None
    if any(getattr(processor, part, None) is None for part in ("tokenizer", "image_processor")):
        raise InvalidInput(
            f"{option} {name_or_path}: its {type(processor).__name__} is not a CLIP processor "
            "(a tokenizer with an image processor)"
        )
    return processor
