"""Rows of SugarCrepe's seven configs from the authors' files, checked item by item.

SugarCrepe (Hsieh et al., NeurIPS 2023; github.com/RAIVNLab/sugar-crepe) keeps one JSON file per split in `data/`:
an object whose keys are item ids ("0", "1", ...) and whose items are `{"filename", "caption", "negative_caption"}`,
the file name being that of a COCO val2017 image (`main_eval.py` joins it to `--coco_image_root`). The object splits
were named `replace_ent.json`, `swap_ent.json` and `add_ent.json` in the first release (June 2023), before false
negatives were filtered out; either name is read, and the build records which file (and its SHA-256) it used.

One row per item, as in VG-Relation: `item_id` (the item's key), `image`, `true_caption` (`caption`),
`false_caption` (`negative_caption`) and `image_id` (the image file's stem). Several items show one image, so rows
come grouped by image (images in the order they first appear, each image's items in file order): the writer then
stores each image once per Parquet file (`writer.write_hub_folder(images_once=...)`).

The checks are ARO's (`sources.py`): a missing key, a caption that is not a non-empty string, a negative equal to
its caption, an image file name leading outside the images folder or holding a NUL byte stop the build naming the
file and item; so do a key that is not an item id and a key given twice in one object (a JSON reader keeps only the
last). Missing, corrupt or too large images are listed unless `skip_missing`, which leaves out every item of such
an image and records each.

>>> report = BuildReport()
>>> rows = sugarcrepe_rows("sugarcrepe_swap_obj", Path("sugar-crepe"), Path("val2017"), report)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from aro.builders.images import MAX_IMAGE_PIXELS, ImageJob
from aro.builders.sources import (
    BuildReport,
    check_caption,
    check_files,
    count_duplicates,
    prepared_images,
    read_json,
    require_keys,
    source_file,
    usable,
)
from aro.core.contract import SUGARCREPE_CONFIGS
from aro.core.errors import InvalidInput, MissingInput
from aro.core.io import sha256_of

SUGARCREPE_KEYS = ("filename", "caption", "negative_caption")
# Where the authors keep the split files: the folder given, or its `data/` (a clone of the repository).
DATA_FOLDER = "data"
# The first release's name of each object split.
FIRST_RELEASE_NAMES = {"replace_obj": "replace_ent", "swap_obj": "swap_ent", "add_obj": "add_ent"}
ITEM_ID = re.compile(r"0|[1-9][0-9]{0,17}")  # a whole number that fits int64, written without leading zeros


def split_of(config: str) -> str:
    """`replace_obj` for `sugarcrepe_replace_obj`: the split's name in the authors' files."""
    return config.removeprefix("sugarcrepe_")


def split_file(folder: str | Path, config: str) -> Path:
    """The JSON file of `config` in `folder` (or in its `data/`): `<split>.json`, or the first release's
    `<kind>_ent.json` for an object split. One line when there is none, or when both names are there (they are
    different versions of the split: keep the one to build from)."""
    split = split_of(config)
    names = [f"{split}.json"] + ([f"{FIRST_RELEASE_NAMES[split]}.json"] if split in FIRST_RELEASE_NAMES else [])
    for place in (Path(folder), Path(folder) / DATA_FOLDER):
        present = [place / name for name in names if (place / name).exists()]
        if len(present) > 1:
            raise InvalidInput(
                f"{place} holds both {names[0]} and {names[1]}, two versions of the {split} split ({names[1]} is the "
                "first release's, before false negatives were filtered out): keep the one to build from"
            )
        if present:
            return present[0]
    raise MissingInput(
        f"{config}: {folder} (nor its {DATA_FOLDER}/) holds no {' or '.join(names)}, the authors' file of this split"
    )


def _unique_keys(path: Path):
    """A JSON object hook refusing a key given twice in one object, which `json` would silently drop but the last."""

    def as_dict(pairs: list[tuple[str, object]]) -> dict:
        repeated = [key for key, count in Counter(key for key, _ in pairs).items() if count > 1]
        if repeated:
            raise InvalidInput(
                f"{path}: the key {repeated[0]!r} is given twice in one object: item ids and item fields must be "
                "unique (a JSON reader keeps only the last)"
            )
        return dict(pairs)

    return as_dict


def read_split(path: Path, config: str) -> dict[str, dict]:
    """The items of a split file, keyed by id: a non-empty JSON object."""
    items = read_json(path, object_pairs_hook=_unique_keys(path))
    if not isinstance(items, dict):
        raise InvalidInput(
            f"{path} should hold a JSON object of items keyed by their id, as the authors' files do, not a "
            f"{type(items).__name__}"
        )
    if not items:
        raise InvalidInput(f"{config}: {path} holds no items; a config cannot be empty")
    return items


def _item_id(key: str, path: Path) -> int:
    if not ITEM_ID.fullmatch(key):
        raise InvalidInput(f"{path}: item key {key!r} is not an item id (a whole number such as '12', as the authors')")
    return int(key)


def sugarcrepe_rows(
    config: str,
    folder: Path,
    images_dir: Path,
    report: BuildReport,
    skip_missing: bool = False,
    workers: int = 1,
    allow_outside: bool = False,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Iterator[dict]:
    """Rows of a SugarCrepe config from the split file in `folder` and the COCO val2017 images in `images_dir`,
    grouped by image (see the module docstring)."""
    if config not in SUGARCREPE_CONFIGS:
        raise InvalidInput(f"{config} is not a SugarCrepe config: choose from {list(SUGARCREPE_CONFIGS)}")
    path = split_file(folder, config)
    items = read_split(path, config)
    report.source_files[config] = (path.name, sha256_of(path))
    items_of_image: dict[str, list[tuple[int, dict]]] = {}
    jobs = []
    for key, item in items.items():
        item_id = _item_id(key, path)
        require_keys(item, SUGARCREPE_KEYS, path, key)
        check_caption(item["caption"], path, key, "caption")
        check_caption(item["negative_caption"], path, key, "negative_caption")
        if item["caption"] == item["negative_caption"]:
            raise InvalidInput(f"{path}: item {key}: the negative caption equals the caption ({item['caption']!r})")
        file = source_file(images_dir, item["filename"], path, key, "filename", allow_outside)
        if item["filename"] not in items_of_image:
            items_of_image[item["filename"]] = []
            jobs.append(ImageJob(item_id, file, item["filename"], max_pixels=max_pixels))
        items_of_image[item["filename"]].append((item_id, item))
    report.duplicates[config] = count_duplicates(
        [tuple(item[key] for key in SUGARCREPE_KEYS) for item in items.values()]
    )
    check_files(jobs, path, skip_missing)
    for job, prepared in zip(jobs, prepared_images(jobs, workers, f"{config} images")):
        members = items_of_image[job.name]
        if not usable(prepared, job, config, path, skip_missing, report):
            for item_id, _ in members[1:]:  # `_use` recorded the image's first item
                report.skip(config, replace(job, index=item_id), prepared.problem)
            continue
        for item_id, item in members:
            yield {
                "item_id": item_id,
                "image": {"bytes": prepared.data},
                "true_caption": item["caption"],
                "false_caption": item["negative_caption"],
                "image_id": Path(item["filename"]).stem,
            }
