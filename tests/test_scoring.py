"""The scorer's handling of ties, bad input and long captions, and the reports of `evaluate_model` and `aro eval`.

Every model family against one pair at a time through its own forward: tests/test_adapters.py."""

import json

import numpy as np
import pytest
from conftest import TINY_WORDS, random_image
from datasets import Dataset, Features, Value
from datasets import Image as ImageFeature

from aro.cli import main
from aro.metrics.scoring import Scorer, predict, score_items
from aro.metrics.scoring.evaluation import evaluate_model
from aro.models.tiny_clip import make_tiny_clip

TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
CAPTIONS = [
    "a red circle",
    "a blue square",
    "a red circle to the left of a blue square",
    "a blue square to the left of a red circle",
]


@pytest.fixture(scope="module")
def vg_dataset():
    """A VG-shaped set: 10 items, images shared by pairs of items (as Order sets share them), captions repeated."""
    rows = {
        "image": [random_image(index // 2) for index in range(10)],
        "true_caption": [CAPTIONS[index % 4] for index in range(10)],
        "false_caption": [CAPTIONS[(index + 1) % 4] for index in range(10)],
        "relation_name": ["left of" if index % 2 else "on" for index in range(10)],
    }
    features = Features(
        {
            "image": ImageFeature(),
            "true_caption": Value("string"),
            "false_caption": Value("string"),
            "relation_name": Value("string"),
        }
    )
    return Dataset.from_dict(rows, features=features)


def clip_family():
    return make_tiny_clip(TINY_WORDS, image_size=32, seed=1)


def test_prediction_is_minus_one_on_a_tie():
    assert predict(np.array([[0.3, 0.3, 0.1], [0.5, 0.1, 0.5], [0.1, 0.4, 0.2]])) == [-1, -1, 1]


def test_models_without_two_towers_get_a_clear_error():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    with pytest.raises(ValueError, match="cannot be scored on ARO. Supported: dual encoders"):
        Scorer(CLIPVisionModel(CLIPVisionConfig(**TOWER, image_size=32, patch_size=8)), None)


def test_a_dataset_without_aro_columns_is_refused(vg_dataset):
    model, processor = clip_family()
    with pytest.raises(
        ValueError, match="needs `image` and either `caption_options` or `true_caption` and `false_caption`"
    ):
        score_items(model, processor, vg_dataset.remove_columns("false_caption"))


def test_a_corrupt_image_names_its_item(vg_dataset):
    model, processor = clip_family()
    broken = vg_dataset.cast_column("image", ImageFeature(decode=False)).to_list()
    broken[7]["image"] = {"bytes": b"garbage", "path": None}
    dataset = Dataset.from_list(broken, features=vg_dataset.features)
    with pytest.raises(ValueError, match="item 7: the image cannot be decoded"):
        score_items(model, processor, dataset)


def test_long_captions_are_truncated_and_counted(vg_dataset):
    model, processor = clip_family()
    long = " ".join(["a red circle"] * 20)
    dataset = vg_dataset.map(lambda row, index: {"true_caption": long} if index == 0 else {}, with_indices=True)
    assert score_items(model, processor, dataset).truncated_captions == 1


@pytest.fixture(scope="module")
def aro_folder(tmp_path_factory):
    """A built synthetic ARO (small) to evaluate on."""
    from aro.builders.synthetic import SyntheticSizes, build_synthetic_aro

    folder = tmp_path_factory.mktemp("synthetic") / "aro"
    build_synthetic_aro(
        folder,
        seed=0,
        sizes=SyntheticSizes(
            train_scenes=8, test_scenes=4, relation_per_relation=5, attribution_per_pair=1, order_captions=6
        ),
    )
    return folder


def test_evaluate_model_and_cli_write_json_table_plots_and_model_index(aro_folder, tmp_path, tiny_clip_dir, capsys):
    results = evaluate_model(str(tiny_clip_dir), str(aro_folder), "all")
    assert set(results.configs) == {"relation", "attribution", "coco_order", "flickr30k_order"}
    assert results.configs["relation"].num_items == 20 and results.image_processor == "CLIPImageProcessorPil"

    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_clip_dir),
                "--dataset",
                str(aro_folder),
                "--dataset-id",
                "org/aro",
                "--config",
                "relation,coco_order",
                "--num-workers",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| relation |" in printed and "| coco_order |" in printed
    saved = json.loads((out / "results.json").read_text())
    assert saved["configs"]["relation"] == results.to_json()["configs"]["relation"]  # whatever the entry point
    assert {"torch", "transformers", "datasets"} <= set(saved["versions"])
    assert (out / "relation.png").stat().st_size > 1000 and (out / "coco_order.png").exists()
    assert "model-index" in (out / "model-index.yaml").read_text()


def test_cli_names_unknown_configs(aro_folder, tiny_clip_dir, capsys):
    assert main(["eval", "--model", str(tiny_clip_dir), "--dataset", str(aro_folder), "--config", "vg_relation"]) == 2
    assert "unknown ARO config(s) ['vg_relation']" in capsys.readouterr().err
