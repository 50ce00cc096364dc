"""The demo's time and finding: `aro demo --quick` and `aro demo` for three seeds, each in its own process, one
after the other, with the wall time, the CPU time and the load average around each run, and the figures the
README states (ARO accuracy, retrieval with shuffled captions) with their range over the seeds.

    python benchmarks/bench_demo.py [--modes quick,full] [--seeds 0,1,2] [--trade-off] [--out bench_demo.json]

With `--trade-off` the demos also train FSC-CLIP without and with LoRA (`aro demo --trade-off`), and the spread
covers them: ARO, retrieval and zero-shot accuracy per model over the seeds, the README's trade-off table.

The targets: the full demo within 5 minutes and the quick one within 2 on 2 quiet cores; over every seed, CLIP and
CLIP-FT at most 0.60 on relation and attribution, NegCLIP at least 0.85 on relation and 0.95 on attribution, and
retrieval with shuffled captions dropping more for NegCLIP than for CLIP. The load average says how quiet the
machine was: on a shared machine, compare runs made back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("CLIP", "CLIP-FT", "NegCLIP")
CONFIGS = ("relation", "attribution", "coco_order", "flickr30k_order")
SHUFFLES = (
    "shuffle_nouns_and_adjectives",
    "shuffle_all_but_nouns_and_adjectives",
    "shuffle_within_trigrams",
    "shuffle_trigrams",
)
TIME_TARGETS = {"quick": 120, "full": 300}


def run_demo(mode: str, seed: int, folder: Path, trade_off: bool = False) -> dict:
    """One demo in a fresh process: its times, the load around it, and its figures."""
    out = folder / f"demo-{mode}-{seed}"
    command = [sys.executable, "-m", "aro.cli", "demo", "--seed", str(seed), "--out", str(out)]
    if mode == "quick":
        command.append("--quick")
    if trade_off:
        command.append("--trade-off")
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    results = json.loads((out / "results.json").read_text())
    return {
        "mode": mode,
        "seed": seed,
        "wall_seconds": wall,
        "cpu_seconds": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "figures": figures(results),
    }


def figures(results: dict) -> dict:
    """Per model: ARO accuracy per config, text-to-image and image-to-text recall@1 with the captions as written, the
    largest text-to-image drop over the shuffles, and zero-shot accuracy."""
    table = {}
    for name in results["models"]:
        numbers = results["models"][name]
        recall = {
            variant: {direction: values["recall@1"] for direction, values in directions.items()}
            for variant, directions in numbers["retrieval"].items()
        }
        table[name] = {config: numbers["aro"][config] for config in CONFIGS} | {
            "text_to_image_recall@1": recall["original"]["text_to_image"],
            "image_to_text_recall@1": recall["original"]["image_to_text"],
            "largest_shuffle_drop": max(
                recall["original"]["text_to_image"] - recall[shuffle]["text_to_image"] for shuffle in SHUFFLES
            ),
            "zero_shot": numbers["zero_shot"],
        }
    return table


def finding_holds(figures: dict) -> dict[str, bool]:
    """The demo's finding, criterion by criterion, for one run."""
    clip, control, negclip = (figures[name] for name in MODELS)
    return {
        "CLIP and CLIP-FT <= 0.60 on relation and attribution": all(
            model[config] <= 0.60 for model in (clip, control) for config in ("relation", "attribution")
        ),
        "NegCLIP >= 0.85 on relation": negclip["relation"] >= 0.85,
        "NegCLIP >= 0.95 on attribution": negclip["attribution"] >= 0.95,
        "shuffles cost NegCLIP more retrieval than CLIP": negclip["largest_shuffle_drop"]
        > clip["largest_shuffle_drop"],
    }


def spread(runs: list[dict]) -> dict:
    """Per model and figure, the lowest and highest value over the runs."""
    return {
        name: {
            figure: [
                min(run["figures"][name][figure] for run in runs),
                max(run["figures"][name][figure] for run in runs),
            ]
            for figure in runs[0]["figures"][name]
        }
        for name in runs[0]["figures"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="quick,full", help="comma-separated: quick, full")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--trade-off", action="store_true", help="also FSC-CLIP without and with LoRA")
    parser.add_argument("--out", help="JSON file for every run and the spread")
    args = parser.parse_args()

    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for mode in args.modes.split(","):
            for seed in (int(seed) for seed in args.seeds.split(",")):
                run = run_demo(mode, seed, Path(folder), args.trade_off)
                run["finding"] = finding_holds(run["figures"])
                runs.append(run)
                print(
                    f"{mode} seed {seed}: {run['wall_seconds']:.0f} s wall (target {TIME_TARGETS[mode]} s on 2 quiet "
                    f"cores), {run['cpu_seconds']:.0f} s CPU, load average {run['load_average_before']:.1f} -> "
                    f"{run['load_average_after']:.1f}; finding holds: {all(run['finding'].values())}",
                    flush=True,
                )
                for criterion, holds in run["finding"].items():
                    if not holds:
                        print(f"  not met: {criterion}")
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "runs": runs,
        "spread": {mode: spread([run for run in runs if run["mode"] == mode]) for mode in args.modes.split(",")},
    }
    for mode, table in report["spread"].items():
        print(f"\n{mode}: lowest and highest over seeds {args.seeds}")
        for name, values in table.items():
            cells = ", ".join(f"{figure} {low:.3f}-{high:.3f}" for figure, (low, high) in values.items())
            print(f"  {name}: {cells}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
