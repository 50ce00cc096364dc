"""Write a folder beside its target and move it into place only when complete.

The dataset builders, `aro eval` and the demo all write this way: an interrupted or failed run never leaves a
half-written folder or destroys the previous one, and the next run cleans what a killed one left behind.

>>> with staged_folder("aro", overwrite=True) as staging:  # doctest: +SKIP
...     (staging / "README.md").write_text("...")
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _clean_leftovers(out_dir: Path) -> None:
    """Remove what a killed run left beside `out_dir`: its staging folder, and the previous output it had moved
    aside (put back where the new one never arrived). Folders of runs still running are left alone."""
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
