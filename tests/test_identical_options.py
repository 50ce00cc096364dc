"""Order items whose options repeat the true caption: such an option is no negative, and an item with no negative
left is not counted, while ties between distinct captions stay wrong."""

import numpy as np
from conftest import TINY_WORDS
from datasets import Dataset, Features, List, Value
from datasets import Image as ImageFeature
from PIL import Image

from aro.metrics.scoring import accuracy_results, predict, score_items
from aro.models.tiny_clip import make_tiny_clip

OPTIONS = [
    ["a red circle above a blue square", "a blue circle above a red square", "a red square above a blue circle"],
    ["a red circle", "a red circle", "a circle red"],  # one option equals the true caption
    ["a a a", "a a a", "a a a"],  # no shuffle changes it: no negative at all
    ["a blue star", "a star blue", "blue a star"],
]


def order_dataset() -> Dataset:
    images = [
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))
        for seed in range(len(OPTIONS))
    ]
    features = Features({"image": ImageFeature(), "caption_options": List(Value("string"))})
    return Dataset.from_dict({"image": images, "caption_options": OPTIONS}, features=features)


def test_an_option_equal_to_the_true_caption_is_no_negative_and_an_item_without_negative_is_not_counted():
    model, processor = make_tiny_clip(TINY_WORDS, image_size=32, seed=0)
    result = score_items(model, processor, order_dataset())

    assert np.isnan(result.scores[1, 1]) and np.isnan(result.scores[2, 1:]).all()
    assert not np.isnan(result.scores[[0, 3]]).any() and not np.isnan(result.scores[:, 0]).any()
    assert result.identical_options == 2 and result.without_negative == [2]
    # Item 1 is decided by its one real negative, never by the copy of the true caption (which would tie it).
    assert result.predictions[1] == (0 if result.scores[1, 0] > result.scores[1, 2] else 2)
    predictions, references, groups = result.counted()
    assert len(predictions) == len(references) == 3 and groups is None
    assert predictions == [result.predictions[0], result.predictions[1], result.predictions[3]]
    assert accuracy_results(predictions, references)["num_items"] == 3


def test_ties_between_distinct_captions_stay_wrong_while_masked_options_are_ignored():
    scores = np.array([[0.5, np.nan, 0.2], [0.5, np.nan, 0.5], [0.5, 0.5, 0.1]])
    assert predict(scores) == [0, -1, -1]
