"""How far the torchvision image backend is from the PIL one that `aro eval` pins, per processor family: the largest
absolute difference of their pixel values, and how much that moves P("Yes") (VQAScore) of a tiny random model.

    python benchmarks/image_backends.py [--out image_backends.json]

(a) each family's image processor class at its default settings (as a Hub checkpoint of the family configures it,
roughly), both backends, on a photograph (matplotlib's sample `grace_hopper.jpg`, 512 x 600) and on a 96 x 72 crop
of it (ARO's Visual Genome crops are often that small); and on 40 x 36 random pixels (the tests' images,
the worst case for resampling); (b) the tiny model of `aro.models.tiny_vlm` with its processor, P("Yes") for the
prompt about a caption with each backend's pixel values of the crop and of the random pixels, as the relative change
|P_torchvision - P_pil| / P_pil. Needs torchvision.
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import numpy as np
import torch
import transformers
from common import report
from matplotlib import cbook
from PIL import Image

from aro.metrics.scoring.adapters.prompts import GenerativePrompts
from aro.models.tiny_vlm import make_tiny_siglip2, make_tiny_vlm

FAMILIES = ("llava", "idefics3", "gemma3", "paligemma", "qwen2_vl", "qwen3_vl", "llava_onevision", "internvl")
FAMILIES += ("mistral3", "smolvlm", "kosmos2", "siglip2")
TEMPLATES = {"kosmos2": "Question: {prompt} Answer:", "paligemma": "<image>answer en {prompt}"}
WORDS = "a the red blue woman man in uniform with tie of left right".split()


def images() -> dict[str, Image.Image]:
    """The photograph, a small crop of it, and random pixels (the tests' images: the worst case for resampling)."""
    with cbook.get_sample_data("grace_hopper.jpg") as file:
        photo = Image.open(file).convert("RGB")
    noise = np.random.default_rng(0).integers(0, 255, (40, 36, 3), dtype=np.uint8)
    return {"photo": photo, "crop": photo.crop((200, 150, 296, 222)), "noise": Image.fromarray(noise)}


def largest_difference(first, second) -> float:
    first, second = first["pixel_values"], second["pixel_values"]
    if first.shape != second.shape:
        return float("nan")
    return float((first.float() - second.float()).abs().max())


def torchvision_twin(image_processor):
    """The torchvision backend's image processor with the settings of `image_processor` (saved and loaded back)."""
    with tempfile.TemporaryDirectory() as folder:
        image_processor.save_pretrained(folder)
        return transformers.AutoImageProcessor.from_pretrained(folder, backend="torchvision")


@torch.no_grad()
def p_yes(model, processor, image_processor, image, family: str) -> float:
    """P("Yes") of the model after the prompt about a caption, the image preprocessed by `image_processor` within the
    processor (which passes its own settings: InternVL's crops into tiles, say)."""
    processor = copy.copy(processor)
    processor.image_processor = image_processor
    prompts = GenerativePrompts(template=TEMPLATES.get(family))
    inputs = processor(text=[prompts.text("vqa", "a woman in uniform", processor)], images=[image], return_tensors="pt")
    inputs.pop("labels", None)
    answer = processor.tokenizer.convert_tokens_to_ids("Yes")
    return float(model(**inputs).logits[0, -1].softmax(dim=-1)[answer])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    pictures = images()
    rows = []
    for family in FAMILIES:
        model, processor = make_tiny_siglip2() if family == "siglip2" else make_tiny_vlm(family, WORDS, seed=0)
        pil = processor.image_processor
        defaults = type(pil)(), getattr(transformers, type(pil).__name__.removesuffix("Pil"))()
        row = {"family": family, "image processor": type(defaults[1]).__name__}
        for name, image in pictures.items():
            row[f"max |diff| default, {name}"] = largest_difference(
                *(backend(images=[image], return_tensors="pt") for backend in defaults)
            )
        twin = torchvision_twin(pil)
        for name in ("crop", "noise"):
            row[f"max |diff| tiny, {name}"] = largest_difference(
                *(backend(images=[pictures[name]], return_tensors="pt") for backend in (pil, twin))
            )
            change = float("nan")  # a dual encoder (SigLIP 2) has no P("Yes")
            if family != "siglip2":
                yes = [p_yes(model, processor, backend, pictures[name], family) for backend in (pil, twin)]
                change = abs(yes[1] - yes[0]) / yes[0]
            row[f"P(Yes) relative change, {name}"] = change
        rows.append(row)
    report("PIL vs torchvision image backends", rows, args.out)


if __name__ == "__main__":
    main()
