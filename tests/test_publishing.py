"""Publishing and comparing: Hub cards and formats parsed by huggingface_hub, the other harnesses' protocol and
datasets, bootstrap intervals, per-perturbation numbers, per-item scores, several models in one run."""

import asyncio
import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import TINY_WORDS, random_image, refused
from datasets import Dataset, Features, Value, load_dataset
from datasets import Image as ImageFeature
from huggingface_hub import DatasetCard, ModelCard, parse_eval_result_entries
from huggingface_hub.repocard_data import model_index_to_eval_results
from PIL import Image
from test_build import sources  # noqa: F401 - the fixture of original-format sources
from test_hostile_eval import encode, write_config

from aro.builders.build import AroSources, build_aro
from aro.cli import main
from aro.core.protocol import EXCLUDED_RELATIONS, PROTOCOLS, predict
from aro.metrics.scoring.bootstrap import Bootstrap
from aro.metrics.scoring.breakdown import config_result
from aro.metrics.scoring.hub_copies import as_aro_config
from aro.metrics.scoring.hub_files import EVAL_RESULTS_PATH, eval_results_operations, push_eval_results
from aro.metrics.scoring.provenance import content_hash
from aro.metrics.scoring.results import EvalResult
from aro.models.negclip.card import model_card
from aro.models.negclip.training import NegCLIPTrainingArguments
from aro.models.tiny_clip import make_tiny_clip

METRIC_DIR = Path(__file__).resolve().parents[1] / "metrics" / "aro_accuracy"
ARO_CONFIGS = ["relation", "attribution", "coco_order", "flickr30k_order"]
# The keys of results.json, in order, as the README documents them (a config's `perturbations` for the Order sets).
RESULTS_KEYS = [
    "model",
    "model_revision",
    "model_commit",
    "dataset",
    "dataset_id",
    "dataset_revision",
    "dataset_commit",
    "protocol",
    "limit",
    "seed",
    "date",
    "adapter",
    "image_processor",
    "blind_model",
    "device",
    "dtype",
    "weights",
    "blind_weights",
    "scoring",
    "versions",
    "warnings",
    "configs",
]
CONFIG_KEYS = [
    "accuracy",
    "num_items",
    "num_ties",
    "macro_accuracy",
    "headline",
    "per_group",
    "accuracy_ci",
    "macro_accuracy_ci",
    "bootstrap",
    "truncated_captions",
    "unique_images",
    "unique_captions",
    "distinct_inputs",
    "items_with_identical_options",
    "items_without_negative",
    "same_words_items",
    "same_words_share",
]


@pytest.fixture(scope="module")
def aro_folder(tmp_path_factory):
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


def hub_texts(folder: Path) -> dict[str, str]:
    """Every text file of a folder meant for the Hub or for readers."""
    return {
        str(path.relative_to(folder)): path.read_text()
        for path in folder.rglob("*")
        if path.suffix in {".json", ".md", ".yaml", ".csv"}
    }


def assert_no_local_path(texts: dict[str, str], *paths: Path) -> None:
    for name, text in texts.items():
        for path in paths:
            assert str(path) not in text, f"{name} names the local path {path}"


# Cards and Hub formats


def test_synthetic_card_and_eval_yaml_parse_and_name_loadable_tasks(aro_folder):
    card = DatasetCard.load(aro_folder / "README.md")
    assert card.data.license == "cc0-1.0" and card.data.pretty_name == "Synthetic ARO"
    assert card.data.task_categories == ["zero-shot-image-classification"] and card.data.language == ["en"]
    assert card.data.size_categories == ["n<1K"] and "synthetic" in card.data.tags
    assert "https://github.com/)" not in card.text
    benchmark = yaml.safe_load((aro_folder / "eval.yaml").read_text())
    assert benchmark["evaluation_framework"] == "aro"
    assert [task["id"] for task in benchmark["tasks"]] == ARO_CONFIGS  # not the `scenes` training config
    for task in benchmark["tasks"]:
        assert len(load_dataset(str(aro_folder), task["config"], split=task["split"])) > 0
    assert_no_local_path(hub_texts(aro_folder), aro_folder)


def test_aro_build_card_declares_its_licences(sources, tmp_path):  # noqa: F811
    out = tmp_path / "aro"
    build_aro(out, AroSources(vg_dir=sources.vg_dir), configs=("relation",))
    card = DatasetCard.load(out / "README.md")
    assert (card.data.license, card.data.license_name, card.data.license_link) == ("other", "aro-sources", "LICENSE.md")
    assert "Flickr30k" in (out / "LICENSE.md").read_text()
    assert [task["id"] for task in yaml.safe_load((out / "eval.yaml").read_text())["tasks"]] == ["relation"]
    assert_no_local_path(hub_texts(out), tmp_path)


def test_eval_writes_model_index_and_eval_results_the_hub_parses(
    aro_folder, tiny_clip_dir, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "eval"
    args = [
        "eval",
        "--model",
        str(tiny_clip_dir),
        "--dataset",
        str(aro_folder),
        "--config",
        "relation,coco_order",
        "--num-workers",
        "0",
        "--bootstrap",
        "200",
    ]
    assert main([*args, "--out", str(out), "--dataset-id", "org/aro-synthetic"]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert (
        saved["model"] == tiny_clip_dir.name
        and saved["dataset"] == "aro"
        and saved["dataset_id"] == "org/aro-synthetic"
    )
    # Resolved commits: content hashes of the local folders, as the files were when scored.
    assert saved["model_commit"] == content_hash(
        [path for path in tiny_clip_dir.iterdir() if path.is_file()], tiny_clip_dir
    )
    assert saved["dataset_commit"].startswith("sha256:")

    name, results = model_index_to_eval_results(yaml.safe_load((out / "model-index.yaml").read_text())["model-index"])
    assert name == tiny_clip_dir.name
    relation = {result.metric_args["average"]: result for result in results if result.dataset_config == "relation"}
    assert relation["micro"].metric_value == round(saved["configs"]["relation"]["accuracy"], 4)
    assert relation["macro"].metric_value == round(saved["configs"]["relation"]["macro_accuracy"], 4)
    assert (
        "macro accuracy over groups" in relation["macro"].metric_name
        and relation["macro"].dataset_type == "org/aro-synthetic"
    )
    assert {result.metric_args["average"] for result in results if result.dataset_config == "coco_order"} == {"micro"}

    entries = parse_eval_result_entries(yaml.safe_load((out / EVAL_RESULTS_PATH).read_text()))
    assert [(entry.dataset_id, entry.task_id) for entry in entries] == [
        ("org/aro-synthetic", "relation"),
        ("org/aro-synthetic", "coco_order"),
    ]
    assert (
        entries[0].value == round(saved["configs"]["relation"]["macro_accuracy"], 4)
        and "macro accuracy" in entries[0].notes
    )
    assert entries[0].dataset_revision is None  # a content hash is no Hub revision

    # The intervals in both Hub files are results.json's, micro and macro each in its own place.
    relation_ci, relation_macro_ci = (saved["configs"]["relation"][key] for key in ("accuracy_ci", "macro_accuracy_ci"))
    coco_ci = saved["configs"]["coco_order"]["accuracy_ci"]
    assert relation_ci != relation_macro_ci  # else a swap would go unseen
    assert relation["micro"].metric_args["ci95"] == [round(bound, 4) for bound in relation_ci]
    assert relation["macro"].metric_args["ci95"] == [round(bound, 4) for bound in relation_macro_ci]
    (coco,) = [result for result in results if result.dataset_config == "coco_order"]
    assert coco.metric_args["ci95"] == [round(bound, 4) for bound in coco_ci]
    assert entries[0].notes == "macro accuracy, paper protocol, 95% CI [{:.4f}, {:.4f}]".format(*relation_macro_ci)
    assert entries[1].notes == "micro accuracy, paper protocol, 95% CI [{:.4f}, {:.4f}]".format(*coco_ci)

    # results.json keeps the keys readers and the README rely on, and reads back into the same result.
    assert list(saved) == RESULTS_KEYS
    assert list(saved["configs"]["relation"]) == CONFIG_KEYS
    assert list(saved["configs"]["coco_order"]) == CONFIG_KEYS[:6] + ["perturbations"] + CONFIG_KEYS[6:]
    assert list(saved["configs"]["relation"]["per_group"][0]) == [
        "group",
        "accuracy",
        "count",
        "in_macro",
        "accuracy_ci",
    ]
    breakdown = saved["configs"]["coco_order"]["perturbations"]
    assert list(breakdown["pairwise"][0]) == ["perturbation", "accuracy", "accuracy_ci", "left_out"]
    assert list(breakdown["chosen"][0]) == ["option", "share"]
    assert saved["configs"]["relation"]["bootstrap"] == {"draws": 200, "seed": 0, "confidence": 0.95}
    assert EvalResult.from_json(saved).to_json() == saved
    assert_no_local_path(hub_texts(out), tmp_path, tiny_clip_dir, aro_folder)

    # --push-results: a pull request adding exactly that file (huggingface_hub is the boundary).
    from huggingface_hub import CommitInfo, HfApi

    calls = []

    def create_commit(self, repo_id, operations, **kwargs):
        calls.append((repo_id, operations, kwargs))
        return CommitInfo(
            commit_url="https://huggingface.co/org/tiny-clip/commit/" + "0" * 40,
            commit_message="",
            commit_description="",
            oid="0" * 40,
            pr_url="https://huggingface.co/org/tiny-clip/discussions/1",
        )

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    assert push_eval_results(out, "org/tiny-clip") == "https://huggingface.co/org/tiny-clip/discussions/1"
    ((repo_id, operations, kwargs),) = calls
    assert repo_id == "org/tiny-clip" and kwargs["create_pr"] is True
    assert [operation.path_in_repo for operation in operations] == [EVAL_RESULTS_PATH]
    assert operations[0].path_or_fileobj == (out / EVAL_RESULTS_PATH).read_bytes()

    # A local dataset without --dataset-id: no Hub file is written, and the run says why.
    bare = tmp_path / "bare"
    capsys.readouterr()
    assert main([*args, "--out", str(bare)]) == 0
    assert "no model-index.yaml or .eval_results/aro.yaml: the dataset is a local folder" in capsys.readouterr().out
    assert not (bare / "model-index.yaml").exists() and not (bare / EVAL_RESULTS_PATH).exists()
    with pytest.raises(FileNotFoundError, match="--dataset-id"):
        eval_results_operations(bare)


def test_model_card_names_hub_ids_only(tmp_path):
    results = {
        "model": "negclip",
        "dataset_id": "org/aro",
        "dataset_commit": "a" * 40,
        "protocol": "paper",
        "configs": {
            "relation": {
                "accuracy": 0.7,
                "macro_accuracy": 0.65,
                "accuracy_ci": [0.6, 0.8],
                "macro_accuracy_ci": [0.55, 0.75],
                "headline": "macro_accuracy",
            }
        },
    }
    hub = NegCLIPTrainingArguments(
        output_dir=str(tmp_path / "negclip"),
        model_name_or_path="openai/clip-vit-base-patch32",
        dataset="org/coco-captions",
        push_to_hub="org/negclip",
    )
    data = ModelCard(model_card(hub, EvalResult.from_json(results))).data
    assert data.pipeline_tag == "zero-shot-image-classification" and data.language == ["en"]
    assert data.base_model == "openai/clip-vit-base-patch32" and data.datasets == ["org/coco-captions", "org/aro"]
    assert data.model_name == "org/negclip"
    assert {result.metric_args["average"] for result in data.eval_results} == {"micro", "macro"}
    assert data.eval_results[0].dataset_revision == "a" * 40

    base = tmp_path / "clip"
    base.mkdir()
    local = NegCLIPTrainingArguments(
        output_dir=str(tmp_path / "negclip"), model_name_or_path=str(base), dataset=str(tmp_path)
    )
    text = model_card(local, EvalResult.from_json(results | {"dataset_id": None}))
    data = ModelCard(text).data
    assert data.base_model is None and data.datasets is None and data.eval_results is None
    assert "leaves out the fields that would name it" in text
    assert_no_local_path({"README.md": text}, tmp_path)


def load_app():
    spec = importlib.util.spec_from_file_location("aro_space_app", METRIC_DIR / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)  # the module's launch sits under `__main__`: loading it launches nothing
    return app


def test_space_form_computes_what_the_module_computes():
    """The Space's form, built and run through Gradio's own processing of its inputs (no server), gives the module's
    results for the strings a user types; it offers every config and protocol."""
    import evaluate
    import gradio  # here, not at the top: importing gradio takes 3.4 to 4 s, which no other test here needs
    from gradio.state_holder import SessionState

    app = load_app()
    module = evaluate.load(str(METRIC_DIR))
    interface = app.build_interface(module)
    card = yaml.safe_load((METRIC_DIR / "README.md").read_text().split("---")[1])
    assert card["sdk_version"] == gradio.__version__  # the version this test built the form with
    config_box, protocol_box = interface.input_components[3:]
    assert [value for value, _ in config_box.choices] == list(ARO_CONFIGS)
    assert [value for value, _ in protocol_box.choices] == list(PROTOCOLS)
    inputs = [component._id for component in interface.input_components]
    submit = next(function for function in interface.fns.values() if [b._id for b in function.inputs] == inputs)

    def form(*values: str) -> dict:
        output = asyncio.run(interface.process_api(block_fn=submit, inputs=list(values), state=SessionState(interface)))
        return output["data"][0].root

    typed = ("0, 1, 0, -1", "0,0,0,0", "on, on\nholding, holding")
    for protocol in PROTOCOLS:
        expected = module.compute(
            predictions=[0, 1, 0, -1],
            references=[0, 0, 0, 0],
            groups=["on", "on", "holding", "holding"],
            config="relation",
            protocol=protocol,
        )
        assert form(*typed, "relation", protocol) == json.loads(json.dumps(expected))
    assert (form(*typed, "relation", "paper")["accuracy"], form(*typed, "relation", "paper")["num_ties"]) == (0.5, 1)
    assert "predictions (2) and references (1)" in form("0, 1", "0", "", "coco_order", "paper")["error"]


# Comparable numbers


def test_protocols_on_hand_computed_ties():
    # Item 0: true caption tied with the other; item 1: wrong; item 2: right; item 3 (Order): two false options tie
    # above the true one; item 4 (Order): the true caption ties with one shuffle at the top.
    vg = np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]])
    assert predict(vg) == [-1, 1, 0] and predict(vg, "mteb") == [0, 1, 0]
    relation = ["on", "on", "adjusting"]  # `adjusting` is one of the paper's excluded relations
    assert "adjusting" in EXCLUDED_RELATIONS
    paper = config_result(vg, "relation", relation, "paper", bootstrap=Bootstrap(draws=0))
    mteb = config_result(vg, "relation", relation, "mteb", bootstrap=Bootstrap(draws=0))
    assert (paper.accuracy, paper.macro_accuracy, paper.headline) == (1 / 3, 0.0, "macro_accuracy")
    assert (mteb.accuracy, mteb.macro_accuracy, mteb.headline) == (2 / 3, 0.75, "accuracy")
    order = np.array([[0.1, 0.3, 0.3, 0.0, 0.0], [0.6, 0.6, 0.1, 0.2, 0.3], [0.9, 0.1, 0.2, 0.3, 0.4]])
    assert predict(order) == [-1, -1, 0] and predict(order, "mteb") == [1, 0, 0]
    assert config_result(order, "coco_order", protocol="paper", bootstrap=Bootstrap(draws=0)).accuracy == 1 / 3
    assert config_result(order, "coco_order", protocol="mteb", bootstrap=Bootstrap(draws=0)).accuracy == 2 / 3


def test_bootstrap_intervals_contain_the_estimate_and_follow_the_seed():
    rng = np.random.default_rng(0)
    scores = rng.random((300, 5))
    groups = [f"g{index % 7}" for index in range(300)]
    numbers = config_result(scores[:, :2], "relation", groups, "none", bootstrap=Bootstrap(draws=500, seed=1))
    assert numbers.accuracy_ci[0] <= numbers.accuracy <= numbers.accuracy_ci[1]
    assert numbers.macro_accuracy_ci[0] <= numbers.macro_accuracy <= numbers.macro_accuracy_ci[1]
    for row in numbers.per_group:
        assert row.accuracy_ci[0] <= row.accuracy <= row.accuracy_ci[1]
    assert 0 < numbers.accuracy_ci[1] - numbers.accuracy_ci[0] < 0.2
    again = config_result(scores[:, :2], "relation", groups, "none", bootstrap=Bootstrap(draws=500, seed=1))
    other = config_result(scores[:, :2], "relation", groups, "none", bootstrap=Bootstrap(draws=500, seed=2))
    assert again == numbers and other.accuracy_ci != numbers.accuracy_ci
    order = config_result(scores, "coco_order", bootstrap=Bootstrap(draws=500, seed=1))
    for row in order.perturbations.pairwise:
        assert row.accuracy_ci[0] <= row.accuracy <= row.accuracy_ci[1]
    assert config_result(scores, "coco_order", bootstrap=Bootstrap(draws=0)).accuracy_ci is None


def test_per_perturbation_numbers_add_up():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random((400, 5)), 1)  # rounded: ties happen
    scores[::7, 2] = np.nan  # an option with the true caption's text: no negative, ignored
    names = ["original", "nouns_adjectives", "all_but", "within_trigrams", "trigrams"]
    for protocol in ("paper", "mteb"):
        numbers = config_result(
            scores, "coco_order", protocol=protocol, option_names=names, bootstrap=Bootstrap(draws=0)
        )
        chosen = {row.option: row.share for row in numbers.perturbations.chosen}
        assert sum(chosen.values()) == pytest.approx(1.0)
        assert chosen["original"] == pytest.approx(numbers.accuracy)
        pairwise = {row.perturbation: row for row in numbers.perturbations.pairwise}
        assert list(pairwise) == names[1:]
        # An item is right exactly when the true caption beats all four shuffles.
        compare = np.greater_equal if protocol == "mteb" else np.greater
        beats_all = (compare(scores[:, :1], scores[:, 1:]) | np.isnan(scores[:, 1:])).all(axis=1)
        assert numbers.accuracy == pytest.approx(beats_all.mean())
        # Each pair over the items where the shuffle is a negative (the NaN option is left out, and counted).
        for column, name in enumerate(names[1:], start=1):
            negative = ~np.isnan(scores[:, column])
            expected = compare(scores[negative, 0], scores[negative, column]).mean()
            assert pairwise[name].accuracy == pytest.approx(expected)
            assert pairwise[name].left_out == (~negative).sum() == (58 if name == "all_but" else 0)
    assert "tie" in chosen or protocol == "mteb"


def test_order_breakdown_leaves_out_options_equal_to_the_true_caption_as_the_accuracy_does():
    # Four Order items, four shuffles; NaN marks a shuffle with the true caption's text (no negative).
    scores = np.array(
        [
            [0.9, np.nan, 0.5, 0.95, 0.1],  # loses to shuffle 3 only
            [0.5, np.nan, np.nan, 0.2, 0.6],  # loses to shuffle 4 only
            [0.7, 0.3, 0.7, 0.1, 0.2],  # ties shuffle 2
            [0.8, 0.1, 0.2, 0.3, 0.4],  # beats every shuffle
        ]
    )
    names = ["original", "one", "two", "three", "four"]
    paper = config_result(scores, "coco_order", option_names=names, bootstrap=Bootstrap(draws=0))
    mteb = config_result(scores, "coco_order", protocol="mteb", option_names=names, bootstrap=Bootstrap(draws=0))
    assert (paper.accuracy, mteb.accuracy) == (1 / 4, 2 / 4)
    pairwise = {row.perturbation: (row.accuracy, row.left_out) for row in paper.perturbations.pairwise}
    # "one": items 2 and 3 only (both won); "two": items 0, 2 (a tie: wrong under paper), 3.
    assert pairwise == {"one": (1.0, 2), "two": (2 / 3, 1), "three": (3 / 4, 0), "four": (3 / 4, 0)}
    assert {row.perturbation: row.accuracy for row in mteb.perturbations.pairwise}["two"] == 1.0
    with_draws = config_result(scores, "coco_order", option_names=names, bootstrap=Bootstrap(draws=50))
    assert with_draws.perturbations.pairwise[0].accuracy_ci == [1.0, 1.0]  # only won pairs to resample


def test_ties_are_counted_from_the_scores_whatever_the_protocol_makes_of_them():
    scores = np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1], [0.3, 0.3]])
    for protocol in ("paper", "none", "mteb"):
        assert config_result(scores, "relation", protocol=protocol, bootstrap=Bootstrap(draws=0)).num_ties == 2
    order = np.array([[0.1, 0.3, 0.3, 0.0, 0.0], [0.6, 0.6, 0.1, 0.2, 0.3], [0.9, 0.1, 0.2, 0.3, 0.4]])
    assert config_result(order, "coco_order", protocol="mteb", bootstrap=Bootstrap(draws=0)).num_ties == 2


def percentile_interval(draws: np.ndarray) -> list[float]:
    """The central 95% of a statistic's bootstrap draws: the 2.5th and 97.5th percentiles."""
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def test_bootstrap_intervals_equal_an_independent_percentile_computation():
    draws, seed = 60, 7  # fewer draws than one batch: the draws are one `integers` call of a generator seeded so
    rng = np.random.default_rng(0)
    vg = rng.random((12, 2))
    groups = ["on", "on", "on", "in", "in", "in", "in", "near", "near", "near", "near", "near"]
    result = config_result(vg, "relation", groups, "none", bootstrap=Bootstrap(draws=draws, seed=seed))
    drawn = np.random.default_rng(seed).integers(0, 12, (draws, 12))  # item indices of each resample
    correct = vg[:, 0] > vg[:, 1]
    micro = correct[drawn].mean(axis=1)
    codes = np.array([sorted(set(groups)).index(group) for group in groups])
    with np.errstate(invalid="ignore"):
        per_group = np.stack(
            [(correct[drawn] & (codes[drawn] == g)).sum(1) / (codes[drawn] == g).sum(1) for g in range(3)], axis=1
        )
    macro = np.nanmean(per_group, axis=1)
    assert result.accuracy_ci == pytest.approx(percentile_interval(micro), abs=1e-6)
    assert result.macro_accuracy_ci == pytest.approx(percentile_interval(macro), abs=1e-6)
    assert result.accuracy_ci != pytest.approx(list(np.percentile(micro, [5, 95])), abs=1e-6)  # the tails matter

    order = rng.random((12, 3))
    order[[1, 4, 5], 2] = np.nan  # a shuffle equal to the true caption: left out of its pair
    result = config_result(order, "coco_order", bootstrap=Bootstrap(draws=draws, seed=seed))
    wins, compared = order[:, :1] > np.nan_to_num(order[:, 1:], nan=np.inf), ~np.isnan(order[:, 1:])
    for column, row in enumerate(result.perturbations.pairwise):
        pair = (wins[drawn, column] & compared[drawn, column]).sum(1) / compared[drawn, column].sum(1)
        assert row.accuracy_ci == pytest.approx(percentile_interval(pair[~np.isnan(pair)]), abs=1e-6)


def test_ties_under_mteb_are_counted_in_the_report(tiny_clip_dir, tmp_path):
    # The tiny tokenizer reads unknown words as one token: "a red zebra" and "a red okapi" score exactly alike.
    tied = ["a red zebra", "a red okapi", "a red lemur", "a red koala", "a red gecko"]
    distinct = [
        "a red circle above a blue square",
        "a blue circle above a red square",
        "a red square above a blue circle",
        "above a red circle a blue square",
        "a blue square a red circle above",
    ]
    rows = [
        {
            "item_id": index,
            "image": {"bytes": encode(random_image(index)), "path": None},
            "image_id": str(index),
            "caption_id": f"{index}#0",
            "caption_options": tied if index < 3 else distinct,
            "perturbations": ["original", "a", "b", "c", "d"],
        }
        for index in range(5)
    ]
    folder = tmp_path / "aro"
    write_config(folder, "coco_order", rows)
    counts = {}
    for protocol in ("paper", "mteb"):
        out = tmp_path / protocol
        argv = ["eval", "--model", str(tiny_clip_dir), "--dataset", str(folder), "--config", "coco_order"]
        assert main([*argv, "--num-workers", "0", "--protocol", protocol, "--out", str(out)]) == 0
        numbers = json.loads((out / "results.json").read_text())["configs"]["coco_order"]
        counts[protocol] = numbers["num_ties"]
        assert "| coco_order | micro accuracy |" in (out / "results.md").read_text()
    assert counts == {"paper": 3, "mteb": 3}


def images(count: int, size=(40, 36)) -> list[Image.Image]:
    return [
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size[::-1], 3), dtype=np.uint8))
        for seed in range(count)
    ]


def save_copy(rows: dict, features: Features, folder: Path) -> Path:
    """A Hub-copy-shaped dataset as a Parquet folder with one `default` config, as those repos are."""
    folder.mkdir(parents=True)
    Dataset.from_dict(rows, features=features).to_parquet(str(folder / "test.parquet"))
    return folder


def test_mteb_shaped_copies_score_with_a_warning_where_groups_are_missing(tiny_clip_dir, tmp_path, capsys):
    words = [
        "a red circle above a blue square",
        "a blue square above a red circle",
        "red a circle above blue a square",
        "a square blue above a circle red",
        "above a red circle a blue square",
    ]
    order = save_copy(
        {
            "images": images(6),
            "correct_caption": [words[0]] * 6,
            **{f"hard_text_{k}": [words[k]] * 6 for k in range(1, 5)},
        },
        Features(
            {
                "images": ImageFeature(),
                "correct_caption": Value("string"),
                **{f"hard_text_{k}": Value("string") for k in range(1, 5)},
            }
        ),
        tmp_path / "ARO-COCO-order",
    )
    vg = save_copy(
        {"image": images(6), "true_caption": [words[0]] * 6, "false_caption": [words[1]] * 6},
        Features({"image": ImageFeature(), "true_caption": Value("string"), "false_caption": Value("string")}),
        tmp_path / "ARO-Visual-Relation",
    )
    out = tmp_path / "eval"
    common = ["--model", str(tiny_clip_dir), "--num-workers", "0", "--protocol", "mteb", "--bootstrap", "50"]
    assert main(["eval", *common, "--dataset", str(vg), "--config", "relation", "--out", str(out / "vg")]) == 0
    assert main(["eval", *common, "--dataset", str(order), "--config", "coco_order", "--out", str(out / "order")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("relation: no `relation_name` column, so no macro accuracy") == 1
    relation = json.loads((out / "vg" / "results.json").read_text())
    assert (
        relation["configs"]["relation"]["macro_accuracy"] is None and relation["configs"]["relation"]["num_items"] == 6
    )
    assert relation["warnings"] == [
        line for line in relation["warnings"] if line.startswith("relation: no `relation_name`")
    ]
    coco = json.loads((out / "order" / "results.json").read_text())["configs"]["coco_order"]
    assert [row["perturbation"] for row in coco["perturbations"]["pairwise"]] == [
        "hard_text_1",
        "hard_text_2",
        "hard_text_3",
        "hard_text_4",
    ]
    assert coco["num_items"] == 6 and coco["num_ties"] == 0  # mteb's argmax leaves no tie


def test_a_copy_with_bboxes_is_cropped_to_them():
    full = images(2, size=(60, 50))
    copy = Dataset.from_dict(
        {
            "image": full,
            "true_caption": ["a", "b"],
            "false_caption": ["b", "a"],
            "bbox_x": [5, 50],
            "bbox_y": [4, 0],
            "bbox_w": [20, 30],
            "bbox_h": [10, 50],
        },
        features=Features(
            {
                "image": ImageFeature(),
                "true_caption": Value("string"),
                "false_caption": Value("string"),
                **{name: Value("int32") for name in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")},
            }
        ),
    )
    cropped, _ = as_aro_config(copy, "relation")
    # The second reaches 20 pixels past the right edge: black there, as the original loader crops.
    assert cropped[0]["image"].size == (20, 10) and cropped[1]["image"].size == (30, 50)
    expected = np.zeros((50, 30, 3), dtype=np.uint8)
    expected[:, :10] = np.asarray(full[1].convert("RGB"))[:, 50:]
    assert np.array_equal(np.asarray(cropped[1]["image"]), expected)
    assert np.array_equal(np.asarray(cropped[0]["image"]), np.asarray(full[0].crop((5, 4, 25, 14))))
    with pytest.raises(ValueError, match="item 0: bbox"):
        as_aro_config(copy.map(lambda row: {"bbox_x": 100}), "relation")


# For researchers


def test_save_scores_and_limit_round_trip(aro_folder, tiny_clip_dir, tmp_path):
    out = tmp_path / "eval"
    args = [
        "eval",
        "--model",
        str(tiny_clip_dir),
        "--dataset",
        str(aro_folder),
        "--config",
        "relation,coco_order",
        "--num-workers",
        "0",
        "--limit",
        "7",
        "--seed",
        "3",
        "--save-scores",
        "--bootstrap",
        "0",
    ]
    assert main([*args, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    relation = pq.read_table(out / "scores" / "relation.parquet").to_pylist()
    assert len(relation) == results["configs"]["relation"]["num_items"] == 7
    assert set(relation[0]) == {
        "item_id",
        "group",
        "score_true_caption",
        "score_false_caption",
        "prediction",
        "correct",
        "counted",
        "same_words",
    }
    full = load_dataset(str(aro_folder), "relation", split="test")
    by_id = {row["item_id"]: row["relation_name"] for row in full.select_columns(["item_id", "relation_name"])}
    assert all(by_id[row["item_id"]] == row["group"] for row in relation)
    scores = np.array([[row["score_true_caption"], row["score_false_caption"]] for row in relation])
    assert [row["prediction"] for row in relation] == predict(scores)
    assert np.mean([row["correct"] for row in relation if row["counted"]]) == results["configs"]["relation"]["accuracy"]
    coco = pq.read_table(out / "scores" / "coco_order.parquet")
    assert (
        coco.num_rows == 6 and [name for name in coco.column_names if name.startswith("score_")][0] == "score_original"
    )  # a limit above the size keeps all
    assert main([*args, "--out", str(tmp_path / "again")]) == 0  # the same seed draws the same items
    assert pq.read_table(tmp_path / "again" / "scores" / "relation.parquet").column("item_id").to_pylist() == [
        row["item_id"] for row in relation
    ]


def test_several_models_get_a_combined_table_csv_and_plot(aro_folder, tiny_clip_dir, tmp_path, capsys):
    other = tmp_path / "other-clip"
    model, processor = make_tiny_clip(TINY_WORDS, image_size=32, seed=5)
    model.save_pretrained(other)
    processor.save_pretrained(other)
    listing = tmp_path / "models.txt"
    listing.write_text(f"# two tiny CLIPs\n{tiny_clip_dir}\n\n{other}\n")
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--models-file",
                str(listing),
                "--dataset",
                str(aro_folder),
                "--config",
                "relation,coco_order",
                "--num-workers",
                "0",
                "--bootstrap",
                "100",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = (out / "comparison.csv").read_text().splitlines()
    assert rows[0].startswith("model,config,protocol,headline,accuracy") and len(rows) == 1 + 2 * 2
    table = (out / "comparison.md").read_text()
    assert f"| {tiny_clip_dir.name} |" in table and "| other-clip |" in table
    assert (out / "comparison.png").stat().st_size > 1000
    assert (out / tiny_clip_dir.name / "results.json").exists() and (out / "other-clip" / "relation.png").exists()
    assert "| other-clip |" in capsys.readouterr().out
    assert_no_local_path(hub_texts(out), tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "--vg-dir", "vg", "--push-to-hub"],
        ["push-metric"],
        ["convert", "model.pt", "--open-clip-config", "ViT-B-32", "--out", "out", "--push-to-hub"],
        ["eval", "--model", "org/model", "--push-results"],
        ["eval", "--model", "org/model", "--dataset", "aro", "--dataset-id"],
    ],
)
def test_a_malformed_hub_repo_id_is_refused_as_the_command_starts(capfd, argv):
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "org/bad name!"])
    assert stopped.value.code == 2
    assert "'org/bad name!' is not a Hub repo id (ORG/NAME)" in capfd.readouterr().err


def test_training_refuses_a_malformed_hub_repo_id_before_anything_loads(tmp_path, capfd):
    argv = ["train", "--model-name-or-path", "missing", "--output-dir", str(tmp_path / "run")]
    refused(capfd, [*argv, "--push-to-hub", "a/b/c"], "--push-to-hub 'a/b/c' is not a Hub repo id (ORG/NAME)")
