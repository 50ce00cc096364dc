"""`aro demo --quick` end to end: every output exists and loads, and NegCLIP beats CLIP and CLIP-FT on relation and attribution."""

import json

import pytest
from datasets import load_dataset
from PIL import Image
from transformers import AutoModel, CLIPModel

from aro.cli import main
from aro.models.negclip import NegCLIPModel

# The quick demo on seeds 0, 1 and 2 (`aro demo --quick --seed N`), NegCLIP minus CLIP and minus CLIP-FT (CLIP
# fine-tuned for as long without hard negatives): relation +0.350, +0.440, +0.350 and +0.355, +0.445, +0.450;
# attribution +0.475, +0.485, +0.436 and +0.495, +0.461, +0.435. The test runs seed 0; its bounds sit below half
# the smallest gains.
RELATION_MARGIN = 0.15
ATTRIBUTION_MARGIN = 0.20
RETRIEVAL_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["demo", "--quick", "--seed", "0", "--out", str(out)]) == 0
    return out


def test_every_output_exists_and_loads(demo):
    results = json.loads((demo / "results.json").read_text())
    assert list(results["models"]) == ["CLIP", "CLIP-FT", "NegCLIP"]
    # The demo ran in a staging folder; what it recorded names the folder it was moved to.
    assert results["models"]["NegCLIP"]["path"] == str(demo.resolve() / "models" / "negclip")
    negclip_args = json.loads((demo / "models" / "negclip" / "training_args.json").read_text())
    assert negclip_args["model_name_or_path"] == str(demo.resolve() / "models" / "clip")
    assert Image.open(demo / "clip_vs_negclip.png").size[0] > 500
    assert "config_name: relation" in (demo / "dataset_card.md").read_text()
    for config in ("relation", "attribution", "coco_order", "flickr30k_order"):
        assert len(load_dataset(str(demo / "data"), config, split="test")) > 0
    for name in ("clip", "clip-ft", "negclip"):
        folder = demo / "models" / name
        assert isinstance(AutoModel.from_pretrained(folder), NegCLIPModel)
        assert isinstance(CLIPModel.from_pretrained(folder), CLIPModel)
        card = (folder / "README.md").read_text()
        assert "model-index" in card and "relation accuracy" in card
        assert ("Hard negatives teach" in card) == (name == "negclip")  # each card's limitations fit its training
        assert (demo / "eval" / name / "results.json").exists()


def test_negclip_beats_clip_and_its_control_on_relations_and_attribution_and_keeps_retrieval(demo):
    models = json.loads((demo / "results.json").read_text())["models"]
    clip, control, negclip = models["CLIP"], models["CLIP-FT"], models["NegCLIP"]
    for config, margin in (("relation", RELATION_MARGIN), ("attribution", ATTRIBUTION_MARGIN)):
        assert negclip["aro"][config] - clip["aro"][config] >= margin, config
        # The gain comes from the hard negatives, not from NegCLIP's extra epochs.
        assert negclip["aro"][config] - control["aro"][config] >= margin, config
    assert negclip["retrieval"]["text_to_image_recall@1"] >= clip["retrieval"]["text_to_image_recall@1"] - RETRIEVAL_TOLERANCE
    # Trained from scratch on this world, CLIP retrieves its captions far above chance (1 in 200 scenes; scenes that
    # share a caption cap a perfect model at about 0.6).
    assert clip["retrieval"]["text_to_image_recall@1"] > 0.2


def test_attribution_breakdown_by_usual_pairs_adds_up_to_attribution(demo):
    results = json.loads((demo / "results.json").read_text())
    items = results["attribution_items_by_usual_pairs_in_swap"]
    assert set(items) == {"0", "1"}  # a swap with two usual pairs would be a scene of the world, and none is
    assert sum(items.values()) == results["rows"]["attribution/test"]
    for numbers in results["models"].values():
        by_usual = numbers["attribution_by_usual_pairs_in_swap"]
        weighted = sum(by_usual[usual] * count for usual, count in items.items()) / sum(items.values())
        assert weighted == pytest.approx(numbers["aro"]["attribution"])


def test_an_existing_demo_folder_is_not_overwritten_silently(demo, capsys):
    assert main(["demo", "--quick", "--out", str(demo)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_failed_demo_leaves_the_existing_folder_as_it_was(demo, capsys):
    before = {path: path.stat().st_mtime_ns for path in demo.rglob("*")}
    argv = ["demo", "--quick", "--out", str(demo), "--overwrite", "--spacy-pipeline", "no_such_pipeline"]
    assert main(argv) == 2
    assert "no_such_pipeline" in capsys.readouterr().err
    assert {path: path.stat().st_mtime_ns for path in demo.rglob("*")} == before
    assert [path.name for path in demo.parent.iterdir()] == [demo.name]  # no staging folder left behind
