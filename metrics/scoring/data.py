"""ARO items as the scorer sees them: each unique image once, each item its image and candidate captions.

An ARO item is an image and K candidate captions, the true one first: `caption_options` where the config has them
(the Order sets), else `[true_caption, false_caption]` (the VG sets). An option whose text equals the true caption
(a shuffle of "a a a" gives it back) is not a negative: it is left out of the item's comparison, and an item left
with no negative cannot be won or lost and is left out of the accuracy (`Items.same_as_true`). This is how the
original code's argmax treated identical options, while ties between distinct captions stay wrong. The VG sets crop
one image per item while the Order sets show each image with five captions, so images are deduplicated by a hash of
all their bytes (JPEG crops of one photograph share their headers) before anything is encoded.

Identical model inputs must score identically, so that an item whose captions the model cannot tell apart ties
exactly: every adapter computes each distinct input once (`Distinct`), a text by what the model reads of it (its
token ids, which two captions differing only in case or unknown words share) and a pair by its image and that text,
and spreads the result to every occurrence. Computed twice, in batches of other sizes and paddings, the same input
can come out 1e-7 apart, and the ties-are-wrong rule would count such an item as decided.

A dataset is read by config name (`load_split`); which of its configs holds an ARO config, and whether its files can
be scored at all, is decided before any model loads (`check_dataset`).
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Image as ImageFeature
from datasets import config as datasets_config
from datasets import get_dataset_config_names, load_dataset, load_dataset_builder
from PIL import Image
from tqdm.auto import tqdm

from aro.core.contract import CHOICE_CONFIGS, RETRIEVAL_CONFIGS, VISUAL_GENOME_OPTIONS, candidates_of
from aro.core.errors import InvalidInput, MissingInput

from .checks import OPTIONS_COLUMN, check_captions, check_parquet_files


def local_dataset(dataset: str) -> Path | None:
    """The local folder `dataset` names, or None for a Hub id (`ORG/NAME`); ValueError when it is neither."""
    folder = Path(dataset).expanduser()
    if folder.is_dir():
        return folder
    if folder.exists():
        raise InvalidInput(f"dataset {dataset} is a file: give the folder that `aro build` wrote, or a Hub id ORG/NAME")
    parts = dataset.split("/")
    if len(parts) != 2 or not all(parts) or dataset.startswith((".", "~")):
        raise InvalidInput(f"dataset folder {dataset} does not exist (nor is it a Hub id of the form ORG/NAME)")
    return None


def config_names(dataset: str, revision: str | None = None) -> list[str]:
    """The config names of `dataset` (a local folder or a Hub id), or one line saying why there are none."""
    folder = local_dataset(dataset)
    try:
        return get_dataset_config_names(str(folder) if folder else dataset, revision=revision)
    except (ConnectionError, FileNotFoundError) as error:  # datasets' EmptyDatasetError; not on the Hub, or no Hub
        if folder is not None:
            raise MissingInput(
                f"dataset folder {dataset} holds no dataset (no Parquet files, no README.md configs)"
            ) from None
        raise hub_unreachable(dataset, error) from None


def config_to_read(dataset: str, names: list[str], config: str, asked: int = 1) -> str:
    """The config of `dataset` (whose configs are `names`) that holds ARO's `config`: the one of that name, or the
    single config of a copy whose config is not one of ours (a Hub copy's `default`) when `config` is the only one
    asked for. A folder holding only `coco_order` is not scored as `relation`, nor one config under four names."""
    if config in names:
        return config
    ours = set(CHOICE_CONFIGS) | set(RETRIEVAL_CONFIGS)
    if len(names) == 1 and names[0] not in ours:
        if asked == 1:
            return names[0]
        raise InvalidInput(
            f"dataset {dataset} has a single config ({names[0]}), which holds one ARO config, not {asked}: name the "
            f"one it holds (--config {config}, or another)"
        )
    raise no_such_config(dataset, config, names)


def no_such_config(dataset: str, config: str, names: list[str]) -> MissingInput:
    return MissingInput(f"dataset {dataset} has no config {config} (it has {', '.join(names)})")


def check_dataset(dataset: str, configs: list[str], revision: str | None = None) -> None:
    """Refuse, before any model loads, a dataset that is neither a folder nor a Hub id, a config it does not hold
    (see `config_to_read`), and, for the ARO configs of a local folder, Parquet that cannot be scored: a file that
    is not Parquet, the columns of another config, a null caption, no rows."""
    names = config_names(dataset, revision)
    folder = local_dataset(dataset)
    for config in configs:
        name = config_to_read(dataset, names, config, asked=len(configs))
        if folder is not None and config in CHOICE_CONFIGS:  # the caption-choice layouts; retrieval rows differ
            data_files = load_dataset_builder(str(folder), name).config.data_files
            files = [Path(path) for path in data_files.get("test", [])]
            if not files:
                raise MissingInput(f"dataset folder {dataset}: config {name} has no test split")
            parquet = [path for path in files if path.suffix == ".parquet"]  # others are read by `datasets` alone
            shown = {path: str(Path(dataset) / path.resolve().relative_to(folder.resolve())) for path in parquet}
            if parquet:
                check_parquet_files(parquet, config, shown)


def hub_unreachable(dataset: str, error: Exception) -> ValueError:
    """The one-line error for a dataset that is no local folder and that the Hub does not give."""
    return InvalidInput(f"dataset {dataset!r} is not a local folder and cannot be loaded from the Hub: {error}")


def load_split(dataset: str, config: str | None, split: str = "test", revision: str | None = None):
    """`load_dataset(dataset, config, split=split)`, with a cache that follows a local folder's content.

    `datasets` caches a local folder's Arrow conversion under its folder name and config alone, so a folder rebuilt
    in place, or another folder of the same name, would be served from a stale cache. A local folder therefore gets
    a cache directory named after its resolved path and its files' sizes and modification times, and only the
    newest such copy of a folder is kept. A config the dataset does not have is refused in one line.
    """
    names = config_names(dataset, revision)
    if config is None and len(names) > 1:
        raise InvalidInput(f"dataset {dataset} has several configs ({', '.join(names)}): name the one to read")
    if config is not None and config not in names:
        raise no_such_config(dataset, config, names)
    folder = local_dataset(dataset)
    if folder is None:
        try:
            return load_dataset(dataset, config, split=split, revision=revision)
        except (ConnectionError, FileNotFoundError) as error:  # not on the Hub, or the Hub out of reach
            raise hub_unreachable(dataset, error) from None
    folder = folder.resolve()
    files = sorted(path for path in folder.rglob("*") if path.is_file() and ".cache" not in path.parts)
    stamp = hashlib.sha1(
        repr([(str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in files]).encode()
    ).hexdigest()[:16]
    copies = Path(datasets_config.HF_DATASETS_CACHE) / "local" / hashlib.sha1(str(folder).encode()).hexdigest()[:16]
    for stale in copies.glob("*"):
        if stale.name != stamp:
            shutil.rmtree(stale, ignore_errors=True)
    return load_dataset(str(folder), config, split=split, cache_dir=str(copies / stamp))


def image_key(encoded: dict) -> str:
    """A key for an image stored as `{"bytes", "path"}`: the hash of all its bytes (of its path when it has none)."""
    return hashlib.sha1(encoded["bytes"] or encoded["path"].encode()).hexdigest()


@dataclass
class Items:
    """N items over a dataset whose image column holds bytes (`Image(decode=False)`).

    `image_rows[i]` is a row showing unique image i, `image_of_item[n]` the unique image of item n,
    `candidates[n]` its captions, the true one first, and `item_ids[n]` its `item_id` where the dataset has them.
    """

    dataset: object
    image_column: str
    image_rows: list[int]
    image_of_item: list[int]
    candidates: list[list[str]]
    item_ids: list | None = None

    @classmethod
    def from_dataset(cls, dataset, image_column: str = "image", progress: bool = True) -> Items:
        """The items of an ARO-shaped `datasets.Dataset`, its images deduplicated; one line naming the item of a
        caption that cannot be scored (see `checks.check_captions`)."""
        columns = set(dataset.column_names)
        if image_column not in columns or not (OPTIONS_COLUMN in columns or set(VISUAL_GENOME_OPTIONS) <= columns):
            raise InvalidInput(
                f"the dataset has columns {dataset.column_names}: an ARO config needs `{image_column}` and either "
                f"`{OPTIONS_COLUMN}` or `true_caption` and `false_caption`"
            )
        raw = dataset.cast_column(image_column, ImageFeature(decode=False))
        text_columns = [OPTIONS_COLUMN] if OPTIONS_COLUMN in columns else list(VISUAL_GENOME_OPTIONS)
        rows = raw.select_columns(text_columns).to_list()
        item_ids = list(dataset["item_id"]) if "item_id" in columns else None
        check_captions(rows, text_columns, "the dataset", item_ids)
        candidates = [candidates_of(row) for row in rows]
        index_of_key: dict[str, int] = {}
        image_rows, image_of_item = [], []
        images = raw.select_columns([image_column])
        for row, record in enumerate(tqdm(images, desc="hashing images", leave=False, disable=not progress)):
            key = image_key(record[image_column])
            if key not in index_of_key:
                index_of_key[key] = len(image_rows)
                image_rows.append(row)
            image_of_item.append(index_of_key[key])
        return cls(raw, image_column, image_rows, image_of_item, candidates, item_ids)

    def same_as_true(self) -> np.ndarray:
        """[N, K] booleans: True where an option other than the first has the true caption's text (not a negative)."""
        options = np.array(self.candidates, dtype=object)  # every item of a config has the same K
        same = options == options[:, :1]
        same[:, 0] = False
        return same

    @property
    def unique_captions(self) -> list[str]:
        return sorted({caption for options in self.candidates for caption in options})

    def pairs(self) -> list[tuple[int, str]]:
        """Every (unique image index, caption) pair, item by item, candidate by candidate."""
        return [
            (self.image_of_item[item], caption) for item, options in enumerate(self.candidates) for caption in options
        ]

    def unflatten(self, flat) -> np.ndarray:
        """Per-pair scores in `pairs()` order as an [N, K] array."""
        flat = np.asarray(flat)
        widths = np.cumsum([0] + [len(options) for options in self.candidates])
        return np.array([flat[start:end] for start, end in zip(widths[:-1], widths[1:])])


@dataclass(frozen=True)
class Distinct:
    """Inputs computed once each: `firsts[j]` is the position of distinct input j's first occurrence, `index[i]` the
    distinct input that input i is.

    >>> distinct = Distinct.of(["a dog", "a cat", "a dog"])
    >>> distinct.firsts, distinct.index
    ([0, 1], [0, 1, 0])
    >>> distinct.spread(torch.tensor([0.5, 0.25])).tolist()
    [0.5, 0.25, 0.5]
    """

    firsts: list[int]
    index: list[int]

    @classmethod
    def of(cls, keys: Iterable[Hashable]) -> Distinct:
        """The distinct inputs among inputs named by `keys`, in order of first occurrence."""
        number: dict[Hashable, int] = {}
        firsts, index = [], []
        for position, key in enumerate(keys):
            if key not in number:
                number[key] = len(firsts)
                firsts.append(position)
            index.append(number[key])
        return cls(firsts, index)

    def __len__(self) -> int:
        return len(self.firsts)

    def spread(self, computed: torch.Tensor) -> torch.Tensor:
        """One row per input from one row per distinct input: the very same values wherever an input recurs."""
        return computed[torch.tensor(self.index, dtype=torch.long)]


@dataclass(frozen=True)
class UndecodableImage:
    """An image that cannot be decoded, carried out of a DataLoader worker as data rather than raised there, so
    that the error names the item without the worker's traceback."""

    row: int
    reason: str


class ImageRows(torch.utils.data.Dataset):
    """Decode the images of `rows` of a dataset holding image bytes, in DataLoader workers."""

    def __init__(self, dataset, rows: list[int], image_column: str = "image"):
        self.dataset, self.rows, self.image_column = dataset, rows, image_column

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Image.Image | UndecodableImage:
        row = self.rows[index]
        encoded = self.dataset[row][self.image_column]
        try:
            if isinstance(encoded, dict):  # bytes, or only a path for images that stay files on disk
                encoded = Image.open(io.BytesIO(encoded["bytes"]) if encoded["bytes"] is not None else encoded["path"])
            return encoded.convert("RGB")
        except Exception as error:  # noqa: BLE001 - any decoder error is a corrupt image
            return UndecodableImage(row, str(error))


class _Collate:
    """`preprocess` a batch of images, or pass on the first image that could not be decoded (picklable)."""

    def __init__(self, preprocess):
        self.preprocess = preprocess

    def __call__(self, images: list):
        return next((image for image in images if isinstance(image, UndecodableImage)), None) or self.preprocess(images)


def image_batches(dataset, rows: list[int], image_column: str, preprocess, runtime):
    """Batches of `preprocess(list of PIL images)`, decoded and preprocessed in `runtime.num_workers` workers;
    ValueError naming the item of an image that cannot be decoded."""
    loader = torch.utils.data.DataLoader(
        ImageRows(dataset, rows, image_column),
        batch_size=runtime.batch_size,
        collate_fn=_Collate(preprocess),
        num_workers=runtime.num_workers,
        pin_memory=runtime.device.type == "cuda",
    )
    for batch in loader:
        if isinstance(batch, UndecodableImage):
            raise InvalidInput(f"item {batch.row}: the image cannot be decoded ({batch.reason})")
        yield batch
