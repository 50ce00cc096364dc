"""The protocol's constants pinned against the paper's code, not against themselves; each protocol's numbers on
exact ties against the rule of the harness it is named after; and image deduplication on the kind of images ARO has
(JPEG crops of one photograph)."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, Features, List, Value
from datasets import Image as ImageFeature
from PIL import Image

from aro.cli import main
from aro.core.protocol import EXCLUDED_RELATIONS, PROTOCOLS, accuracy_results, predict
from aro.metrics.scoring import Items

# A literal copy of the list `symmetric` in the authors' `notebooks/Replicate ARO! VG-Relation,
# VG-Attribution.ipynb` (mertyg/vision-language-models-are-bows), in their order.
PAPER_EXCLUDED_RELATIONS = [
    'adjusting', 'attached to', 'between', 'bigger than', 'biting', 'boarding', 'brushing', 'chewing', 'cleaning',
    'climbing', 'close to', 'coming from', 'coming out of', 'contain', 'crossing', 'dragging', 'draped over',
    'drinking', 'drinking from', 'driving', 'driving down', 'driving on', 'eating from', 'eating in', 'enclosing',
    'exiting', 'facing', 'filled with', 'floating in', 'floating on', 'flying', 'flying above', 'flying in',
    'flying over', 'flying through', 'full of', 'going down', 'going into', 'going through', 'grazing in', 'growing in',
    'growing on', 'guiding', 'hanging from', 'hanging in', 'hanging off', 'hanging over', 'higher than', 'holding onto',
    'hugging', 'in between', 'jumping off', 'jumping on', 'jumping over', 'kept in', 'larger than', 'leading',
    'leaning over', 'leaving', 'licking', 'longer than', 'looking in', 'looking into', 'looking out', 'looking over',
    'looking through', 'lying next to', 'lying on top of', 'making', 'mixed with', 'mounted on', 'moving',
    'on the back of', 'on the edge of', 'on the front of', 'on the other side of', 'opening', 'painted on', 'parked at',
    'parked beside', 'parked by', 'parked in', 'parked in front of', 'parked near', 'parked next to', 'perched on',
    'petting', 'piled on', 'playing', 'playing in', 'playing on', 'playing with', 'pouring', 'reaching for', 'reading',
    'reflected on', 'riding on', 'running in', 'running on', 'running through', 'seen through', 'sitting behind',
    'sitting beside', 'sitting by', 'sitting in front of', 'sitting near', 'sitting next to', 'sitting under',
    'skiing down', 'skiing on', 'sleeping in', 'sleeping on', 'smiling at', 'sniffing', 'splashing', 'sprinkled on',
    'stacked on', 'standing against', 'standing around', 'standing behind', 'standing beside', 'standing in front of',
    'standing near', 'standing next to', 'staring at', 'stuck in', 'surrounding', 'swimming in', 'swinging',
    'talking to', 'topped with', 'touching', 'traveling down', 'traveling on', 'tying', 'typing on', 'underneath',
    'wading in', 'waiting for', 'walking across', 'walking by', 'walking down', 'walking next to', 'walking through',
    'working in', 'working on', 'worn on', 'wrapped around', 'wrapped in', 'by', 'of', 'near', 'next to', 'with',
    'beside', 'on the side of', 'around',
]  # fmt: skip


def test_excluded_relations_are_the_papers_157():
    assert len(PAPER_EXCLUDED_RELATIONS) == len(set(PAPER_EXCLUDED_RELATIONS)) == 157
    assert EXCLUDED_RELATIONS == set(PAPER_EXCLUDED_RELATIONS)


def test_every_excluded_relation_leaves_the_macro_accuracy_and_others_stay():
    groups = PAPER_EXCLUDED_RELATIONS + ["on", "holding", "sitting on"]
    results = accuracy_results([1] * 157 + [0, 0, 0], [0] * 160, groups=groups, config="relation")
    assert results["macro_accuracy"] == 1.0  # every excluded relation (all wrong here) is out, the three kept are in
    assert sum(row["in_macro"] for row in results["per_group"]) == 3


def test_attribute_pairs_of_24_items_are_out_and_of_25_in():
    # As `if attr_mask.sum() < 25: continue` in the authors' VG_Attribution.evaluate_scores.
    groups = ["white_paved"] * 25 + ["red_blue"] * 24
    results = accuracy_results([0] * 25 + [1] * 24, [0] * 49, groups=groups, config="attribution")
    assert {row["group"]: row["in_macro"] for row in results["per_group"]} == {"white_paved": True, "red_blue": False}
    assert results["macro_accuracy"] == 1.0


def jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_jpeg_crops_of_one_photograph_stay_distinct_images():
    photo = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    left, right = jpeg(photo[:, :48]), jpeg(photo[:, 48:])
    header = 600
    assert left[:header] == right[:header] and left != right  # same size and quality: the same headers
    images = [{"bytes": left, "path": None}, {"bytes": right, "path": None}, {"bytes": left, "path": None}]
    dataset = Dataset.from_dict(
        {"image": images, "true_caption": ["a", "b", "c"], "false_caption": ["b", "a", "d"]},
        features=Features({"image": ImageFeature(), "true_caption": Value("string"), "false_caption": Value("string")}),
    )
    items = Items.from_dataset(dataset)
    assert items.image_rows == [0, 1] and items.image_of_item == [0, 1, 0]


# Each protocol on exact ties, through `aro eval`, against the harness's own rule --------------------------------------

# Captions and the score a user's scorer gives each: two relation items tie exactly, one is right, one wrong; the
# first Order item ties its true caption with one shuffle, the second is right.
SCORES = {
    "a dog on a couch": 0.5,
    "a couch on a dog": 0.5,
    "a cup near a plate": 0.5,
    "a plate near a cup": 0.5,
    "a man holding a cup": 0.9,
    "a cup holding a man": 0.1,
    "a cat next to a box": 0.2,
    "a box next to a cat": 0.8,
    "a red circle above a blue square": 0.7,
    "circle a red above square blue a": 0.7,
    "a blue circle above a red square": 0.1,
    "above a red circle a blue square": 0.3,
    "square a blue above circle red a": 0.2,
    "a green star below a yellow circle": 0.9,
    "star a green below circle yellow a": 0.1,
    "a yellow star below a green circle": 0.2,
    "below a green star a yellow circle": 0.3,
    "circle a yellow below star green a": 0.4,
}
TIE_SCORER = (
    f"SCORES = {SCORES!r}\n\n\ndef score(images, captions):\n    return [SCORES[caption] for caption in captions]\n"
)
RELATION = [
    ("a dog on a couch", "a couch on a dog", "on"),
    ("a cup near a plate", "a plate near a cup", "on"),
    ("a man holding a cup", "a cup holding a man", "holding"),
    ("a cat next to a box", "a box next to a cat", "next to"),  # one of the paper's excluded relations
]
ORDER = [list(SCORES)[8:13], list(SCORES)[13:]]
# paper: ties wrong, `next to` out of the macro; none: every relation in; clip_benchmark: ties wrong, micro first;
# mteb: ties right (argmax), micro first. Macro accuracy over (on, holding[, next to]).
EXPECTED = {
    "paper": {"relation": (1 / 4, (0 + 1) / 2, "macro_accuracy"), "coco_order": (1 / 2, None, "accuracy")},
    "none": {"relation": (1 / 4, (0 + 1 + 0) / 3, "macro_accuracy"), "coco_order": (1 / 2, None, "accuracy")},
    "clip_benchmark": {"relation": (1 / 4, (0 + 1 + 0) / 3, "accuracy"), "coco_order": (1 / 2, None, "accuracy")},
    "mteb": {"relation": (3 / 4, (1 + 1 + 0) / 3, "accuracy"), "coco_order": (1.0, None, "accuracy")},
}


def clip_benchmark_text_accuracy(scores: np.ndarray) -> float:
    """CLIP_benchmark's `image_caption_selection.evaluate` (branch `compositionality_tasks`) for one image and K
    captions, the first true: an item is right when `pos_scores.min() > neg_scores.max()`; `text_acc` is the mean."""
    return float(np.mean([row[:1].min() > row[1:].max() for row in scores]))


def mteb_accuracy(scores: np.ndarray) -> float:
    """mteb's ARO tasks: the argmax over the captions, right when it is the first (the true caption)."""
    return float(np.mean(scores.argmax(axis=1) == 0))


@pytest.fixture(scope="module")
def tied_folder(tmp_path_factory) -> Path:
    """A relation and a coco_order config whose scorer gives the exact scores of SCORES (ties included)."""
    folder = tmp_path_factory.mktemp("tied") / "aro"
    image = Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8))
    configs = {
        "relation": Dataset.from_dict(
            {
                "image": [image] * len(RELATION),
                "true_caption": [true for true, _, _ in RELATION],
                "false_caption": [false for _, false, _ in RELATION],
                "relation_name": [group for _, _, group in RELATION],
            },
            features=Features(
                {
                    "image": ImageFeature(),
                    "true_caption": Value("string"),
                    "false_caption": Value("string"),
                    "relation_name": Value("string"),
                }
            ),
        ),
        "coco_order": Dataset.from_dict(
            {"image": [image] * len(ORDER), "caption_options": ORDER},
            features=Features({"image": ImageFeature(), "caption_options": List(Value("string"))}),
        ),
    }
    card = "---\nconfigs:\n"
    for name, data in configs.items():
        (folder / name).mkdir(parents=True)
        data.to_parquet(folder / name / "test.parquet")
        card += f"- config_name: {name}\n  data_files:\n  - split: test\n    path: {name}/test.parquet\n"
    (folder / "README.md").write_text(card + "---\n")
    (folder.parent / "tie_scorer.py").write_text(TIE_SCORER)
    return folder


def test_the_harness_rules_on_exact_ties():
    relation = np.array([[SCORES[true], SCORES[false]] for true, false, _ in RELATION])
    order = np.array([[SCORES[caption] for caption in options] for options in ORDER])
    for protocol in ("clip_benchmark", "mteb"):
        harness = clip_benchmark_text_accuracy if protocol == "clip_benchmark" else mteb_accuracy
        for config, scores in (("relation", relation), ("coco_order", order)):
            ours = accuracy_results(predict(scores, protocol), [0] * len(scores), protocol=protocol)["accuracy"]
            assert ours == harness(scores) == EXPECTED[protocol][config][0]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_protocol_on_exact_ties_through_aro_eval(protocol, tied_folder, tmp_path):
    out = tmp_path / "eval"
    scorer = f"{tied_folder.parent / 'tie_scorer.py'}:score"
    argv = ["eval", "--scorer", scorer, "--dataset", str(tied_folder), "--config", "relation,coco_order"]
    assert main([*argv, "--protocol", protocol, "--bootstrap", "0", "--num-workers", "0", "--out", str(out)]) == 0
    configs = json.loads((out / "results.json").read_text())["configs"]
    for config, (accuracy, macro, headline) in EXPECTED[protocol].items():
        numbers = configs[config]
        assert (numbers["accuracy"], numbers["macro_accuracy"], numbers["headline"]) == (accuracy, macro, headline)
