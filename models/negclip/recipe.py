"""The optimisation recipe of the authors' NegCLIP training code (vinid's open_clip fork, `src/training/`).

- `optimizer_groups`: AdamW's two parameter groups. Gains and biases (every parameter with fewer than two
  dimensions: LayerNorm weights and biases, linear biases, the vision class embedding) and `logit_scale` get no
  weight decay; every matrix (projections, embeddings, the patch convolution) gets `weight_decay`.
- `warmup_cosine`: the fork's learning rate by optimizer step: linear warmup that reaches the base rate at the
  end of its first step, then a half cosine down to zero at the last step.
- `clamp_logit_scale`: after every optimizer step the temperature's log is clamped to [0, ln 100], so the logit
  multiplier never exceeds 100.
- `random_resized_crop`: the training augmentation, a crop of 90-100% of the image's area with an aspect ratio
  between 3:4 and 4:3, resized (bicubic, antialiased, as PIL resizes) to the model's input size, drawn from a
  seeded `random.Random` so that a resumed run draws the same crops. It takes and gives uint8 tensors (3, height,
  width), as the training batches hold images; the image processor then only rescales and normalises it.

>>> groups = optimizer_groups(model, weight_decay=0.2)  # doctest: +SKIP
>>> optimizer = torch.optim.AdamW(groups, lr=1e-6, betas=(0.9, 0.98), eps=1e-6)  # doctest: +SKIP
>>> scheduler = warmup_cosine(optimizer, warmup_steps=50, total_steps=2135)  # doctest: +SKIP
>>> optimizer.step(); clamp_logit_scale(model); scheduler.step()  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import torch

from aro.core.errors import InvalidInput

from .arguments import MAX_LOGIT_SCALE

CROP_AREA = (0.9, 1.0)
CROP_ASPECT_RATIO = (3 / 4, 4 / 3)


def decays(name: str, parameter: torch.Tensor) -> bool:
    """Whether weight decay applies: to matrices, never to gains, biases or the logit scale."""
    return parameter.ndim >= 2 and not name.endswith("bias") and "logit_scale" not in name


def optimizer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """The trainable parameters in two AdamW groups: no decay (gains, biases, `logit_scale`), then `weight_decay`."""
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    return [
        {"params": [parameter for name, parameter in trainable if not decays(name, parameter)], "weight_decay": 0.0},
        {
            "params": [parameter for name, parameter in trainable if decays(name, parameter)],
            "weight_decay": weight_decay,
        },
    ]


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """The fraction of the base learning rate that optimizer step `step` (counted from 0) applies."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The fork's schedule as a scheduler stepped once after every optimizer step."""
    factor = functools.partial(
        warmup_cosine_factor, warmup_steps=min(warmup_steps, total_steps), total_steps=total_steps
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def clamp_logit_scale(model: torch.nn.Module, max_scale: float = MAX_LOGIT_SCALE) -> None:
    """Keep the learnt temperature's log in [0, ln `max_scale`], as CLIP's training does after every step."""
    model.logit_scale.clamp_(0, math.log(max_scale))


def crop_box(
    width: int,
    height: int,
    rng: random.Random,
    area: tuple[float, float] = CROP_AREA,
    aspect_ratio: tuple[float, float] = CROP_ASPECT_RATIO,
) -> tuple[int, int, int, int]:
    """A random (left, top, right, bottom) box covering `area` of the image at an aspect ratio within `aspect_ratio`.

    Ten draws are tried; if none fits in the image, the largest centred box of an allowed aspect ratio is used.
    """
    log_ratios = (math.log(aspect_ratio[0]), math.log(aspect_ratio[1]))
    for _ in range(10):
        target = width * height * rng.uniform(*area)
        ratio = math.exp(rng.uniform(*log_ratios))
        crop_width, crop_height = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = rng.randint(0, height - crop_height)
            left = rng.randint(0, width - crop_width)
            return left, top, left + crop_width, top + crop_height
    ratio = min(max(width / height, aspect_ratio[0]), aspect_ratio[1])
    crop_width, crop_height = (
        (width, round(width / ratio)) if width / height < ratio else (round(height * ratio), height)
    )
    left, top = (width - crop_width) // 2, (height - crop_height) // 2
    return left, top, left + crop_width, top + crop_height


def random_resized_crop(image: torch.Tensor, size: tuple[int, int], rng: random.Random) -> torch.Tensor:
    """A random crop of a uint8 `image` (3, height, width) (see `crop_box`), resized to `size` (width, height) with
    antialiased bicubic interpolation, as uint8."""
    left, top, right, bottom = crop_box(image.shape[2], image.shape[1], rng)
    crop = image[None, :, top:bottom, left:right].float()
    resized = torch.nn.functional.interpolate(crop, size=size[::-1], mode="bicubic", antialias=True)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


def input_size(image_processor) -> tuple[int, int]:
    """The (width, height) of the pixels a CLIP-style image processor hands the model."""
    for size in (
        image_processor.crop_size if getattr(image_processor, "do_center_crop", False) else None,
        image_processor.size,
    ):
        if size is None:
            continue
        size = dict(size)
        if size.get("height") and size.get("width"):
            return size["width"], size["height"]
        if size.get("shortest_edge"):
            return size["shortest_edge"], size["shortest_edge"]
    raise InvalidInput(f"cannot tell the input size of {type(image_processor).__name__}: it has no crop_size or size")


@dataclass(frozen=True)
class ForkSetting:
    """One setting of the authors' NegCLIP run (their README's command on vinid's fork) against ours.

    `argument` is the `NegCLIPTrainingArguments` field (None for what is not an option here), `fork` says how the
    fork set it, `value` is the fork's value in that field's terms (None when it has no single value), and `note`
    says why our default differs, if it does.
    """

    setting: str
    argument: str | None
    fork: str
    value: object = None
    note: str = ""


FORK_SETTINGS = (
    ForkSetting(
        "starting model",
        "model_name_or_path",
        "`--model ViT-B-32 --pretrained openai` (QuickGELU)",
        "openai/clip-vit-base-patch32",
    ),
    ForkSetting("learning rate", "learning_rate", "`--lr 1e-6`", 1e-6),
    ForkSetting("batch size (rows per step)", "batch_size", "`--batch-size 256`, one GPU", 256),
    ForkSetting("epochs", "epochs", "`--epochs 5`", 5),
    ForkSetting("warmup steps", "warmup_steps", "`--warmup 50`", 50),
    ForkSetting(
        "schedule",
        None,
        "linear warmup to the base rate at the end of the first step, then half cosine to 0 (`cosine_lr`)",
    ),
    ForkSetting("optimizer", None, "AdamW"),
    ForkSetting("Adam beta1", "adam_beta1", "0.9 (ViT default)", 0.9),
    ForkSetting("Adam beta2", "adam_beta2", "0.98 (ViT default)", 0.98),
    ForkSetting("Adam epsilon", "adam_epsilon", "1e-6 (ViT default)", 1e-6),
    ForkSetting("weight decay", "weight_decay", "`--wd 0.2` (default); none on gains, biases, `logit_scale`", 0.2),
    ForkSetting("logit scale", "max_logit_scale", "clamped to [0, ln 100] after every step", MAX_LOGIT_SCALE),
    ForkSetting("augmentation", "augment", "`RandomResizedCrop(224, scale=(0.9, 1.0), bicubic)`", True),
    ForkSetting(
        "rows per epoch",
        "epoch_rows",
        "one caption per image, the same every epoch (their files have one row per image)",
        "images",
    ),
    ForkSetting(
        "swapped-word negative", "hard_negatives", "one of the caption's `neg_caption`, drawn every epoch", True
    ),
    ForkSetting(
        "neighbour image",
        "image_negatives",
        "one of the row's 3 `neg_image` rows, with its caption and a negative",
        True,
    ),
    ForkSetting("neighbours per image", "neighbours", "3 (`neg_image`)", 3),
    ForkSetting("negatives per caption", "negatives_per_caption", "1-5 (`neg_caption`, as many as their miner found)"),
    ForkSetting(
        "caption without a swap", None, "its image is left out of their file (4,839 of 5,000 validation images remain)"
    ),
    ForkSetting(
        "epoch kept", "select_best", "validation every epoch (`--val-data`); the paper kept the best epoch", True
    ),
    ForkSetting("gradient accumulation", "gradient_accumulation_steps", "none", 1),
    ForkSetting(
        "mixed precision",
        "mixed_precision",
        "`--precision amp` (default)",
        "fp16",
        "off so that the defaults run on any device; `--mixed-precision fp16` on a GPU matches",
    ),
    ForkSetting("seed", "seed", "`--seed 0` (default)", 0),
)

# What the rows without an option do here, for the table's "this run" column.
FIXED_HERE = {
    "schedule": "the same (`recipe.warmup_cosine`)",
    "optimizer": "AdamW",
    "caption without a swap": "kept, with no negative (masked out of the loss)",
}
