"""Generative scorer speed: items/s of the shared-prefix scorer (each image's prompt prefix run once, its key/value
cache expanded over the K candidates) against the naive computation, the processor and one full forward per
(image, caption) pair, on Order-shaped items (K = 5), for both scores, a tiny and a mid-sized random LLaVA; and of
the per-pair scorer (PaliGemma, where no prefix can be shared: pairs batched, right-padded) against the same.

    python benchmarks/bench_generative.py [--items 12] [--mid-items 4] [--threads 1] [--out bench_generative.json]

Target: the scorer >= K/2 = 2.5x the naive computation. `--threads` sets torch's CPU threads: on a shared machine
two threads that wait for each other run small models many times slower than one.
"""

from __future__ import annotations

import argparse
import inspect
from functools import partial

import numpy as np
import torch
from common import best_time, report
from datasets import Dataset, Features, Sequence, Value
from datasets import Image as ImageFeature
from PIL import Image

from aro.metrics.scoring import score_items
from aro.metrics.scoring.adapters.prompts import GenerativePrompts
from aro.models.tiny_vlm import make_tiny_vlm

WORDS = "a the red blue green small large circle square dog cat on left of right above below and is".split()
K = 5


def order_like(items: int, size: int) -> Dataset:
    """Order-shaped items: one image per item and K captions of 8 to 12 words (the true one and K-1 shuffles)."""
    rng = np.random.default_rng(0)
    rows = {"image": [], "caption_options": []}
    for _ in range(items):
        words = list(rng.choice(WORDS, rng.integers(8, 13)))
        rows["image"].append(Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)))
        rows["caption_options"].append([" ".join(words)] + [" ".join(rng.permutation(words)) for _ in range(K - 1)])
    return Dataset.from_dict(
        rows, features=Features({"image": ImageFeature(), "caption_options": Sequence(Value("string"))})
    )


@torch.no_grad()
def naive(model, processor, dataset, score: str, prompts: GenerativePrompts) -> None:
    """The processor and one full forward per (image, caption) pair (the caption as the answer suffix where the
    processor takes one, PaliGemma's)."""
    as_suffix = score == "likelihood" and "suffix" in inspect.signature(processor.__call__).parameters
    for row in dataset:
        image = row["image"].convert("RGB")
        for caption in row["caption_options"]:
            if as_suffix:
                inputs = processor(
                    text=[prompts.turn(prompts.caption_prompt, processor)],
                    images=[image],
                    suffix=[caption],
                    return_tensors="pt",
                )
            else:
                inputs = processor(text=[prompts.text(score, caption, processor)], images=[image], return_tensors="pt")
            inputs.pop("labels", None)
            model(**inputs)


def measure(
    name: str, model, processor, dataset, batch_size: int, prompts: GenerativePrompts | None = None
) -> list[dict]:
    prompts = prompts or GenerativePrompts()
    rows = []
    for score in ("vqa", "likelihood"):
        scorer = best_time(
            partial(score_items, model, processor, dataset, score=score, prompts=prompts, batch_size=batch_size),
            repeats=2,
        )
        full = best_time(partial(naive, model, processor, dataset, score, prompts), repeats=2)
        print(f"{name}, {score}: scorer {scorer:.2f} s, naive {full:.2f} s", flush=True)
        rows.append(
            {
                "model": name,
                "score": score,
                "scorer_items_per_s": len(dataset) / scorer,
                "naive_items_per_s": len(dataset) / full,
                "speedup": full / scorer,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--mid-items", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    tiny, tiny_processor = make_tiny_vlm("llava", WORDS)
    rows += measure(
        "tiny LLaVA (hidden 32, 1 layer, 16 image tokens)",
        tiny,
        tiny_processor,
        order_like(args.items, 64),
        batch_size=16,
    )
    mid, mid_processor = make_tiny_vlm("llava", WORDS, hidden_size=512, num_layers=6, image_size=128)
    rows += measure(
        "mid LLaVA (hidden 512, 6+6 layers, 256 image tokens)",
        mid,
        mid_processor,
        order_like(args.mid_items, 160),
        batch_size=4,
    )
    paligemma = GenerativePrompts(template="<image>answer en {prompt}")  # PaliGemma has no chat template
    tiny, tiny_processor = make_tiny_vlm("paligemma", WORDS)
    rows += measure(
        "tiny PaliGemma, per pair (hidden 32, 1 layer, 16 image tokens)",
        tiny,
        tiny_processor,
        order_like(args.items, 64),
        16,
        paligemma,
    )
    mid, mid_processor = make_tiny_vlm("paligemma", WORDS, hidden_size=512, num_layers=6, image_size=128)
    rows += measure(
        "mid PaliGemma, per pair (hidden 512, 6+6 layers, 256 image tokens)",
        mid,
        mid_processor,
        order_like(args.mid_items, 160),
        4,
        paligemma,
    )
    report(
        f"generative scorer vs processor + full forward per pair, Order shape (K={K}): items/s "
        f"(target speedup >= {K / 2})",
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
