"""The paper's evaluation protocol for ARO: which groups count towards macro accuracy, and how ties count.

- VG-Relation: macro accuracy over relations, without the 157 relations the authors exclude.
- VG-Attribution: macro accuracy over attribute pairs with at least 25 items.
- COCO-Order and Flickr30k-Order: plain accuracy over items (no groups).
- Ties are wrong: an item is right only when the true caption scores strictly above every other option.
"""

from __future__ import annotations

MIN_ATTRIBUTE_PAIR_ITEMS = 25
PROTOCOLS = ("paper", "none")
CONFIGS = ("relation", "attribution", "coco_order", "flickr30k_order")

# The 157 relations that the authors' replication notebook (`notebooks/Replicate ARO! VG-Relation,
# VG-Attribution.ipynb`, list `symmetric`) leaves out of VG-Relation's macro accuracy: for these, swapping subject
# and object need not make the caption false ("a cup next to a plate").
EXCLUDED_RELATIONS = frozenset(
    [
        "adjusting", "attached to", "between", "bigger than", "biting", "boarding", "brushing", "chewing",
        "cleaning", "climbing", "close to", "coming from", "coming out of", "contain", "crossing", "dragging",
        "draped over", "drinking", "drinking from", "driving", "driving down", "driving on", "eating from",
        "eating in", "enclosing", "exiting", "facing", "filled with", "floating in", "floating on", "flying",
        "flying above", "flying in", "flying over", "flying through", "full of", "going down", "going into",
        "going through", "grazing in", "growing in", "growing on", "guiding", "hanging from", "hanging in",
        "hanging off", "hanging over", "higher than", "holding onto", "hugging", "in between", "jumping off",
        "jumping on", "jumping over", "kept in", "larger than", "leading", "leaning over", "leaving",
        "licking", "longer than", "looking in", "looking into", "looking out", "looking over",
        "looking through", "lying next to", "lying on top of", "making", "mixed with", "mounted on", "moving",
        "on the back of", "on the edge of", "on the front of", "on the other side of", "opening",
        "painted on", "parked at", "parked beside", "parked by", "parked in", "parked in front of",
        "parked near", "parked next to", "perched on", "petting", "piled on", "playing", "playing in",
        "playing on", "playing with", "pouring", "reaching for", "reading", "reflected on", "riding on",
        "running in", "running on", "running through", "seen through", "sitting behind", "sitting beside",
        "sitting by", "sitting in front of", "sitting near", "sitting next to", "sitting under",
        "skiing down", "skiing on", "sleeping in", "sleeping on", "smiling at", "sniffing", "splashing",
        "sprinkled on", "stacked on", "standing against", "standing around", "standing behind",
        "standing beside", "standing in front of", "standing near", "standing next to", "staring at",
        "stuck in", "surrounding", "swimming in", "swinging", "talking to", "topped with", "touching",
        "traveling down", "traveling on", "tying", "typing on", "underneath", "wading in", "waiting for",
        "walking across", "walking by", "walking down", "walking next to", "walking through", "working in",
        "working on", "worn on", "wrapped around", "wrapped in", "by", "of", "near", "next to", "with",
        "beside", "on the side of", "around",
    ]
)


def counts_towards_macro(config: str | None, group: str, size: int, protocol: str = "paper") -> bool:
    """Whether a group of `size` items enters the macro average of `config` under `protocol`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    if protocol == "none":
        return True
    if config == "relation":
        return group not in EXCLUDED_RELATIONS
    if config == "attribution":
        return size >= MIN_ATTRIBUTE_PAIR_ITEMS
    return True
