"""Scorer speed per model family: items/s of the `aro` scorer against (a) the same model's bare forward over the
same unique inputs, preprocessed beforehand (the limit), and (b) a per-pair loop (processor + the model's own
forward for each image-caption pair, the loop a user writes first).

    python benchmarks/bench_eval.py [--items 64] [--realistic-items 8] [--families clip,blip-itm,...] \
        [--out bench_eval.json]

The unique inputs of (a) are each unique image and each distinct caption for a dual encoder and the blind model,
and each (image, caption) pair for a matching head, which reads both at once. Each family runs at a tiny size and
at its base size (random weights: speed does not depend on them). Targets: the scorer at >= 0.9 of (a), >= 10x (b).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import transformers as tf
from common import best_time, report
from datasets import Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from aro.metrics.scoring import score_items
from aro.metrics.scoring.adapters import BlindAdapter
from aro.models.tiny_clip import tiny_clip_config, tiny_clip_processor, word_tokenizer

WORDS = "a the red blue green small large circle square dog cat on left of right above below and is".split()
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


def vg_like(items: int, size: int) -> Dataset:
    """VG-shaped items: one image per item, two captions each, captions drawn from a small pool (as VG repeats them)."""
    rng = np.random.default_rng(0)
    pool = [" ".join(rng.choice(WORDS, 8)) for _ in range(max(8, items // 4))]
    rows = {
        "image": [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(items)],
        "true_caption": [pool[i % len(pool)] for i in range(items)],
        "false_caption": [pool[(i * 7 + 1) % len(pool)] for i in range(items)],
    }
    return Dataset.from_dict(
        rows,
        features=Features({"image": ImageFeature(), "true_caption": Value("string"), "false_caption": Value("string")}),
    )


# Each family at a tiny size (tiny=True) and at its base size, with a processor built as its checkpoints ship it.


def clip(tokenizer, tiny):
    if tiny:
        return tf.CLIPModel(tiny_clip_config(tokenizer, image_size=32)), tiny_clip_processor(tokenizer, 32)
    text = {
        "vocab_size": len(tokenizer),
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return tf.CLIPModel(tf.CLIPConfig(text_config=text)), tiny_clip_processor(tokenizer, 224)  # ViT-B/32


def siglip(tokenizer, tiny):
    vision = dict(TINY, image_size=32, patch_size=8) if tiny else {}  # base: ViT-B/16 at 224
    text = dict(TINY if tiny else {}, vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length)
    return tf.SiglipModel(tf.SiglipConfig(text_config=text, vision_config=vision)), tiny_clip_processor(
        tokenizer, 32 if tiny else 224
    )


def flava(tokenizer, tiny):
    size = 32 if tiny else 224
    config = tf.FlavaConfig(
        text_config=dict(TINY if tiny else {}, vocab_size=len(tokenizer)),
        image_config=dict(TINY, image_size=32, patch_size=8) if tiny else {},
        multimodal_config=TINY if tiny else {},
        **(
            dict(
                image_codebook_config=dict(hidden_size=32, num_groups=1, num_blocks_per_group=1),
                hidden_size=32,
                projection_dim=16,
            )
            if tiny
            else {}
        ),
    )
    crop = {"height": size, "width": size}
    return tf.FlavaModel(config), tf.FlavaProcessor(
        image_processor=tf.FlavaImageProcessorPil(size=crop, crop_size=crop), tokenizer=tokenizer
    )


def blip_itm(tokenizer, tiny):
    size = 32 if tiny else 384
    text = dict(
        TINY if tiny else {},
        vocab_size=len(tokenizer),
        encoder_hidden_size=32 if tiny else 768,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(TINY, image_size=32, patch_size=8) if tiny else {}  # base: ViT-B/16 at 384
    config = tf.BlipConfig(
        text_config=text, vision_config=vision, **(dict(projection_dim=16, image_text_hidden_size=16) if tiny else {})
    )
    processor = tf.BlipProcessor(
        image_processor=tf.BlipImageProcessorPil(size={"height": size, "width": size}), tokenizer=tokenizer
    )
    return tf.BlipForImageTextRetrieval(config), processor


def blip2(tokenizer, tiny):
    size = 32 if tiny else 224
    processor = tf.Blip2Processor(
        image_processor=tf.BlipImageProcessorPil(size={"height": size, "width": size}), tokenizer=tokenizer
    )
    # Base: a ViT-B/16 vision tower (the released ViT-g has 1B parameters) and the released Q-Former's size.
    vision = (
        dict(TINY, image_size=32, patch_size=8)
        if tiny
        else dict(
            image_size=224,
            patch_size=16,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
        )
    )
    qformer = dict(
        TINY if tiny else {},
        vocab_size=len(tokenizer),
        encoder_hidden_size=vision["hidden_size"],
        pad_token_id=tokenizer.pad_token_id,
        use_qformer_text_input=True,
    )
    config = tf.Blip2Config(
        vision_config=vision,
        qformer_config=qformer,
        **(dict(num_query_tokens=4, image_text_hidden_size=16) if tiny else {}),
    )
    return tf.Blip2ForImageTextRetrieval(config), processor


def vilt(tokenizer, tiny):
    config = tf.ViltConfig(**(dict(TINY, image_size=32, patch_size=8) if tiny else {}), vocab_size=len(tokenizer))
    image_processor = tf.ViltImageProcessorPil(size={"shortest_edge": 32 if tiny else 384})
    return tf.ViltForImageAndTextRetrieval(config), tf.ViltProcessor(
        image_processor=image_processor, tokenizer=tokenizer
    )


def bridgetower(tokenizer, tiny):
    size = 32 if tiny else 288
    text = dict(TINY if tiny else {}, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=64, num_hidden_layers=1, image_size=32, patch_size=8) if tiny else {}
    config = tf.BridgeTowerConfig(
        text_config=text,
        vision_config=vision,
        **(dict(TINY, share_cross_modal_transformer_layers=True) if tiny else {}),
    )
    # Its PIL processor cannot centre-crop to a {"shortest_edge"} size; the images here are square.
    image_processor = tf.BridgeTowerImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"shortest_edge": size}, do_center_crop=False
    )
    return tf.BridgeTowerForImageAndTextRetrieval(config), tf.BridgeTowerProcessor(
        image_processor=image_processor, tokenizer=tokenizer
    )


def blind_gpt2(tokenizer, tiny):
    sizes = dict(n_embd=32, n_layer=1, n_head=2) if tiny else {}  # base: GPT-2 (124M)
    config = tf.GPT2Config(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **sizes
    )
    return tf.GPT2LMHeadModel(config), tokenizer


FAMILIES = {
    "clip": clip,
    "siglip": siglip,
    "flava": flava,
    "blip-itm": blip_itm,
    "blip2": blip2,
    "vilt": vilt,
    "bridgetower": bridgetower,
    "blind-gpt2": blind_gpt2,
}
DUAL = ("clip", "siglip", "flava")


def own_forward(model, inputs: dict):
    """The model's own forward, with the head its model card scores pairs with."""
    if isinstance(model, tf.BlipForImageTextRetrieval):
        return model(**inputs, use_itm_head=True)
    if isinstance(model, tf.Blip2ForImageTextRetrieval):
        return model(**inputs, use_image_text_matching_head=True)
    if isinstance(model, tf.FlavaModel):
        return model(**inputs, skip_multimodal_encoder=True)
    return model(**inputs)


def pairs_of(dataset) -> list[tuple[Image.Image, str]]:
    return [
        (row["image"].convert("RGB"), caption)
        for row in dataset
        for caption in (row["true_caption"], row["false_caption"])
    ]


def text_inputs(family: str, processor, captions: list[str]) -> dict:
    padding = (
        dict(padding="max_length", max_length=processor.tokenizer.model_max_length)
        if family == "siglip"
        else dict(padding=True)
    )
    return processor.tokenizer(captions, return_tensors="pt", **padding)


def bare_inputs(family: str, model, processor, dataset):
    """The unique inputs, preprocessed once, and a function that runs only the model over them in batches."""
    if family == "blind-gpt2":
        captions = sorted(set(dataset["true_caption"]) | set(dataset["false_caption"]))
        tokens = processor(captions, return_tensors="pt", padding=True)
        return lambda size: [
            model(**{k: v[start : start + size] for k, v in tokens.items()}) for start in range(0, len(captions), size)
        ]
    if family in DUAL:
        pixels = processor.image_processor(
            images=[image.convert("RGB") for image in dataset["image"]], return_tensors="pt"
        )["pixel_values"]
        tokens = text_inputs(family, processor, sorted(set(dataset["true_caption"]) | set(dataset["false_caption"])))

        def run(size):
            for start in range(0, len(pixels), size):
                model.get_image_features(pixel_values=pixels[start : start + size])
            for start in range(0, len(tokens["input_ids"]), size):
                model.get_text_features(**{k: v[start : start + size] for k, v in tokens.items()})

        return run
    pairs = pairs_of(dataset)
    inputs = dict(processor.image_processor(images=[image for image, _ in pairs], return_tensors="pt"))
    inputs |= dict(text_inputs(family, processor, [caption for _, caption in pairs]))
    return lambda size: [
        own_forward(model, {k: v[start : start + size] for k, v in inputs.items()})
        for start in range(0, len(pairs), size)
    ]


def per_pair_loop(family: str, model, processor, dataset) -> None:
    for image, caption in pairs_of(dataset):
        if family == "blind-gpt2":
            model(**processor([caption], return_tensors="pt"))
        else:
            padding = (
                dict(padding="max_length", max_length=processor.tokenizer.model_max_length)
                if family == "siglip"
                else {}
            )
            own_forward(model, dict(processor(text=[caption], images=[image], return_tensors="pt", **padding)))


@torch.no_grad()
def measure(family: str, size: str, items: int, image_size: int, batch_size: int, repeats: int) -> list[dict]:
    tiny = size == "tiny"
    tokenizer = word_tokenizer(WORDS, max_length=16 if tiny else 32)
    torch.manual_seed(0)
    model, processor = FAMILIES[family](tokenizer, tiny)
    model.eval()
    dataset = vg_like(items, image_size)
    adapter = BlindAdapter if family == "blind-gpt2" else None
    bare = bare_inputs(family, model, processor, dataset)
    scorer_time = best_time(
        lambda: score_items(model, processor, dataset, batch_size=batch_size, adapter=adapter), repeats=repeats
    )
    bare_time = best_time(lambda: bare(batch_size), repeats=repeats)
    loop_time = best_time(lambda: per_pair_loop(family, model, processor, dataset), repeats=1)
    parameters = sum(parameter.numel() for parameter in model.parameters()) / 1e6
    name = f"{family} ({size}, {parameters:.3g}M)"
    return [
        {"model": name, "way": "aro scorer", "items_per_second": items / scorer_time, "scorer_speed_vs_way": 1.0},
        {
            "model": name,
            "way": "(a) bare forward, unique inputs",
            "items_per_second": items / bare_time,
            "scorer_speed_vs_way": bare_time / scorer_time,
        },
        {
            "model": name,
            "way": "(b) per-pair loop",
            "items_per_second": items / loop_time,
            "scorer_speed_vs_way": loop_time / scorer_time,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=64, help="items of the tiny runs")
    parser.add_argument("--realistic-items", type=int, default=8, help="items of the base-size runs (0: skip them)")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of {', '.join(FAMILIES)}")
    parser.add_argument("--out")
    args = parser.parse_args()

    rows = []
    for family in args.families.split(","):
        rows += measure(family, "tiny", args.items, 64, batch_size=64, repeats=2)
        if args.realistic_items:
            rows += measure(family, "base", args.realistic_items, 256, batch_size=16, repeats=1)
        report("aro scorer, items/s (so far)", rows[-6:], None)
    report(
        "aro scorer: items/s; scorer_speed_vs_way = the way's time / the scorer's (targets: >=0.9 vs (a), >=10 vs (b))",
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
