"""The protocol's constants pinned against the paper's code, not against themselves, and image deduplication on
the kind of images ARO has (JPEG crops of one photograph)."""

import io

import numpy as np
from datasets import Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from aro.core.protocol import EXCLUDED_RELATIONS, accuracy_results
from aro.metrics.scoring import Items

# A literal copy of the list `symmetric` in the authors' `notebooks/Replicate ARO! VG-Relation,
# VG-Attribution.ipynb` (mertyg/vision-language-models-are-bows), in their order.
PAPER_EXCLUDED_RELATIONS = [
    'adjusting', 'attached to', 'between', 'bigger than', 'biting', 'boarding', 'brushing', 'chewing', 'cleaning', 'climbing',
    'close to', 'coming from', 'coming out of', 'contain', 'crossing', 'dragging', 'draped over', 'drinking', 'drinking from',
    'driving', 'driving down', 'driving on', 'eating from', 'eating in', 'enclosing', 'exiting', 'facing', 'filled with',
    'floating in', 'floating on', 'flying', 'flying above', 'flying in', 'flying over', 'flying through', 'full of', 'going down',
    'going into', 'going through', 'grazing in', 'growing in', 'growing on', 'guiding', 'hanging from', 'hanging in', 'hanging off',
    'hanging over', 'higher than', 'holding onto', 'hugging', 'in between', 'jumping off', 'jumping on', 'jumping over', 'kept in',
    'larger than', 'leading', 'leaning over', 'leaving', 'licking', 'longer than', 'looking in', 'looking into', 'looking out',
    'looking over', 'looking through', 'lying next to', 'lying on top of', 'making', 'mixed with', 'mounted on', 'moving',
    'on the back of', 'on the edge of', 'on the front of', 'on the other side of', 'opening', 'painted on', 'parked at',
    'parked beside', 'parked by', 'parked in', 'parked in front of', 'parked near', 'parked next to', 'perched on', 'petting',
    'piled on', 'playing', 'playing in', 'playing on', 'playing with', 'pouring', 'reaching for', 'reading', 'reflected on',
    'riding on', 'running in', 'running on', 'running through', 'seen through', 'sitting behind', 'sitting beside', 'sitting by',
    'sitting in front of', 'sitting near', 'sitting next to', 'sitting under', 'skiing down', 'skiing on', 'sleeping in',
    'sleeping on', 'smiling at', 'sniffing', 'splashing', 'sprinkled on', 'stacked on', 'standing against', 'standing around',
    'standing behind', 'standing beside', 'standing in front of', 'standing near', 'standing next to', 'staring at', 'stuck in',
    'surrounding', 'swimming in', 'swinging', 'talking to', 'topped with', 'touching', 'traveling down', 'traveling on', 'tying',
    'typing on', 'underneath', 'wading in', 'waiting for', 'walking across', 'walking by', 'walking down', 'walking next to',
    'walking through', 'working in', 'working on', 'worn on', 'wrapped around', 'wrapped in', 'by', 'of', 'near', 'next to', 'with',
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
