"""The evaluation protocols for ARO: which groups count towards macro accuracy, how ties count, which number leads.
Each protocol is named after the code whose numbers it reproduces.

- `paper`, the ARO paper's protocol (the default):
  - VG-Relation: macro accuracy over relations, without the 157 relations the authors exclude.
  - VG-Attribution: macro accuracy over attribute pairs with at least 25 items.
  - COCO-Order and Flickr30k-Order: plain (micro) accuracy over items (no groups).
  - Ties are wrong: an item is right only when the true caption scores strictly above every other option.
- `none`: the paper's protocol without its exclusions (every group enters the macro accuracy).
- `clip_benchmark`: the rule of CLIP_benchmark's ARO (its `compositionality_tasks` branch,
  `metrics/image_caption_selection.py`): an item is right when its true caption scores strictly above every other
  option (`pos.min() > neg.max()`), so ties are wrong; nothing is excluded; micro accuracy (its `text_acc`) is the
  headline.
- `mteb`: the rule of mteb's ARO tasks (AROVisualRelation, AROVisualAttribution, AROCocoOrder, AROFlickrOrder): the
  prediction is an argmax, which on a tie returns the first option, the true caption, so ties that involve the true
  caption are right; nothing is excluded; micro accuracy is the headline.

This file needs only numpy and the contract beside it: the `aro_accuracy` evaluate module (published as a Space)
carries both as they are, and computes its results with `accuracy_results`, as the scoring library does.

>>> groups = ["on", "on", "holding", "holding"]
>>> accuracy_results([0, 1, 0, -1], [0, 0, 0, 0], groups=groups, config="relation")["macro_accuracy"]
0.5
>>> tied = np.array([[0.3, 0.3], [0.1, 0.2]])
>>> predict(tied, protocol="mteb"), predict(tied, protocol="clip_benchmark"), predict(tied)
([0, 1], [-1, 1], [-1, 1])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import CHOICE_CONFIGS

MIN_ATTRIBUTE_PAIR_ITEMS = 25


@dataclass(frozen=True)
class Protocol:
    """How one harness turns scores into accuracies."""

    name: str
    exclusions: bool  # the paper's excluded relations and small attribute pairs stay out of the macro accuracy
    ties_right: bool  # an argmax: a tie between the true caption and another option counts as right
    headline: str  # "macro_accuracy" (where a config has groups) or "accuracy" (micro)


PROTOCOLS = {
    "paper": Protocol("paper", exclusions=True, ties_right=False, headline="macro_accuracy"),
    "none": Protocol("none", exclusions=False, ties_right=False, headline="macro_accuracy"),
    "clip_benchmark": Protocol("clip_benchmark", exclusions=False, ties_right=False, headline="accuracy"),
    "mteb": Protocol("mteb", exclusions=False, ties_right=True, headline="accuracy"),
}

# The 157 relations that the authors' replication notebook (`notebooks/Replicate ARO! VG-Relation,
# VG-Attribution.ipynb`, list `symmetric`) leaves out of VG-Relation's macro accuracy: for these, swapping subject
# and object need not make the caption false ("a cup next to a plate").
EXCLUDED_RELATIONS = frozenset(
    [
        "adjusting",
        "attached to",
        "between",
        "bigger than",
        "biting",
        "boarding",
        "brushing",
        "chewing",
        "cleaning",
        "climbing",
        "close to",
        "coming from",
        "coming out of",
        "contain",
        "crossing",
        "dragging",
        "draped over",
        "drinking",
        "drinking from",
        "driving",
        "driving down",
        "driving on",
        "eating from",
        "eating in",
        "enclosing",
        "exiting",
        "facing",
        "filled with",
        "floating in",
        "floating on",
        "flying",
        "flying above",
        "flying in",
        "flying over",
        "flying through",
        "full of",
        "going down",
        "going into",
        "going through",
        "grazing in",
        "growing in",
        "growing on",
        "guiding",
        "hanging from",
        "hanging in",
        "hanging off",
        "hanging over",
        "higher than",
        "holding onto",
        "hugging",
        "in between",
        "jumping off",
        "jumping on",
        "jumping over",
        "kept in",
        "larger than",
        "leading",
        "leaning over",
        "leaving",
        "licking",
        "longer than",
        "looking in",
        "looking into",
        "looking out",
        "looking over",
        "looking through",
        "lying next to",
        "lying on top of",
        "making",
        "mixed with",
        "mounted on",
        "moving",
        "on the back of",
        "on the edge of",
        "on the front of",
        "on the other side of",
        "opening",
        "painted on",
        "parked at",
        "parked beside",
        "parked by",
        "parked in",
        "parked in front of",
        "parked near",
        "parked next to",
        "perched on",
        "petting",
        "piled on",
        "playing",
        "playing in",
        "playing on",
        "playing with",
        "pouring",
        "reaching for",
        "reading",
        "reflected on",
        "riding on",
        "running in",
        "running on",
        "running through",
        "seen through",
        "sitting behind",
        "sitting beside",
        "sitting by",
        "sitting in front of",
        "sitting near",
        "sitting next to",
        "sitting under",
        "skiing down",
        "skiing on",
        "sleeping in",
        "sleeping on",
        "smiling at",
        "sniffing",
        "splashing",
        "sprinkled on",
        "stacked on",
        "standing against",
        "standing around",
        "standing behind",
        "standing beside",
        "standing in front of",
        "standing near",
        "standing next to",
        "staring at",
        "stuck in",
        "surrounding",
        "swimming in",
        "swinging",
        "talking to",
        "topped with",
        "touching",
        "traveling down",
        "traveling on",
        "tying",
        "typing on",
        "underneath",
        "wading in",
        "waiting for",
        "walking across",
        "walking by",
        "walking down",
        "walking next to",
        "walking through",
        "working in",
        "working on",
        "worn on",
        "wrapped around",
        "wrapped in",
        "by",
        "of",
        "near",
        "next to",
        "with",
        "beside",
        "on the side of",
        "around",
    ]
)


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, not {name!r}")
    return PROTOCOLS[name]


def predict(scores: np.ndarray, protocol: str = "paper") -> list[int]:
    """The chosen option of each row of an [N, K] score array.

    Under a ties-wrong protocol (`paper`, `none`, `clip_benchmark`), the index of the strictly highest score, or -1
    where the highest score is shared; under `mteb`, the argmax (the first of the tied options). NaN marks an option
    that is not a candidate (its text is the true caption's): it is ignored.
    """
    scores = np.asarray(scores, dtype=float)
    with np.errstate(invalid="ignore"):
        best = np.nanmax(scores, axis=1, keepdims=True)
    winners = scores == best  # NaN equals nothing
    if get_protocol(protocol).ties_right:
        return [int(row.argmax()) for row in winners]
    return [int(row.argmax()) if row.sum() == 1 else -1 for row in winners]


def counts_towards_macro(config: str | None, group: str, size: int, protocol: str = "paper") -> bool:
    """Whether a group of `size` items enters the macro average of `config` under `protocol`."""
    if not get_protocol(protocol).exclusions:
        return True
    if config == "relation":
        return group not in EXCLUDED_RELATIONS
    if config == "attribution":
        return size >= MIN_ATTRIBUTE_PAIR_ITEMS
    return True


def accuracy_results(predictions, references, groups=None, config: str | None = None, protocol: str = "paper") -> dict:
    """Micro accuracy over items, macro accuracy over the groups `protocol` keeps, and a per-group table.

    `headline` names the number the protocol reports first: the macro accuracy where the config has groups (`paper`,
    `none`), else the micro `accuracy`. A prediction of -1 is a tie and never equals a reference, so ties count as
    wrong; under `mteb` the predictions are argmaxes (see `predict`), which have no -1.
    """
    rules = get_protocol(protocol)
    if config is not None and config not in CHOICE_CONFIGS:
        raise ValueError(f"config must be one of {CHOICE_CONFIGS}, not {config!r}")
    predictions, references = np.asarray(predictions), np.asarray(references)
    if predictions.shape != references.shape:
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    correct = predictions == references
    results = {
        "accuracy": float(correct.mean()) if len(correct) else float("nan"),
        "num_items": int(len(correct)),
        "num_ties": int((predictions == -1).sum()),
        "macro_accuracy": None,
        "headline": "accuracy",
        "per_group": [],
    }
    if groups is None:
        return results
    groups = np.asarray(groups)
    if len(groups) != len(correct):
        raise ValueError(f"{len(groups)} groups but {len(correct)} predictions")
    for group in sorted(set(groups.tolist())):
        members = groups == group
        size = int(members.sum())
        results["per_group"].append(
            {
                "group": group,
                "accuracy": float(correct[members].mean()),
                "count": size,
                "in_macro": counts_towards_macro(config, group, size, protocol),
            }
        )
    kept = [row["accuracy"] for row in results["per_group"] if row["in_macro"]]
    results["macro_accuracy"] = float(np.mean(kept)) if kept else None
    if results["macro_accuracy"] is not None:
        results["headline"] = rules.headline
    return results
