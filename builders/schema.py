"""The columns of the four ARO configs: one `datasets.Features` per config, shared by every builder."""

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

CONFIG_FEATURES: dict[str, Features] = {
    "relation": Features({**_VISUAL_GENOME, "relation_name": Value("string")}),
    "attribution": Features(
        {**_VISUAL_GENOME, "attributes": List(Value("string"), length=2), "attribute_pair": Value("string")}
    ),
    "coco_order": _ORDER,
    "flickr30k_order": _ORDER,
}

# The column that groups a config's items for macro accuracy (none for the Order configs).
GROUP_COLUMNS = {"relation": "relation_name", "attribution": "attribute_pair"}
