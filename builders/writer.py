"""Write rows into a folder laid out exactly as a Hub dataset repo: `<config>/<split>-NNNNN-of-NNNNN.parquet`
plus a `README.md` card whose `configs:` YAML tells `load_dataset` where each config lives, and an `eval.yaml` that
registers the ARO configs as the tasks of a Hub benchmark.

Rows stream through in bounded memory (one shard's worth of rows at a time), images are embedded as bytes,
and the folder is built beside its target and moved into place only when complete (`aro.core.io.output_folder`),
so an interrupted or failed build never leaves a half-written dataset or destroys the previous one; a disk that
is full or read-only is one line naming the folder.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from datasets import Features
from PIL import Image

from aro.builders.images import png_bytes
from aro.core.errors import InvalidInput
from aro.core.io import output_folder

ROWS_PER_SHARD = 5000
ROWS_PER_ROW_GROUP = 500
UNLIMITED_DICTIONARY = 2**31 - 1  # bytes: Parquet's largest page


def encode_image(image: Image.Image | dict) -> dict:
    """An image as the `{"bytes", "path"}` struct of `datasets.Image`: PNG bytes (or the prepared bytes as they
    are), no local path."""
    return {"bytes": image["bytes"] if isinstance(image, dict) else png_bytes(image), "path": None}


def _encode_row(row: dict, features: Features) -> dict:
    missing = set(features) - set(row)
    if missing:
        raise InvalidInput(f"row is missing the columns {sorted(missing)}")
    return {name: encode_image(row[name]) if name == "image" else row[name] for name in features}


def _write_split(rows: Iterable[dict], features: Features, folder: Path, split: str, images_once: bool = False) -> int:
    """Write `rows` as shards `<split>-NNNNN-of-NNNNN.parquet` in `folder`; return the row count.

    With `images_once` (rows that come grouped by image, several rows per image), each image's bytes are stored once
    per file: Parquet's dictionary encoding is given no size limit, so a row group holds each distinct image once in
    its dictionary and its rows point to it, and row groups and shards end only where the image changes, so the rows
    of an image share one row group. Readers (`load_dataset`, pyarrow, pandas) still give every row its image.
    """
    schema = features.arrow_schema
    options = {"compression": "zstd", "write_statistics": True}
    if images_once:
        # Parquet falls back from dictionary to plain encoding once a column chunk's dictionary passes this size; and
        # the statistics of the image column, its smallest and largest value, would be whole images again, in every
        # page header and in the file's metadata (Parquet drops only those over 4 kB).
        options = {"compression": "zstd", "write_statistics": False, "dictionary_pagesize_limit": UNLIMITED_DICTIONARY}
    shard_paths: list[Path] = []
    writer, batch, rows_in_shard, count = None, [], 0, 0

    def flush() -> None:
        writer.write_table(pa.Table.from_pylist(batch, schema=schema), row_group_size=len(batch))
        batch.clear()

    for row in rows:
        try:
            encoded = _encode_row(row, features)
        except (ValueError, TypeError) as error:
            raise InvalidInput(f"{folder.name}/{split} item {count}: {error}") from error
        # Where a row group or a shard may end: anywhere, or with `images_once` where the image changes.
        cut = not images_once or not batch or encoded["image"]["bytes"] != batch[-1]["image"]["bytes"]
        if cut and len(batch) >= ROWS_PER_ROW_GROUP:
            flush()
        if cut and rows_in_shard >= ROWS_PER_SHARD:
            if batch:
                flush()
            writer.close()
            writer, rows_in_shard = None, 0
        if writer is None:
            shard_paths.append(folder / f"{split}-{len(shard_paths):05d}.partial")
            writer = pq.ParquetWriter(shard_paths[-1], schema, **options)
        batch.append(encoded)
        count += 1
        rows_in_shard += 1
    if writer is not None:
        if batch:
            flush()
        writer.close()
    for index, path in enumerate(shard_paths):
        path.rename(folder / f"{split}-{index:05d}-of-{len(shard_paths):05d}.parquet")
    return count


def size_category(rows: int) -> str:
    """The Hub's `size_categories` bucket of a dataset with `rows` rows."""
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < bound:
            return name
    return "1M<n<10M"


def configs_yaml(
    counts: Mapping[tuple[str, str], int], features: Mapping[str, Features], metadata: Mapping | None = None
) -> str:
    """The card's YAML front matter: `metadata` (licence, tasks, language, ...), the size category, where each
    config's splits live, and their features."""
    configs: dict[str, list[str]] = {}
    for config, split in counts:
        configs.setdefault(config, []).append(split)
    metadata = {
        **(metadata or {}),
        "size_categories": [size_category(sum(counts.values()))],
        "configs": [
            {
                "config_name": config,
                "data_files": [{"split": split, "path": f"{config}/{split}-*"} for split in splits],
            }
            for config, splits in configs.items()
        ],
        "dataset_info": [
            # Split sizes are left to the card's table: the Hub wants them in bytes of Arrow data as well.
            {"config_name": config, "features": features[config]._to_yaml_list()}
            for config in configs
        ],
    }
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---"


def eval_yaml(name: str, description: str, configs: Iterable[str], split: str = "test") -> str:
    """`eval.yaml`, the file that registers a dataset repo as a Hub benchmark: one task per config, whose id is
    the config's name (the `task_id` that `.eval_results/*.yaml` entries of models point to)."""
    tasks = [{"id": config, "config": config, "split": split} for config in configs]
    return yaml.safe_dump(
        {"name": name, "description": description, "evaluation_framework": "aro", "tasks": tasks}, sort_keys=False
    )


def write_hub_folder(
    out_dir: str | Path,
    tables: Mapping[tuple[str, str], Iterable[dict]],
    features: Mapping[str, Features],
    render_card: Callable[[dict[tuple[str, str], int]], str],
    overwrite: bool = False,
    extra_files: Callable[[dict[tuple[str, str], int]], dict[str, str]] | None = None,
    *,
    command: str,
    inputs: Iterable[str | Path] = (),
    images_once: Collection[str] = (),
) -> dict[tuple[str, str], int]:
    """Write each (config, split) table, the card and the `extra_files` of the row counts (name: text) into
    `out_dir` as `command`'s output, refused if it is, holds or lies inside one of `inputs` (see
    `aro.core.io.output_folder`; an earlier output of `command` is replaced only with `overwrite`); return the row
    counts. The rows are consumed here: problems found in them stop the write with the previous output intact.
    The configs in `images_once` come grouped by image and store each image once per file (see `_write_split`)."""
    with output_folder(out_dir, command, inputs, replace=overwrite) as staging:
        counts = {}
        for (config, split), rows in tables.items():
            (staging / config).mkdir(exist_ok=True)
            counts[config, split] = _write_split(
                rows, features[config], staging / config, split, images_once=config in images_once
            )
            if not counts[config, split]:
                raise InvalidInput(
                    f"{config}/{split} has no items left to write (all were skipped?): a config cannot be empty"
                )
        (staging / "README.md").write_text(render_card(counts), encoding="utf-8")
        for name, text in (extra_files(counts) if extra_files else {}).items():
            (staging / name).write_text(text, encoding="utf-8")
    return counts
