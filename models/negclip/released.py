"""The authors' released NegCLIP training files, read as training data with their own negatives and neighbours.

The ARO authors trained NegCLIP from tab-separated files (`mscoco_with_negatives_training.csv`, `..._valid.csv`;
their validation file is also in the ARO repository as `temp_data/valid_neg_clip.tsv`), one row per COCO image:

| column | holds |
| --- | --- |
| (unnamed) | the row number |
| `title` | the image's caption |
| `filepath` | the image's path, e.g. `coco/val2014/COCO_val2014_000000184613.jpg` |
| `neg_caption` | a Python list literal of the caption's swapped-word negatives |
| `neg_image` | a Python list literal of the rows of its nearest images, in the same file |

`load_released` turns such a file into a `datasets.Dataset` (columns `image`, `caption`, `image_id`, the file
path standing for the image id) plus the negatives and neighbours the trainer takes from a mining cache
otherwise, so `aro train --train-file mscoco_with_negatives_training.csv --image-root COCO_ROOT` trains on
exactly the paper's data. Lists are parsed with `ast.literal_eval` (never `eval`). An image path leading outside
the image root (through `..`, an absolute path or a symlink) is refused, as `aro build` refuses one leading outside
its source, unless `allow_outside`.

>>> data, negatives, neighbours = load_released("valid_neg_clip.tsv", image_root="/data")  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path

from datasets import Dataset, Image

from aro.core.errors import InvalidInput, MissingInput

COLUMNS = ("title", "filepath", "neg_caption", "neg_image")


def _literal_list(text: str, kind: type, where: str) -> list:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise InvalidInput(f"{where}: not a Python list literal: {text[:80]!r}") from None
    if not isinstance(value, list) or not all(isinstance(item, kind) for item in value):
        raise InvalidInput(f"{where}: expected a list of {kind.__name__}, got {text[:80]!r}")
    return value


def _image_path(root: Path, name: str, where: str, allow_outside: bool) -> str:
    """`root / name`, refused when it resolves outside `root` (unless `allow_outside`)."""
    file = root / name
    if not allow_outside and not file.resolve().is_relative_to(root.resolve()):
        raise InvalidInput(
            f"{where}, filepath {name!r} leads outside the image root {root}; "
            "pass --allow-outside-image-root if the images really live elsewhere"
        )
    return str(file)


def load_released(path: str | Path, image_root: str | Path | None = None, allow_outside: bool = False) -> tuple:
    """The file's rows as a `Dataset` (images resolved under `image_root`, default: the file's folder), their
    negatives (lists of captions) and neighbours (lists of rows)."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    captions, images, negatives, neighbours = [], [], [], []
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file, delimiter="\t")
        try:
            missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise InvalidInput(
                    f"{path}: no column {missing[0]!r}; a released NegCLIP file has {list(COLUMNS)} (tab-separated)"
                )
            for record in reader:
                where = f"{path}, line {reader.line_num}"
                captions.append(record["title"])
                images.append(_image_path(root, record["filepath"], where, allow_outside))
                negatives.append(_literal_list(record["neg_caption"], str, f"{where}, neg_caption"))
                neighbours.append(_literal_list(record["neg_image"], int, f"{where}, neg_image"))
        except (csv.Error, UnicodeDecodeError) as error:  # a field over the csv module's size limit, a binary file
            line = reader.line_num + 1  # the line being read when it failed
            raise InvalidInput(f"{path}, line {line}: not a readable tab-separated file ({error})") from None
    for row, rows in enumerate(neighbours):
        outside = [other for other in rows if not 0 <= other < len(captions)]
        if outside:
            raise InvalidInput(
                f"{path}, line {row + 2}, neg_image: row {outside[0]} is not a row of the file ({len(captions)} rows)"
            )
    absent = next((image for image in images if not Path(image).is_file()), None)
    if absent:
        raise MissingInput(
            f"{path}: image {absent} not found (pass --image-root, the folder the file paths start from)"
        )
    data = Dataset.from_dict({"image": images, "caption": captions, "image_id": [str(Path(image)) for image in images]})
    return data.cast_column("image", Image()), negatives, neighbours
