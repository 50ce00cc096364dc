"""Rows of the ARO configs from the original sources, checked item by item.

- VG-Relation / VG-Attribution: `visual_genome_relation.json` / `visual_genome_attribution.json` from the ARO
  release (a list of items with `image_path`, `bbox_x`, `bbox_y`, `bbox_w`, `bbox_h`, `true_caption`,
  `false_caption` and `relation_name` or `attributes`) and its `images/` folder. Each row holds the bbox crop the
  paper evaluates on, as the original loader cropped at load time, plus the bbox and the source image id.
- COCO-Order / Flickr30k-Order: the Karpathy test split (`coco_karpathy_test.json`, `flickr30k_test.json`: items
  `{"image": path, "caption": [captions], ...}`) and the images; one row per caption, with its four
  perturbations.
- COCO / Flickr30k retrieval: the same Karpathy test split, one row per image with its captions and, per
  perturbation, the captions shuffled as in the Order configs (the paper's retrieval with shuffled captions).

Annotation problems stop the build with the file and the item index: a missing key, a field of the wrong type (a
bbox value that is not a finite number, a caption that is not a string), an empty caption or bbox, a false caption
equal to the true one, an image path holding a NUL byte or leading outside the images folder (through `..`, an
absolute path or a symlink; `allow_outside` permits it), an empty annotation list, nesting too deep to read. Image
problems (a missing file, a corrupt one, one of more than `max_pixels` pixels, pixels of a range that cannot be
made 8-bit faithfully, a bbox covering no pixel of its image) stop it too, listing how many and the first few,
unless `skip_missing` is set: then those items are left out and recorded in the `BuildReport`. Bboxes reaching
outside their image (cropped with black there, as the original loader does), duplicate items, Order captions cut
to 30 words and Order items with an option equal to the true caption are kept and counted.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

from tqdm.auto import tqdm

from aro.builders.images import MAX_IMAGE_PIXELS, ImageJob, PreparedImage, prepare
from aro.builders.text import MAX_CAPTION_WORDS, pre_caption
from aro.core.contract import BBOX_KEYS, PERTURBATION_NAMES, VISUAL_GENOME_OPTIONS, retrieval_row
from aro.core.errors import InvalidInput, MissingInput

VG_KEYS = ("image_path", *BBOX_KEYS, *VISUAL_GENOME_OPTIONS)
VG_GROUP_KEYS = {"relation": "relation_name", "attribution": "attributes"}
KARPATHY_KEYS = ("image", "caption")
SHOWN_PATHS = 5
ItemIndex = int | str  # an item's place in an annotation list, or its key in an annotation object (SugarCrepe)


@dataclass
class BuildReport:
    """What the build changed or left out, per config."""

    outside_bboxes: dict[str, int] = field(default_factory=dict)  # bboxes reaching outside their image (padded)
    skipped: list[dict] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=dict)  # items equal to an earlier item (kept)
    truncated_captions: dict[str, int] = field(default_factory=dict)  # Order captions cut to MAX_CAPTION_WORDS
    identical_options: dict[str, int] = field(default_factory=dict)  # Order items with an option equal to the caption
    same_words: dict[str, int] = field(default_factory=dict)  # items with a negative of the true caption's words
    source_files: dict[str, tuple[str, str]] = field(default_factory=dict)  # config: (file name, sha256) read

    def skip(self, config: str, job: ImageJob, problem: str) -> None:
        self.skipped.append({"config": config, "item": job.index, "image": job.name, "problem": problem})


def read_json(path: Path, object_pairs_hook=None):
    """The parsed content of a JSON annotation file; one line naming the file when it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=object_pairs_hook)
    except FileNotFoundError:
        raise MissingInput(f"annotation file {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidInput(f"annotation file {path} is a folder") from None
    except OSError as error:
        raise InvalidInput(f"annotation file {path} cannot be read ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise InvalidInput(f"{path} is not UTF-8 text (byte {error.start}): annotation files are UTF-8 JSON") from None
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{path} is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidInput(
            f"{path} nests JSON arrays or objects too deeply to read: annotation files are flat"
        ) from None


def read_annotations(path: Path, config: str) -> list[dict]:
    """The items of an annotation file of `config`: a non-empty JSON list."""
    items = read_json(path)
    if not isinstance(items, list):
        raise InvalidInput(f"{path} should hold a JSON list of items, not a {type(items).__name__}")
    if not items:
        raise InvalidInput(f"{config}: {path} holds no items; a config cannot be empty")
    return items


def _shown(value) -> str:
    return "null" if value is None else f"{type(value).__name__} {json.dumps(value)[:60]}"


def require_keys(item, keys, path: Path, index: ItemIndex) -> None:
    """Refuse an item that is not an object or lacks one of `keys`."""
    if not isinstance(item, dict):
        raise InvalidInput(f"{path}: item {index} is a {type(item).__name__}, not an object")
    for key in keys:
        if key not in item:
            raise InvalidInput(f"{path}: item {index} has no {key!r} key")


def check_caption(caption, path: Path, index: ItemIndex, key: str) -> None:
    """Refuse a caption (or name) that is not a string or is empty."""
    if not isinstance(caption, str):
        raise InvalidInput(f"{path}: item {index}: {key} should be a string, not {_shown(caption)}")
    if not caption.strip():
        raise InvalidInput(f"{path}: item {index} has an empty {key}")


def _check_number(value, path: Path, index: int, key: str) -> None:
    # JSON `true` is a Python int: without the bool test a bbox of `true` would become a 1x1 crop.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{path}: item {index}: {key} should be a finite number, not {_shown(value)}")


def _check_image_id(item: dict, path: Path, index: int) -> None:
    if "image_id" in item and (isinstance(item["image_id"], bool) or not isinstance(item["image_id"], (str, int))):
        raise InvalidInput(
            f"{path}: item {index}: image_id should be a string or an integer, not {_shown(item['image_id'])}"
        )


def source_file(root: Path, name, path: Path, index: ItemIndex, key: str, allow_outside: bool = False) -> Path:
    """`root / name` for the `key` field of item `index`, refused when it resolves outside `root`.

    A dataset built for the Hub must not embed arbitrary files of the builder's disk: `..`, an absolute path or a
    symlink leading out of `root` is an error unless `allow_outside`.
    """
    check_caption(name, path, index, key)
    if "\0" in name:
        raise InvalidInput(f"{path}: item {index}: {key} {name!r} holds a NUL byte, which no file name can")
    file = Path(root) / name
    if not allow_outside and not file.resolve().is_relative_to(Path(root).resolve()):
        raise InvalidInput(
            f"{path}: item {index}: {key} {name!r} leads outside {root}; pass --allow-outside-source "
            "(allow_outside=True) if the images really live elsewhere"
        )
    return file


def _ignore_interrupts() -> None:
    """In a worker: Ctrl-C reaches the whole process group; the main process stops the workers itself, so they
    print no traceback of their own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def prepared_images(jobs: list[ImageJob], workers: int, description: str) -> Iterator[PreparedImage]:
    """Prepare images in order, in `workers` processes (in this process when workers <= 1)."""
    progress = dict(total=len(jobs), desc=description, unit="img")
    if workers <= 1:
        yield from tqdm(map(prepare, jobs), **progress)
        return
    with multiprocessing.Pool(workers, initializer=_ignore_interrupts) as pool:
        yield from tqdm(pool.imap(prepare, jobs, chunksize=32), **progress)


def check_files(jobs: list[ImageJob], source: Path, skip_missing: bool) -> None:
    """Fail before any work when image files are missing, unless they are to be skipped."""
    missing = [str(job.path) for job in jobs if not job.path.is_file()]
    if missing and not skip_missing:
        shown = ", ".join(missing[:SHOWN_PATHS])
        raise MissingInput(
            f"{len(missing)} image file(s) named in {source} are missing, e.g. {shown}. "
            "Pass --skip-missing to build without them."
        )


def usable(
    prepared: PreparedImage, job: ImageJob, config: str, source: Path, skip_missing: bool, report: BuildReport
) -> bool:
    """Whether the prepared image can be used; records or raises its problem otherwise."""
    if prepared.problem is None:
        return True
    if not skip_missing:
        raise InvalidInput(
            f"{source}: item {job.index} ({job.path}): {prepared.problem}. Pass --skip-missing to leave such items out."
        )
    report.skip(config, job, prepared.problem)
    return False


def count_duplicates(keys: list) -> int:
    """How many of `keys` repeat an earlier one."""
    return len(keys) - len(set(keys))


def visual_genome_rows(
    config: str,
    annotations: Path,
    images_dir: Path,
    report: BuildReport,
    skip_missing: bool = False,
    workers: int = 1,
    allow_outside: bool = False,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Iterator[dict]:
    """Rows of `relation` or `attribution` (see the module docstring)."""
    group_key = VG_GROUP_KEYS[config]
    items = read_annotations(annotations, config)
    jobs = []
    for index, item in enumerate(items):
        require_keys(item, VG_KEYS + (group_key,), annotations, index)
        check_caption(item["true_caption"], annotations, index, "true_caption")
        check_caption(item["false_caption"], annotations, index, "false_caption")
        if item["true_caption"] == item["false_caption"]:
            raise InvalidInput(
                f"{annotations}: item {index}: the false caption equals the true caption ({item['true_caption']!r})"
            )
        bbox = tuple(item[key] for key in BBOX_KEYS)
        for key, value in zip(BBOX_KEYS, bbox):
            _check_number(value, annotations, index, key)
        if not item["bbox_w"] > 0 or not item["bbox_h"] > 0:
            raise InvalidInput(
                f"{annotations}: item {index} has an empty bbox (w={item['bbox_w']}, h={item['bbox_h']})"
            )
        if config == "relation":
            check_caption(item["relation_name"], annotations, index, "relation_name")
        elif not isinstance(item["attributes"], list) or len(item["attributes"]) != 2:
            raise InvalidInput(
                f"{annotations}: item {index} should have a pair of attributes, not {_shown(item['attributes'])}"
            )
        else:
            for attribute in item["attributes"]:
                check_caption(attribute, annotations, index, "attributes")
        _check_image_id(item, annotations, index)
        file = source_file(images_dir, item["image_path"], annotations, index, "image_path", allow_outside)
        jobs.append(ImageJob(index, file, item["image_path"], bbox, max_pixels))
    report.duplicates[config] = count_duplicates(
        [(item["image_path"], *(item[key] for key in VG_KEYS[1:]), json.dumps(item[group_key])) for item in items]
    )
    check_files(jobs, annotations, skip_missing)
    report.outside_bboxes[config] = 0
    for job, prepared in zip(jobs, prepared_images(jobs, workers, f"{config} crops")):
        if not usable(prepared, job, config, annotations, skip_missing, report):
            continue
        item = items[job.index]
        report.outside_bboxes[config] += prepared.outside
        row = {
            "item_id": job.index,
            "image": {"bytes": prepared.data},
            "true_caption": item["true_caption"],
            "false_caption": item["false_caption"],
            "image_id": str(item.get("image_id", Path(item["image_path"]).stem)),
            "bbox": list(prepared.bbox),
        }
        if config == "relation":
            row["relation_name"] = item["relation_name"]
        else:
            row["attributes"] = [str(attribute) for attribute in item["attributes"]]
            row["attribute_pair"] = "_".join(row["attributes"])
        yield row


def order_rows(
    config: str,
    annotations: Path,
    images_dir: Path,
    perturber,
    report: BuildReport,
    skip_missing: bool = False,
    workers: int = 1,
    allow_outside: bool = False,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Iterator[dict]:
    """Rows of `coco_order` or `flickr30k_order`: every caption of every image beside its four perturbations."""
    items = read_annotations(annotations, config)
    captions, caption_ids, jobs = [], [], []
    for index, item in enumerate(items):
        require_keys(item, KARPATHY_KEYS, annotations, index)
        if not isinstance(item["caption"], list) or not item["caption"]:
            raise InvalidInput(
                f"{annotations}: item {index} should have a list of captions, not {_shown(item['caption'])}"
            )
        file = source_file(images_dir, item["image"], annotations, index, "image", allow_outside)
        jobs.append(ImageJob(index, file, item["image"], max_pixels=max_pixels))
        _check_image_id(item, annotations, index)
        image_id = str(item.get("image_id", Path(item["image"]).stem))
        for k, caption in enumerate(item["caption"]):
            check_caption(caption, annotations, index, f"caption {k}")
            captions.append(caption)
            caption_ids.append(f"{image_id}#{k}")
    report.duplicates[config] = count_duplicates(
        [(item["image"], caption) for item in items for caption in item["caption"]]
    )
    check_files(jobs, annotations, skip_missing)
    options = perturber.caption_options(captions, caption_ids)
    report.truncated_captions[config] = report.identical_options[config] = 0
    first = 0  # the place of the image's first caption in the flattened list: stable ids, skipped items or not
    for job, prepared in zip(jobs, prepared_images(jobs, workers, f"{config} images")):
        positions = range(first, first + len(items[job.index]["caption"]))
        first = positions.stop
        if not usable(prepared, job, config, annotations, skip_missing, report):
            continue
        for position in positions:
            caption_id, caption_options = caption_ids[position], options[position]
            report.truncated_captions[config] += (
                len(pre_caption(captions[position], max_words=None).split()) > MAX_CAPTION_WORDS
            )
            # No shuffle changes some captions ("a a a"): the scorer leaves such options out of the comparison.
            report.identical_options[config] += caption_options[0] in caption_options[1:]
            yield {
                "item_id": position,
                "image": {"bytes": prepared.data},
                "image_id": caption_id.rsplit("#", 1)[0],
                "caption_id": caption_id,
                "caption_options": caption_options,
                "perturbations": list(PERTURBATION_NAMES),
            }


def retrieval_rows(
    config: str,
    annotations: Path,
    images_dir: Path,
    perturber,
    report: BuildReport,
    skip_missing: bool = False,
    workers: int = 1,
    **image_checks,
) -> Iterator[dict]:
    """Rows of `coco_retrieval` or `flickr30k_retrieval`: one per image, its captions and their perturbations.

    The Order rows grouped by image: the same normalised captions, and the same perturbations (seeded by caption
    id), so a caption shuffled in `coco_order` reads the same in `coco_retrieval`.
    """
    rows = order_rows(config, annotations, images_dir, perturber, report, skip_missing, workers, **image_checks)
    for image_id, group in groupby(rows, key=lambda row: row["image_id"]):
        group = list(group)
        yield retrieval_row(
            image_id, group[0]["image"], [row["caption_id"] for row in group], [row["caption_options"] for row in group]
        )
