"""The synthetic world draws what its captions say, and builds into loadable, reproducible ARO configs."""

import random

import numpy as np
import pytest

from aro.builders import synthetic
from aro.builders.synthetic import COLOURS, RELATIONS, USUAL_COLOURS, draw_scene


def colour_centroid(image, colour: str) -> tuple[float, float]:
    """Mean (x, y) of the pixels that have exactly `colour`'s RGB value."""
    pixels = np.asarray(image)
    ys, xs = np.nonzero((pixels == np.array(COLOURS[colour], dtype=np.uint8)).all(axis=-1))
    assert len(xs) > 20, f"{colour} is not drawn"
    return xs.mean(), ys.mean()


@pytest.mark.parametrize("index", range(40))
def test_relation_caption_matches_the_pixels(index):
    scene = draw_scene(random.Random(f"test:{index}"))
    words = scene.relation_caption().split()
    # "a <colour> <shape> <relation words> a <colour> <shape>": read both colours back from the caption.
    subject_colour, object_colour = words[1], words[-2]
    assert {subject_colour, object_colour} <= set(COLOURS)
    (subject_x, subject_y), (object_x, object_y) = (
        colour_centroid(scene.image, subject_colour),
        colour_centroid(scene.image, object_colour),
    )
    expected = {
        "to the left of": subject_x < object_x,
        "to the right of": subject_x > object_x,
        "above": subject_y < object_y,
        "below": subject_y > object_y,
    }
    assert expected[scene.relation]
    assert len(scene.image.getcolors()) == 3  # the background and two flat-coloured objects: nothing blended


def test_swapped_captions_differ_and_keep_the_words():
    for index in range(50):
        scene = draw_scene(random.Random(index))
        for caption in (scene.relation_caption, scene.attribute_caption):
            true, false = caption(), caption(swapped=True)
            assert true != false
            assert sorted(true.split()) == sorted(false.split())


def test_attribute_caption_binds_colour_to_shape_as_drawn():
    scene = draw_scene(random.Random(7), colours=("red", "blue"))
    assert scene.attribute_caption() == f"a red {scene.subject.shape} and a blue {scene.object.shape}"
    assert scene.attribute_caption(swapped=True) == f"a blue {scene.subject.shape} and a red {scene.object.shape}"


def test_every_shape_is_drawn_in_one_of_its_usual_colours():
    drawn = [draw_scene(random.Random(index)) for index in range(100)]
    drawn += [
        draw_scene(random.Random(0), colours=(first, second))
        for first in COLOURS
        for second in COLOURS
        if first != second
    ]
    for scene in drawn:
        for thing in (scene.subject, scene.object):
            assert thing.colour in USUAL_COLOURS[thing.shape], thing


def test_a_scene_with_its_colours_swapped_is_never_a_scene_of_the_world():
    for index in range(200):
        scene = draw_scene(random.Random(index))
        assert synthetic.usual_pairs(scene.attribute_caption()) == 2
        assert synthetic.usual_pairs(scene.attribute_caption(swapped=True)) < 2


def test_draw_scene_honours_its_constraints():
    for relation in RELATIONS:
        scene = draw_scene(random.Random(relation), relation=relation, colours=("green", "black"))
        assert (scene.relation, scene.subject.colour, scene.object.colour) == (relation, "green", "black")


def test_scenes_are_reproducible_per_seed():
    first = [np.asarray(scene.image) for _, scene in synthetic.scenes(seed=3, split="train", count=5)]
    again = [np.asarray(scene.image) for _, scene in synthetic.scenes(seed=3, split="train", count=5)]
    other = [np.asarray(scene.image) for _, scene in synthetic.scenes(seed=4, split="train", count=5)]
    assert all((a == b).all() for a, b in zip(first, again))
    assert not all((a == b).all() for a, b in zip(first, other))


def test_every_caption_word_is_in_the_world_vocabulary():
    vocabulary = set(synthetic.world_words())
    for _, scene in synthetic.scenes(seed=0, split="train", count=30):
        for caption in scene.captions() + [scene.relation_caption(swapped=True), scene.attribute_caption(swapped=True)]:
            assert set(caption.split()) <= vocabulary


TINY = synthetic.SyntheticSizes(
    train_scenes=6, test_scenes=3, relation_per_relation=2, attribution_per_pair=1, order_captions=5
)


def test_build_writes_the_aro_schema_and_two_builds_with_one_seed_are_identical(tmp_path, spacy_nlp):
    import hashlib

    from datasets import load_dataset

    from aro.core.contract import ARO_CONFIGS, RETRIEVAL_CONFIGS, config_features

    def digest(folder):
        return {
            path.name + path.parent.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*.parquet"))
        }

    counts = synthetic.build_synthetic_aro(
        tmp_path / "one", seed=5, sizes=TINY, spacy_pipeline=spacy_nlp.meta["lang"] + "_" + spacy_nlp.meta["name"]
    )
    assert (
        counts[("relation", "test")] == 8
        and counts[("attribution", "test")] == 56
        and counts[("scenes", "train")] == 18
    )
    synthetic.build_synthetic_aro(tmp_path / "two", seed=5, sizes=TINY)
    synthetic.build_synthetic_aro(tmp_path / "other", seed=6, sizes=TINY)
    assert digest(tmp_path / "one") == digest(tmp_path / "two") != digest(tmp_path / "other")

    # Every ARO config, and the held-out scenes as COCO's retrieval config (no second retrieval set: one world).
    built = [config for config, _ in counts if config in ARO_CONFIGS + RETRIEVAL_CONFIGS]
    assert built == ["relation", "attribution", "coco_order", "flickr30k_order", "coco_retrieval"]
    for config in built:
        loaded = load_dataset(str(tmp_path / "one"), config, split="test")
        assert loaded.features == config_features(config)
    retrieval = load_dataset(str(tmp_path / "one"), "coco_retrieval", split="test")
    assert retrieval["image_id"] == load_dataset(str(tmp_path / "one"), "scenes", split="test").unique("image_id")
    order = load_dataset(str(tmp_path / "one"), "coco_order", split="test")
    assert all(
        sorted(option.split()) == sorted(row["caption_options"][0].split())
        for row in order
        for option in row["caption_options"]
    )
    scenes = load_dataset(str(tmp_path / "one"), "scenes")
    assert set(scenes) == {"train", "test"} and scenes["train"][0]["image"].size == (64, 64)


def test_a_folder_rebuilt_in_place_is_read_afresh(tmp_path):
    from aro.metrics.scoring import load_split

    folder = tmp_path / "data"
    synthetic.build_synthetic_aro(folder, sizes=TINY)
    assert len(load_split(str(folder), "scenes", "train")) == 18
    synthetic.build_synthetic_aro(
        folder,
        sizes=synthetic.SyntheticSizes(
            train_scenes=4, test_scenes=1, relation_per_relation=1, attribution_per_pair=1, order_captions=1
        ),
        overwrite=True,
    )
    assert len(load_split(str(folder), "scenes", "train")) == 12
