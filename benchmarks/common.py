"""Timing and reporting shared by the benchmarks: best-of-N wall time, a table for people, JSON for machines."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch


def best_time(function, repeats: int = 3) -> float:
    """The fastest of `repeats` runs of `function()`, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


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
