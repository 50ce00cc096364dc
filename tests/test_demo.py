"""`aro demo --quick` end to end: every output exists and loads, and NegCLIP beats CLIP and CLIP-FT on relation
and attribution."""

import json
import os
import time
from pathlib import Path

import pytest
from datasets import load_dataset
from PIL import Image
from transformers import AutoModel, CLIPModel

from aro.builders.synthetic import usual_pairs
from aro.cli import main
from aro.cli.demo import Timeline, _in_second_process
from aro.core.errors import AroError
from aro.metrics.scoring import load_model, load_split, score_items
from aro.models.negclip import NegCLIPModel
from aro.models.negclip.training import NegCLIPTrainingArguments, train

# The quick demo on seeds 0, 1 and 2 (`benchmarks/bench_demo.py`, 2026-12-03), NegCLIP minus CLIP and minus CLIP-FT
# (CLIP fine-tuned for as long without hard negatives): relation +0.375, +0.430, +0.435 and +0.460, +0.415, +0.445;
# attribution +0.403, +0.479, +0.494 and +0.401, +0.517, +0.465; NegCLIP itself 0.905-0.935 on relation and 1.000
# on attribution. The test runs seed 0; its bounds sit 0.125 or more below every seed's figures, for machines whose
# sums run in another order.
RELATION_MARGIN = 0.25
ATTRIBUTION_MARGIN = 0.25
NEGCLIP_RELATION, NEGCLIP_ATTRIBUTION = 0.78, 0.95
RETRIEVAL_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["demo", "--quick", "--seed", "0", "--out", str(out)]) == 0
    return out


def test_every_output_exists_and_loads(demo):
    results = json.loads((demo / "results.json").read_text())
    assert list(results["models"]) == ["CLIP", "CLIP-FT", "NegCLIP"]
    # Chance: 1 in 200 held-out scenes for retrieval, as for every ARO config its own.
    assert results["chance"]["text_to_image_recall@1"] == pytest.approx(1 / results["retrieval_set"]["images"])
    # The demo ran in a staging folder; its results name the models relative to the folder, never by a local path.
    assert results["models"]["NegCLIP"]["path"] == "models/negclip"
    assert str(demo.resolve()) not in (demo / "results.json").read_text()
    negclip_args = json.loads((demo / "models" / "negclip" / "training_args.json").read_text())
    assert negclip_args["model_name_or_path"] == str(demo.resolve() / "models" / "clip")
    assert Image.open(demo / "clip_vs_negclip.png").size[0] > 500
    assert Image.open(demo / "trade_off.png").size[0] > 500
    # Zero-shot on the world's 12 colour-shape classes: chance 1/12; CLIP names single objects far above it.
    assert results["chance"]["zero_shot"] == pytest.approx(1 / 12)
    assert results["models"]["CLIP"]["zero_shot"] > 2 / 12
    assert "config_name: relation" in (demo / "data" / "README.md").read_text()
    for config in ("relation", "attribution", "coco_order", "flickr30k_order"):
        assert len(load_dataset(str(demo / "data"), config, split="test")) > 0
    for name in ("clip", "clip-ft", "negclip"):
        folder = demo / "models" / name
        assert isinstance(AutoModel.from_pretrained(folder), NegCLIPModel)
        assert isinstance(CLIPModel.from_pretrained(folder), CLIPModel)
        card = (folder / "README.md").read_text()
        # The demo's data is a local folder with no Hub id: the results are in the card's text, not its metadata.
        assert (
            "| relation | " in card
            and "model-index:" not in card
            and "leaves out the fields that would name it" in card
        )
        assert ("Hard negatives teach" in card) == (name == "negclip")  # each card's limitations fit its training
        # Its usage snippet loads the folder the demo wrote (named as the user named it, never an absolute path).
        assert f'AutoModel.from_pretrained("demo/models/{name}", trust_remote_code=True)' in card
        assert (demo / "eval" / name / "results.json").exists()
        assert (demo / "eval" / name / "scores" / "attribution.parquet").exists()  # the attribution breakdown's


def test_negclip_beats_clip_and_its_control_on_relations_and_attribution_and_keeps_retrieval(demo):
    models = json.loads((demo / "results.json").read_text())["models"]
    clip, control, negclip = models["CLIP"], models["CLIP-FT"], models["NegCLIP"]
    for config, margin in (("relation", RELATION_MARGIN), ("attribution", ATTRIBUTION_MARGIN)):
        assert negclip["aro"][config] - clip["aro"][config] >= margin, config
        # The gain comes from the hard negatives, not from NegCLIP's extra epochs.
        assert negclip["aro"][config] - control["aro"][config] >= margin, config
    assert negclip["aro"]["relation"] >= NEGCLIP_RELATION and negclip["aro"]["attribution"] >= NEGCLIP_ATTRIBUTION

    def recall(model: dict) -> float:
        return model["retrieval"]["original"]["text_to_image"]["recall@1"]

    assert recall(negclip) >= recall(clip) - RETRIEVAL_TOLERANCE
    # Trained from scratch on this world, CLIP retrieves its captions far above chance (1 in 200 scenes; scenes that
    # share a caption cap a perfect model at about 0.6).
    assert recall(clip) > 0.2


def test_retrieval_with_shuffled_captions_is_in_the_results_the_plot_and_the_cards(demo):
    models = json.loads((demo / "results.json").read_text())["models"]
    variants = [
        "original",
        "shuffle_nouns_and_adjectives",
        "shuffle_all_but_nouns_and_adjectives",
        "shuffle_within_trigrams",
        "shuffle_trigrams",
    ]
    for numbers in models.values():
        assert list(numbers["retrieval"]) == variants
        for recalls in numbers["retrieval"].values():
            assert set(recalls) == {"text_to_image", "image_to_text"}
            assert all(
                0 <= recalls[direction]["recall@1"] <= recalls[direction]["recall@10"] <= 1 for direction in recalls
            )
    assert Image.open(demo / "retrieval_shuffled.png").size[0] > 500
    negclip_card = (demo / "models" / "negclip" / "README.md").read_text()
    shuffled = models["NegCLIP"]["retrieval"]["shuffle_trigrams"]["text_to_image"]["recall@1"]
    assert "the change from the base model" in negclip_card and f"| shuffle_trigrams | {shuffled:.3f} (" in negclip_card


def test_attribution_breakdown_by_usual_pairs_adds_up_to_attribution(demo):
    results = json.loads((demo / "results.json").read_text())
    items = results["attribution_items_by_usual_pairs_in_swap"]
    assert set(items) == {"0", "1"}  # a swap with two usual pairs would be a scene of the world, and none is
    assert sum(items.values()) == results["rows"]["attribution/test"]
    for numbers in results["models"].values():
        by_usual = numbers["attribution_by_usual_pairs_in_swap"]
        weighted = sum(by_usual[usual] * count for usual, count in items.items()) / sum(items.values())
        assert weighted == pytest.approx(numbers["aro"]["attribution"])


def test_attribution_breakdown_is_each_groups_accuracy_scored_afresh(demo):
    """The demo reads the breakdown from `aro eval`'s per-item scores, joined to the groups by item id; the CLIP's
    (neither group at 1.0) scored again here, each item grouped by its own swapped caption."""
    data = load_split(str(demo / "data"), "attribution", "test")
    model, processor = load_model(str(demo / "models" / "clip"))
    scored = score_items(model, processor, data)
    right: dict[str, list[bool]] = {}
    for item in scored.kept():
        right.setdefault(str(usual_pairs(data[item]["false_caption"])), []).append(scored.predictions[item] == 0)
    breakdown = json.loads((demo / "results.json").read_text())["models"]["CLIP"]["attribution_by_usual_pairs_in_swap"]
    assert breakdown == pytest.approx({usual: sum(hits) / len(hits) for usual, hits in right.items()})
    assert all(0 < accuracy < 1 for accuracy in breakdown.values())


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


def test_a_failed_run_beside_the_demo_fails_it_with_its_own_error(tmp_path):
    """CLIP-FT trains in a second process while NegCLIP trains in this one: its error must reach the demo."""
    missing = NegCLIPTrainingArguments(
        output_dir=str(tmp_path / "clip-ft"), model_name_or_path=str(tmp_path / "no-model"), dataset=str(tmp_path)
    )
    with pytest.raises(AroError, match="no-model"), _in_second_process(train, missing):
        pass


def test_what_the_run_beside_the_demo_returns_comes_back():
    """The second process scores CLIP and CLIP-FT for the demo: its function's value is the demo's."""
    with _in_second_process(max, 3, 5) as beside:
        pass
    assert beside.result == 5


def _say_pid_then_sleep(pid_file: Path) -> None:
    pid_file.with_suffix(".partial").write_text(str(os.getpid()))
    pid_file.with_suffix(".partial").rename(pid_file)
    time.sleep(600)


def test_a_failure_of_the_demo_stops_the_run_beside_it(tmp_path):
    pid_file = tmp_path / "beside.pid"
    with pytest.raises(ValueError, match="NegCLIP failed"), _in_second_process(_say_pid_then_sleep, pid_file):
        while not pid_file.exists():
            time.sleep(0.1)
        raise ValueError("NegCLIP failed")
    with pytest.raises(ProcessLookupError):  # stopped and reaped, not left training for ten minutes
        os.kill(int(pid_file.read_text()), 0)


def test_a_run_beside_the_demo_that_dies_without_a_word_stops_the_demo_instead_of_hanging_it():
    with pytest.raises(RuntimeError, match="exit code 3"), _in_second_process(os._exit, 3):
        pass


def test_the_time_left_is_paced_by_the_phases_after_the_build(capsys):
    """Reference phases of 10, 20 and 30 s; this machine takes 50 s to build (spaCy loading from disk) and 40 s for
    the second phase: the estimates are the reference's until a phase after the build is done, then twice it."""
    clock = iter([0.0, 0.0, 50.0, 90.0, 160.0])
    timeline = Timeline([10.0, 20.0, 30.0], clock=lambda: next(clock))
    for phase in ("build", "train", "score"):
        timeline.begin(phase)
    timeline.end()
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[aro demo] 1/3 build (0:00 so far, about 1:00 left)",
        "[aro demo] 2/3 train (0:50 so far, about 0:50 left)",
        "[aro demo] 3/3 score (1:30 so far, about 1:00 left)",
        "[aro demo] done in 2:40",
    ]
