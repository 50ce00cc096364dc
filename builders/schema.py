"""The columns of the ARO configs: one `datasets.Features` per config, shared by every builder."""

from datasets import Features, Image, List, Value

# The names of `caption_options` in the Order configs, in order: the true caption first.
PERTURBATION_NAMES = (
    "original",
    "shuffle_nouns_and_adjectives",
    "shuffle_all_but_nouns_and_adjectives",
    "shuffle_within_trigrams",
    "shuffle_trigrams",
)

_VISUAL_GENOME = {
    "item_id": Value("int64"),
    "image": Image(),
    "true_caption": Value("string"),
    "false_caption": Value("string"),
    "image_id": Value("string"),
    "bbox": List(Value("int32"), length=4),
}

_ORDER = Features(
    {
        "item_id": Value("int64"),
        "image": Image(),
        "image_id": Value("string"),
        "caption_id": Value("string"),
        "caption_options": List(Value("string"), length=len(PERTURBATION_NAMES)),
        "perturbations": List(Value("string"), length=len(PERTURBATION_NAMES)),
    }
)

# The retrieval configs: one row per image, so each image is stored and encoded once, with all its captions and,
# per perturbation, the same captions shuffled (`perturbed_captions[name][k]` is `captions[k]` perturbed).
RETRIEVAL_FEATURES = Features(
    {
        "image_id": Value("string"),
        "image": Image(),
        "caption_ids": List(Value("string")),
        "captions": List(Value("string")),
        "perturbed_captions": {name: List(Value("string")) for name in PERTURBATION_NAMES[1:]},
    }
)


def retrieval_row(image_id: str, image, caption_ids: list[str], caption_options: list[list[str]]) -> dict:
    """The retrieval row of one image from its captions' Order options (the caption first, then its perturbations)."""
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


CONFIG_FEATURES: dict[str, Features] = {
    "relation": Features({**_VISUAL_GENOME, "relation_name": Value("string")}),
    "attribution": Features(
        {**_VISUAL_GENOME, "attributes": List(Value("string"), length=2), "attribute_pair": Value("string")}
    ),
    "coco_order": _ORDER,
    "flickr30k_order": _ORDER,
    "coco_retrieval": RETRIEVAL_FEATURES,
    "flickr30k_retrieval": RETRIEVAL_FEATURES,
}

# The caption-choice tasks that ARO accuracy scores (the benchmark's tasks in eval.yaml); the retrieval configs are
# scored by `aro retrieval` instead.
ARO_CONFIGS = ("relation", "attribution", "coco_order", "flickr30k_order")

# The column that groups a config's items for macro accuracy (none for the Order configs).
GROUP_COLUMNS = {"relation": "relation_name", "attribution": "attribute_pair"}
