"""Build speed and size: items/s and bytes per crop for decode + crop + encode (1 and 2 worker processes), the crop
encodings compared (PNG as stored, the JPEG at quality 95 stored before, PNG at zlib's default level), and captions/s
for the perturbations.

The sources are windows of a photograph (matplotlib's sample `grace_hopper.jpg`, shipped offline), saved as JPEG
like the Visual Genome images: sizes of lossless crops depend on content, and noise would overstate them.

python benchmarks/bench_build.py [--items 300] [--captions 2000] [--out bench_build.json]
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from common import best_time, photograph_windows, report
from PIL import Image

from aro.builders.images import PNG_OPTIONS, ImageJob
from aro.builders.perturbations import OrderPerturber
from aro.builders.sources import prepared_images

WORDS = (
    "a man woman dog cat red blue small large holding riding sitting on next to the street bike table white wooden"
).split()
SOURCE_SIZE = (500, 375)  # a typical Visual Genome image
ENCODINGS = {
    "PNG, zlib level 1 (stored)": PNG_OPTIONS,
    "JPEG quality 95 (stored before)": {"format": "JPEG", "quality": 95, "subsampling": 0},
    "PNG, zlib level 6 (PIL's default)": {"format": "PNG"},
}


def photograph_sources(folder: Path, count: int, rng: np.random.Generator) -> list[ImageJob]:
    """`count` JPEG windows of the sample photograph, each with a bbox of 80 to 375 pixels a side."""
    jobs = []
    for index, path in enumerate(photograph_windows(folder, count, SOURCE_SIZE, rng)):
        w, h = (int(side) for side in rng.integers(80, SOURCE_SIZE[1] + 1, 2))
        x, y = int(rng.integers(0, SOURCE_SIZE[0] - w + 1)), int(rng.integers(0, SOURCE_SIZE[1] - h + 1))
        jobs.append(ImageJob(index, path, path.name, (x, y, w, h)))
    return jobs


def encoded_size(image: Image.Image, options: dict) -> int:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--captions", type=int, default=2000)
    parser.add_argument("--out")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        jobs = photograph_sources(Path(folder), args.items, np.random.default_rng(0))

        def prepare_all(workers: int) -> list:
            return list(prepared_images(jobs, workers, "crops"))

        prepared = prepare_all(1)
        for workers in (1, 2):
            seconds = best_time(partial(prepare_all, workers), repeats=2)
            rows.append(
                {
                    "stage": f"decode + crop + encode, {workers} process(es)",
                    "items": args.items,
                    "seconds": seconds,
                    "per_second": args.items / seconds,
                    "kB_per_item": sum(len(item.data) for item in prepared) / args.items / 1e3,
                }
            )
    crops = [Image.open(io.BytesIO(item.data)) for item in prepared]
    for crop in crops:
        crop.load()
    print(f"{len(crops)} crops of {np.mean([crop.width * crop.height for crop in crops]):,.0f} pixels on average")
    for name, options in ENCODINGS.items():
        start = time.perf_counter()
        total = sum(encoded_size(crop, options) for crop in crops)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "stage": f"encode only: {name}",
                "items": len(crops),
                "seconds": seconds,
                "per_second": len(crops) / seconds,
                "kB_per_item": total / len(crops) / 1e3,
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
            "kB_per_item": "-",
        }
    )
    report("aro build: throughput and size on generated data", rows, args.out)


if __name__ == "__main__":
    main()
