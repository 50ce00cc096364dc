"""Build speed: items/s for decode + crop + encode (1 and 2 worker processes) and captions/s for the perturbations.

python benchmarks/bench_build.py [--items 300] [--captions 2000] [--out bench_build.json]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np
from common import best_time, report
from PIL import Image

from aro.builders.images import ImageJob
from aro.builders.perturbations import OrderPerturber
from aro.builders.sources import _prepared

WORDS = "a man woman dog cat red blue small large holding riding sitting on next to the street bike table white wooden".split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--captions", type=int, default=2000)
    parser.add_argument("--out")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        # VG-sized sources: 500x375 JPEG photographs-like noise, one crop per item.
        jobs = []
        for index in range(args.items):
            path = Path(folder) / f"{index}.jpg"
            Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(path, quality=90)
            jobs.append(ImageJob(index, path, (50, 40, 300, 250)))
        for workers in (1, 2):
            seconds = best_time(lambda: list(_prepared(jobs, workers, "crops")), repeats=2)
            rows.append(
                {
                    "stage": f"crop+encode, {workers} worker(s)",
                    "items": args.items,
                    "seconds": seconds,
                    "per_second": args.items / seconds,
                }
            )

    generator = random.Random(0)
    captions = [
        " ".join(generator.choice(WORDS) for _ in range(generator.randint(6, 14))) for _ in range(args.captions)
    ]
    perturber = OrderPerturber(seed=0)
    keys = [str(index) for index in range(len(captions))]
    seconds = best_time(lambda: perturber.caption_options(captions, keys), repeats=2)
    rows.append(
        {
            "stage": "four perturbations (spaCy tagger)",
            "items": args.captions,
            "seconds": seconds,
            "per_second": args.captions / seconds,
        }
    )
    report("aro build: throughput on generated data", rows, args.out)


if __name__ == "__main__":
    main()
