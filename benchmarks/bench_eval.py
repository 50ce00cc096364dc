"""Scorer speed: items/s of `aro_accuracy`'s scorer against (a) bare forward passes of the same model over the same
unique images and captions (the limit) and (b) the loop a user writes first (processor + model per item).

    python benchmarks/bench_eval.py [--items 200] [--vit-b32-items 48] [--out bench_eval.json]

Targets: the scorer at >= 0.9 of (a) and >= 10x (b).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from datasets import Dataset, Features, Image as ImageFeature, Value
from PIL import Image
from transformers import CLIPConfig, CLIPModel

from aro.metrics.scoring import score_items
from aro.models.tiny_clip import make_tiny_clip, tiny_clip_processor, word_tokenizer
from common import best_time, report

WORDS = "a the red blue green small large circle square dog cat on left of right above below and is".split()


def vg_like(items: int, size: int) -> Dataset:
    """VG-shaped items: one image per item, two captions each, captions drawn from a small pool (as VG repeats them)."""
    rng = np.random.default_rng(0)
    pool = [" ".join(rng.choice(WORDS, 8)) for _ in range(max(8, items // 4))]
    rows = {
        "image": [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(items)],
        "true_caption": [pool[i % len(pool)] for i in range(items)],
        "false_caption": [pool[(i * 7 + 1) % len(pool)] for i in range(items)],
    }
    return Dataset.from_dict(rows, features=Features({"image": ImageFeature(), "true_caption": Value("string"), "false_caption": Value("string")}))


@torch.no_grad()
def bare_forward(model, processor, dataset, batch_size: int) -> None:
    """Only the model: preprocessed tensors of the unique images and captions, in batches."""
    captions = sorted(set(dataset["true_caption"]) | set(dataset["false_caption"]))
    pixels = bare_forward.pixels
    for start in range(0, len(pixels), batch_size):
        model.get_image_features(pixel_values=pixels[start : start + batch_size])
    tokens = processor.tokenizer(captions, padding=True, return_tensors="pt")
    for start in range(0, len(captions), batch_size):
        model.get_text_features(input_ids=tokens["input_ids"][start : start + batch_size], attention_mask=tokens["attention_mask"][start : start + batch_size])


@torch.no_grad()
def naive_loop(model, processor, dataset) -> None:
    for row in dataset:
        inputs = processor(text=[row["true_caption"], row["false_caption"]], images=row["image"], return_tensors="pt", padding=True)
        model(**inputs)


def measure(name: str, model, processor, dataset, batch_size: int) -> list[dict]:
    bare_forward.pixels = processor(images=[image.convert("RGB") for image in dataset["image"]], return_tensors="pt")["pixel_values"]
    items = len(dataset)
    scorer = best_time(lambda: score_items(model, processor, dataset, batch_size=batch_size), repeats=2)
    bare = best_time(lambda: bare_forward(model, processor, dataset, batch_size), repeats=2)
    naive = best_time(lambda: naive_loop(model, processor, dataset), repeats=1)
    return [
        {"model": name, "way": "aro scorer", "items_per_second": items / scorer, "scorer_speed_vs_way": 1.0},
        {"model": name, "way": "(a) bare forward, preprocessed", "items_per_second": items / bare, "scorer_speed_vs_way": bare / scorer},
        {"model": name, "way": "(b) per-item processor + model", "items_per_second": items / naive, "scorer_speed_vs_way": naive / scorer},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--vit-b32-items", type=int, default=48)
    parser.add_argument("--out")
    args = parser.parse_args()

    rows = []
    tiny, tiny_processor = make_tiny_clip(WORDS, image_size=32)
    rows += measure("tiny CLIP", tiny, tiny_processor, vg_like(args.items, 64), batch_size=64)
    tokenizer = word_tokenizer(WORDS, max_length=77)
    config = CLIPConfig(text_config={"vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id})
    rows += measure("ViT-B/32-sized CLIP", CLIPModel(config).eval(), tiny_clip_processor(tokenizer, 224), vg_like(args.vit_b32_items, 256), batch_size=16)
    report("aro_accuracy scorer: items/s; scorer_speed_vs_way = the way's time / the scorer's (targets: >=0.9 vs (a), >=10 vs (b))", rows, args.out)


if __name__ == "__main__":
    main()
