"""Timing and reporting shared by the benchmarks: best-of-N wall time, a table for people, JSON for machines."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib import cbook
from PIL import Image


def best_time(function, repeats: int = 3) -> float:
    """The fastest of `repeats` runs of `function()`, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def photograph_windows(
    folder: Path, count: int, size: tuple[int, int], rng: np.random.Generator, scale_to: tuple[int, int] | None = None
) -> list[Path]:
    """`count` JPEG windows of `size` (width, height) of matplotlib's sample photograph (first resized to
    `scale_to`), at random places drawn from `rng`, written to `folder` as 0.jpg, 1.jpg, ..."""
    with cbook.get_sample_data("grace_hopper.jpg") as file:
        photograph = Image.open(file).convert("RGB")
    if scale_to:
        photograph = photograph.resize(scale_to)
    paths = []
    for index in range(count):
        left = int(rng.integers(0, photograph.width - size[0] + 1))
        top = int(rng.integers(0, photograph.height - size[1] + 1))
        path = folder / f"{index}.jpg"
        photograph.crop((left, top, left + size[0], top + size[1])).save(path, quality=90)
        paths.append(path)
    return paths


def report(title: str, rows: list[dict], out: str | None) -> None:
    """Print `rows` as a table and, with `out`, write them with the machine's description as JSON."""
    columns = list(rows[0])
    widths = [max(len(column), *(len(_cell(row[column])) for row in rows)) for column in columns]
    print(f"\n{title}")
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)))
    for row in rows:
        print("  ".join(_cell(row[column]).ljust(width) for column, width in zip(columns, widths)))
    if out:
        machine = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "gpus": [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())],
        }
        Path(out).write_text(json.dumps({"benchmark": title, "machine": machine, "rows": rows}, indent=2))


def _cell(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
