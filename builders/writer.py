"""Write rows into a folder laid out exactly as a Hub dataset repo: `<config>/<split>-NNNNN-of-NNNNN.parquet`
plus a `README.md` card whose `configs:` YAML tells `load_dataset` where each config lives.

Rows stream through in bounded memory (one shard's worth of rows at a time), images are embedded as bytes,
and the folder is built beside its target and moved into place only when complete, so an interrupted or
failed build never leaves a half-written dataset or destroys the previous one.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from datasets import Features
from PIL import Image

ROWS_PER_SHARD = 5000
ROWS_PER_ROW_GROUP = 500


def encode_image(image: Image.Image | dict) -> dict:
    """An image as the `{"bytes", "path"}` struct of `datasets.Image`: PNG bytes, no local path."""
    if isinstance(image, dict):
        return {"bytes": image["bytes"], "path": None}
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _encode_row(row: dict, features: Features) -> dict:
    missing = set(features) - set(row)
    if missing:
        raise ValueError(f"row is missing the columns {sorted(missing)}")
    return {name: encode_image(row[name]) if name == "image" else row[name] for name in features}


def _write_split(rows: Iterable[dict], features: Features, folder: Path, split: str) -> int:
    """Write `rows` as shards `<split>-NNNNN-of-NNNNN.parquet` in `folder`; return the row count."""
    schema = features.arrow_schema
    shard_paths: list[Path] = []
    writer, batch, rows_in_shard, count = None, [], 0, 0

    def flush() -> None:
        writer.write_table(pa.Table.from_pylist(batch, schema=schema), row_group_size=ROWS_PER_ROW_GROUP)
        batch.clear()

    for row in rows:
        if writer is None:
            shard_paths.append(folder / f"{split}-{len(shard_paths):05d}.partial")
            writer = pq.ParquetWriter(shard_paths[-1], schema, compression="zstd", write_statistics=True)
        try:
            batch.append(_encode_row(row, features))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{folder.name}/{split} item {count}: {error}") from error
        count += 1
        rows_in_shard += 1
        if len(batch) == ROWS_PER_ROW_GROUP or rows_in_shard == ROWS_PER_SHARD:
            flush()
        if rows_in_shard == ROWS_PER_SHARD:
            writer.close()
            writer, rows_in_shard = None, 0
    if writer is not None:
        if batch:
            flush()
        writer.close()
    for index, path in enumerate(shard_paths):
        path.rename(folder / f"{split}-{index:05d}-of-{len(shard_paths):05d}.parquet")
    return count


def configs_yaml(counts: Mapping[tuple[str, str], int], features: Mapping[str, Features]) -> str:
    """The card's YAML front matter: where each config's splits live, and their features."""
    configs: dict[str, list[str]] = {}
    for config, split in counts:
        configs.setdefault(config, []).append(split)
    metadata = {
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


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _clean_leftovers(out_dir: Path) -> None:
    """Remove what a killed build left beside `out_dir`: its staging folder, and the previous output it had moved
    aside (put back where the new one never arrived). Folders of builds still running are left alone."""
    prefix = f".{out_dir.name}."
    for leftover in sorted(path for path in out_dir.parent.iterdir() if path.name.startswith(prefix)):
        kind, pid, *_ = leftover.name[len(prefix) :].split("-") + ["", ""]
        if kind not in ("staging", "previous") or not pid.isdigit() or _process_alive(int(pid)):
            continue
        if kind == "previous" and not out_dir.exists():
            leftover.rename(out_dir)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _beside(out_dir: Path, kind: str) -> Path:
    """A new empty folder beside `out_dir`, named after the process that owns it so that a later run can tell
    whether it was left behind."""
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{kind}-{os.getpid()}-", dir=out_dir.parent))


@contextmanager
def staged_folder(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty folder beside `out_dir` to write into; it becomes `out_dir` when the block completes.

    Nothing is lost or left half-written: if the block raises, the staging folder is removed and an existing
    `out_dir` stays as it was. An existing `out_dir` is replaced only with `overwrite=True`; otherwise
    `FileExistsError` before any work. A file is never replaced. Folders left by a killed run are cleaned first.
    """
    out_dir = Path(out_dir).resolve()
    if out_dir.parent.is_dir():
        _clean_leftovers(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file, not a folder: choose another output folder")
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists: pass overwrite=True (--overwrite) to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = _beside(out_dir, "staging")
    try:
        yield staging
        os.chmod(staging, 0o755)
        if out_dir.exists():
            previous = _beside(out_dir, "previous")
            out_dir.replace(previous)  # onto the empty folder just made
            staging.rename(out_dir)
            shutil.rmtree(previous)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_hub_folder(
    out_dir: str | Path,
    tables: Mapping[tuple[str, str], Iterable[dict]],
    features: Mapping[str, Features],
    render_card: Callable[[dict[tuple[str, str], int]], str],
    overwrite: bool = False,
) -> dict[tuple[str, str], int]:
    """Write each (config, split) table and the card into `out_dir` (see `staged_folder`); return the row counts."""
    with staged_folder(out_dir, overwrite) as staging:
        counts = {}
        for (config, split), rows in tables.items():
            (staging / config).mkdir(exist_ok=True)
            counts[config, split] = _write_split(rows, features[config], staging / config, split)
            if not counts[config, split]:
                raise ValueError(f"{config}/{split} has no items left to write (all were skipped?): a config cannot be empty")
        (staging / "README.md").write_text(render_card(counts), encoding="utf-8")
    return counts
