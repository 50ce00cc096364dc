"""The ARO dataset contract: the configs, their columns and what the scorer reads from them.

`aro build` writes Parquet that follows it, the scoring library and the `aro_accuracy` metric read it, and every
layer imports it from here (the metric's Space folder carries this file as it is). Names and numbers are plain
Python; the `datasets.Features` of a config are built on first use (`config_features`), because importing `datasets`
takes a second that `aro <command> --help` should not pay.

>>> ARO_CONFIGS
('relation', 'attribution', 'coco_order', 'flickr30k_order')
>>> GROUP_COLUMNS["relation"], CHANCE["coco_order"], option_names("relation")
('relation_name', 0.2, ('true_caption', 'false_caption'))
>>> SUGARCREPE_GROUPS["swap"], option_names("sugarcrepe_swap_obj")
(('sugarcrepe_swap_obj', 'sugarcrepe_swap_att'), ('true_caption', 'false_caption'))
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

# The caption-choice tasks that ARO accuracy scores (the benchmark's tasks in eval.yaml).
ARO_CONFIGS = ("relation", "attribution", "coco_order", "flickr30k_order")
# One row per test image with its captions and their shuffles, scored by `aro retrieval` rather than ARO accuracy.
RETRIEVAL_CONFIGS = ("coco_retrieval", "flickr30k_retrieval")
VISUAL_GENOME_CONFIGS = ("relation", "attribution")
ORDER_CONFIGS = ("coco_order", "flickr30k_order")
# SugarCrepe (Hsieh et al., NeurIPS 2023), built beside ARO from the authors' JSON files and COCO val2017: one config
# per split, two captions per image as in the VG sets. The paper reports the splits in three groups, in this order.
SUGARCREPE_GROUPS = {
    "replace": ("sugarcrepe_replace_obj", "sugarcrepe_replace_att", "sugarcrepe_replace_rel"),
    "swap": ("sugarcrepe_swap_obj", "sugarcrepe_swap_att"),
    "add": ("sugarcrepe_add_obj", "sugarcrepe_add_att"),
}
SUGARCREPE_CONFIGS = tuple(config for configs in SUGARCREPE_GROUPS.values() for config in configs)
# Every config scored by picking a caption (ARO accuracy): ARO's four and SugarCrepe's seven.
CHOICE_CONFIGS = ARO_CONFIGS + SUGARCREPE_CONFIGS

# The two captions of a Visual Genome item, the true one first.
VISUAL_GENOME_OPTIONS = ("true_caption", "false_caption")
# The names of `caption_options` in the Order configs, in order: the true caption first.
PERTURBATION_NAMES = (
    "original",
    "shuffle_nouns_and_adjectives",
    "shuffle_all_but_nouns_and_adjectives",
    "shuffle_within_trigrams",
    "shuffle_trigrams",
)

# The column that groups a config's items for macro accuracy (none for the Order configs).
GROUP_COLUMNS = {"relation": "relation_name", "attribution": "attribute_pair"}
# Accuracy of a model that picks a caption at random: two options in the VG sets, five in the Order sets.
CHANCE = {"relation": 0.5, "attribution": 0.5, "coco_order": 0.2, "flickr30k_order": 0.2}
CHANCE |= dict.fromkeys(SUGARCREPE_CONFIGS, 0.5)
# The bounding box in the ARO release's annotations, in this order: [x, y, w, h] in the rows' `bbox`.
BBOX_KEYS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")


def expand_config_names(names, sets: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """`names` with each name of `sets` (a name that stands for several configs) replaced by its configs, in order,
    without repeats.

    >>> expand_config_names(["relation", "sugarcrepe", "relation"], {"sugarcrepe": ("a", "b")})
    ('relation', 'a', 'b')
    """
    return tuple(dict.fromkeys(config for name in names for config in sets.get(name, (name,))))


def option_names(config: str) -> tuple[str, ...]:
    """The names of an item's candidate captions in `config`, the true caption first."""
    return PERTURBATION_NAMES if config in ORDER_CONFIGS else VISUAL_GENOME_OPTIONS


def candidates_of(row: dict) -> list[str]:
    """The candidate captions of an ARO row, the true caption first."""
    if "caption_options" in row:
        return list(row["caption_options"])
    return [row[name] for name in VISUAL_GENOME_OPTIONS]


# A word token: a maximal run of letters and digits. Punctuation, spaces, hyphens, apostrophes and other symbols
# separate tokens and are no tokens themselves.
_WORD = re.compile(r"[^\W_]+")


def word_bag(caption: str) -> Counter:
    """The multiset of a caption's lower-cased word tokens (see `_WORD`): what a bag-of-words model sees of it.

    >>> word_bag("A dog's ball, on the grass.") == word_bag("the grass on a dog s ball")
    True
    """
    return Counter(_WORD.findall(caption.lower()))


def uses_same_words(candidates: list[str]) -> bool:
    """Whether a negative of an item (an option whose text differs from the true caption, `candidates[0]`) has
    exactly the true caption's bag of words: a bag-of-words model scores the two alike, so it can only tie there and
    never get the item right (ties count wrong). Options with the true caption's very text are no negatives.

    >>> uses_same_words(["the horse is eating the grass", "the grass is eating the horse"])
    True
    >>> uses_same_words(["a red car", "a red car", "a blue car"])
    False
    """
    true_caption, *options = candidates
    words = word_bag(true_caption)
    return any(option != true_caption and word_bag(option) == words for option in options)


def retrieval_row(image_id: str, image, caption_ids: list[str], caption_options: list[list[str]]) -> dict:
    """The retrieval row of one image from its captions' Order options (the caption first, then its perturbations):
    `perturbed_captions[name][k]` is `captions[k]` perturbed by `name`."""
    return {
        "image_id": image_id,
        "image": image,
        "caption_ids": list(caption_ids),
        "captions": [options[0] for options in caption_options],
        "perturbed_captions": {
            name: [options[position] for options in caption_options]
            for position, name in enumerate(PERTURBATION_NAMES)
            if position
        },
    }


def crop_to_bbox(image, bbox: tuple[float, float, float, float]):
    """Crop a PIL `image` to `bbox` ([x, y, w, h] in pixels) as the original ARO loader and CLIP_benchmark do, with
    `image.crop((x, y, x + w, y + h))`: the corners rounded to whole pixels, and the part of the box outside the
    image black (in an RGB image). Returns the crop, the rounded box [x, y, w, h] (the rows' `bbox`) and whether it
    reaches outside the image. A box that covers no pixel of the image is a ValueError.

    >>> from PIL import Image
    >>> crop, box, outside = crop_to_bbox(Image.new("RGB", (4, 3), "white"), (2, 1, 3.6, 2))
    >>> crop.size, box, outside, crop.getpixel((1, 0)), crop.getpixel((2, 0))
    ((4, 2), (2, 1, 4, 2), True, (255, 255, 255), (0, 0, 0))
    """
    x, y, w, h = bbox
    # PIL rounds each corner (Python's round, as here): x + w is rounded, not x and w apart.
    left, top, right, bottom = (round(value) for value in (x, y, x + w, y + h))
    width, height = image.size
    if min(right, width) <= max(left, 0) or min(bottom, height) <= max(top, 0):
        raise ValueError(f"bbox {list(bbox)} covers no pixel of the {width}x{height} image")
    outside = left < 0 or top < 0 or right > width or bottom > height
    return image.crop((left, top, right, bottom)), (left, top, right - left, bottom - top), outside


@cache
def config_features(config: str):
    """The `datasets.Features` of `config`'s rows (any of CHOICE_CONFIGS and RETRIEVAL_CONFIGS)."""
    from datasets import Features, Image, List, Value  # here: datasets takes 1.5 s to import; `--help` imports this

    visual_genome = {
        "item_id": Value("int64"),
        "image": Image(),
        "true_caption": Value("string"),
        "false_caption": Value("string"),
        "image_id": Value("string"),
        "bbox": List(Value("int32"), length=4),
    }
    order = {
        "item_id": Value("int64"),
        "image": Image(),
        "image_id": Value("string"),
        "caption_id": Value("string"),
        "caption_options": List(Value("string"), length=len(PERTURBATION_NAMES)),
        "perturbations": List(Value("string"), length=len(PERTURBATION_NAMES)),
    }
    # An item of the authors' JSON (`item_id` is its key there) with its COCO val2017 image (`image_id`: file stem).
    sugarcrepe = {
        "item_id": Value("int64"),
        "image": Image(),
        "true_caption": Value("string"),
        "false_caption": Value("string"),
        "image_id": Value("string"),
    }
    # One row per image, so each image is stored and encoded once, with all its captions and their shuffles.
    retrieval = {
        "image_id": Value("string"),
        "image": Image(),
        "caption_ids": List(Value("string")),
        "captions": List(Value("string")),
        "perturbed_captions": {name: List(Value("string")) for name in PERTURBATION_NAMES[1:]},
    }
    columns = {
        "relation": {**visual_genome, "relation_name": Value("string")},
        "attribution": {
            **visual_genome,
            "attributes": List(Value("string"), length=2),
            "attribute_pair": Value("string"),
        },
        **dict.fromkeys(ORDER_CONFIGS, order),
        **dict.fromkeys(RETRIEVAL_CONFIGS, retrieval),
        **dict.fromkeys(SUGARCREPE_CONFIGS, sugarcrepe),
    }
    if config not in columns:
        raise ValueError(f"unknown config {config!r}: the ARO dataset has {', '.join(columns)}")
    return Features(columns[config])
