"""SugarCrepe beside ARO: `aro build` on the authors' files (JSON objects with their keys, COCO val2017 images drawn
here), `aro eval --config sugarcrepe` with the seven-split averages against an independent computation, the share of
items a bag of words cannot separate (counted by hand), and hostile inputs, each one line with the sources unchanged."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import random_image, refused
from datasets import Image as ImageFeature
from datasets import load_dataset
from huggingface_hub import DatasetCard
from test_adapters import blind_one_caption, causal_lm, one_at_a_time, one_pair, saved
from test_build import draw, save
from test_download import serve, zip_of  # noqa: F401 - `serve` is the fixture of a local HTTP server
from test_hostile_build import snapshot, vg_item, write_items
from test_hostile_eval import write_config

from aro.builders import build, writer
from aro.builders.build import AroSources, build_aro
from aro.cli import main
from aro.core.contract import SUGARCREPE_CONFIGS, SUGARCREPE_GROUPS, word_bag
from aro.metrics.scoring import load_model
from aro.metrics.scoring.loading import load_blind_model
from aro.metrics.scoring.results import EvalResult
from aro.models.negclip.card import model_card
from aro.models.negclip.training import NegCLIPTrainingArguments

IMAGES = [f"{index:012d}.jpg" for index in (139, 285, 632)]
# Per split, the authors' items as (image, caption, negative caption), in their words (those of the tiny models).
ITEMS = {
    "replace_obj": [
        (0, "A red circle is above a blue square.", "A red star is above a blue square."),
        (1, "the small triangle is left of the star", "the small square is left of the star"),
        (0, "a green star is below a yellow circle", "a green triangle is below a yellow circle"),
    ],
    "replace_att": [
        (2, "a large red square", "a small red square"),
        (1, "the blue circle is to the right of a star", "the green circle is to the right of a star"),
        (2, "a yellow triangle and a red star", "a yellow triangle and a blue star"),
    ],
    "replace_rel": [
        (0, "a circle is above a square", "a circle is below a square"),
        (0, "the star is left of the triangle", "the star is right of the triangle"),
        (1, "a red star is below a green circle", "a red star is above a green circle"),
        (2, "a red square is left of a star", "a red square is right of a star"),
    ],
    # Keys with a gap, as the authors' swap_obj.json has since an item was removed.
    "swap_obj": [
        (1, "A red circle is left of a blue square.", "a blue square is left of a red circle"),  # same words
        (2, "a red star is to the left of a blue circle", "a blue circle is to the left of the red star"),  # a/the
        (1, "the small star is above the large triangle", "the large triangle is above the small star"),  # same
    ],
    "swap_att": [
        (0, "a red circle and a blue star", "A blue circle and a red star!"),  # same words: case and punctuation
        (2, "a small-star is above a large circle", "a large star is above a small circle"),  # same: "-" separates
        (2, "a green square is left of a yellow circle", "a yellow square is to the left of a green circle"),
    ],
    "add_obj": [
        (1, "a red circle", "a red circle and a blue star"),
        (0, "the small square is above the triangle", "the small square and a star are above the triangle"),
        (1, "a yellow star", "a yellow star and a green circle"),
    ],
    "add_att": [
        (2, "a circle is above a square", "a red circle is above a square"),
        (2, "the star is left of the triangle", "the large star is left of the triangle"),
    ],
}
# Splits of different sizes, so that the mean of split accuracies and the pooled accuracy differ.
KEYS = {
    split: ["0", "1", "3"] if split == "swap_obj" else [str(key) for key in range(len(ITEMS[split]))] for split in ITEMS
}
NUM_ITEMS = sum(len(items) for items in ITEMS.values())
# Counted by hand from the comments above: the items whose negative has exactly the true caption's words.
SAME_WORDS = {"swap_obj": 2, "swap_att": 2}


def split_json(split: str) -> dict:
    """A split file in the authors' format: an object keyed by item id."""
    return {
        key: {"filename": IMAGES[image], "caption": caption, "negative_caption": negative}
        for key, (image, caption, negative) in zip(KEYS[split], ITEMS[split])
    }


def write_sugarcrepe(root: Path, names: dict[str, str] | None = None) -> tuple[Path, Path]:
    """The authors' repository (`data/<split>.json`, or the file names in `names`) and COCO's val2017 folder."""
    data, images = root / "sugar-crepe" / "data", root / "coco" / "val2017"
    data.mkdir(parents=True)
    for split in ITEMS:
        (data / (names or {}).get(split, f"{split}.json")).write_text(json.dumps(split_json(split), indent=4))
    for index, name in enumerate(IMAGES):
        save(random_image(index), images / name, "RGB")
    return data.parent, images


@pytest.fixture()
def sources(tmp_path) -> tuple[Path, Path]:
    return write_sugarcrepe(tmp_path / "sources")


def write_relation(vg: Path) -> Path:
    """A VG folder of four VG-Relation items, whose false caption swaps the true caption's words."""
    for index in range(4):
        save(draw(index), vg / "images" / f"{index}.jpg", "RGB")
    write_items(vg / "visual_genome_relation.json", [vg_item(index) for index in range(4)])
    return vg


def build_argv(sources, out: Path, *extra: str) -> list[str]:
    repository, images = sources
    return ["build", "--sugarcrepe-dir", str(repository), "--coco-val2017-dir", str(images), "--out", str(out), *extra]


def test_word_bags_follow_the_stated_tokenisation():
    assert word_bag("A small-star's Circle, above!") == Counter(["a", "small", "star", "s", "circle", "above"])
    assert word_bag("a red circle and a blue star") == word_bag("A blue circle and a red star!")
    assert word_bag("the red star") != word_bag("a red star")


def test_builds_the_seven_splits_with_their_items_images_card_and_tasks(sources, tmp_path, capsys):
    vg = write_relation(tmp_path / "sources" / "vg")
    out = tmp_path / "aro"
    assert main(build_argv(sources, out, "--vg-dir", str(vg), "--configs", "relation,sugarcrepe")) == 0
    printed = capsys.readouterr().out
    assert "sugarcrepe_swap_att/test: 3 items" in printed and "sugarcrepe_add_obj: built from add_obj.json" in printed

    repository, images = sources
    for config in SUGARCREPE_CONFIGS:
        split = config.removeprefix("sugarcrepe_")
        data = load_dataset(str(out), config, split="test")
        expected = {
            int(key): (item["caption"], item["negative_caption"], item["filename"])
            for key, item in split_json(split).items()
        }
        assert sorted(data["item_id"]) == sorted(expected)
        raw = data.cast_column("image", ImageFeature(decode=False))
        for row, image in zip(data, raw["image"]):
            caption, negative, filename = expected[row["item_id"]]
            assert (row["true_caption"], row["false_caption"], row["image_id"]) == (caption, negative, filename[:-4])
            assert image["bytes"] == (images / filename).read_bytes()  # an RGB JPEG keeps its bytes
        # Rows come grouped by image, in the order the images first appear in the file.
        first_seen = list(dict.fromkeys(IMAGES[image] for image, _, _ in ITEMS[split]))
        assert list(dict.fromkeys(data["image_id"])) == [name[:-4] for name in first_seen]

    card = DatasetCard.load(out / "README.md")
    assert "sugarcrepe" in card.data.tags
    for config in SUGARCREPE_CONFIGS:
        same = SAME_WORDS.get(config.removeprefix("sugarcrepe_"), 0)
        items = len(ITEMS[config.removeprefix("sugarcrepe_")])
        assert f"| {config} | {items} | {same} ({same / items:.1%}) |" in card.text
    assert "| relation | 4 | 4 (100.0%) |" in card.text  # ARO's configs get the count too
    assert "@inproceedings{hsieh2023sugarcrepe" in card.text and "`swap_obj.json`" in card.text
    assert str(tmp_path) not in card.text
    license_text = (out / "LICENSE.md").read_text()
    assert "**SugarCrepe**" in license_text and "MIT" in license_text and "val2017" in license_text
    tasks = yaml.safe_load((out / "eval.yaml").read_text())["tasks"]
    assert [task["id"] for task in tasks] == ["relation", *SUGARCREPE_CONFIGS]


def test_the_first_release_names_of_the_object_splits_are_read_and_said(tmp_path, capsys):
    names = {"replace_obj": "replace_ent.json", "add_obj": "add_ent.json"}
    sources = write_sugarcrepe(tmp_path / "sources", names)
    out = tmp_path / "aro"
    assert main(build_argv(sources, out, "--configs", "sugarcrepe_replace_obj,sugarcrepe_add_obj")) == 0
    assert "sugarcrepe_replace_obj: built from replace_ent.json" in capsys.readouterr().out
    assert "| sugarcrepe_add_obj | `add_ent.json` (the first release's file) |" in (out / "README.md").read_text()
    assert len(load_dataset(str(out), "sugarcrepe_add_obj", split="test")) == 3


def test_each_image_is_stored_once_per_file_with_row_groups_and_shards_smaller_than_the_data(tmp_path, monkeypatch):
    """Nine items over three images of incompressible noise, row groups of 2 rows and shards of 4: an image's rows
    share one row group, whose dictionary holds its bytes once."""
    monkeypatch.setattr(writer, "ROWS_PER_ROW_GROUP", 2)
    monkeypatch.setattr(writer, "ROWS_PER_SHARD", 4)
    repository, images = write_sugarcrepe(tmp_path / "sources")
    many = {
        str(key): {"filename": IMAGES[key // 3], "caption": f"a red star {key}", "negative_caption": "a blue star"}
        for key in range(9)
    }
    (repository / "data" / "add_att.json").write_text(json.dumps(many))
    out = tmp_path / "aro"
    assert main(build_argv((repository, images), out, "--configs", "sugarcrepe_add_att")) == 0

    files = sorted((out / "sugarcrepe_add_att").glob("*.parquet"))
    assert [path.name for path in files] == ["test-00000-of-00002.parquet", "test-00001-of-00002.parquet"]
    places, stored = {}, 0
    for path in files:
        parquet = pq.ParquetFile(path)
        column = parquet.schema_arrow.get_field_index("image")
        for group in range(parquet.num_row_groups):
            for image in parquet.read_row_group(group, columns=["image"]).column("image").to_pylist():
                places.setdefault(image["bytes"], set()).add((path.name, group))
            image_bytes = parquet.metadata.row_group(group).column(column)
            assert image_bytes.path_in_schema == "image.bytes"
            stored += image_bytes.total_compressed_size
    assert all(len(where) == 1 for where in places.values())  # no image is in two row groups or files
    unique = sum(len(image) for image in places)
    # Noise JPEGs barely compress: each image stored once is about `unique`, three times over if repeated.
    assert len(places) == 3 and 0.9 * unique <= stored <= 1.1 * unique
    data = load_dataset(str(out), "sugarcrepe_add_att", split="test").cast_column("image", ImageFeature(decode=False))
    assert [row["image"]["bytes"] == (images / IMAGES[row["item_id"] // 3]).read_bytes() for row in data] == [True] * 9


BAG_OF_WORDS_SCORER = '''
import hashlib
import re


def score(images, captions):
    """A bag of words: a sum over the caption's word tokens (as aro counts them) of an integer drawn from the word,
    times one of the image, so that two captions score exactly alike when, and only when, they have the same words."""
    levels = [1 + sum(image.convert("RGB").getpixel((0, 0))) % 5 for image in images]
    bags = [re.findall(r"[^\\W_]+", caption.lower()) for caption in captions]
    return [float(level * sum(map(weight, words))) for level, words in zip(levels, bags)]


def weight(word):
    return int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)
'''


@pytest.fixture()
def built(sources, tmp_path) -> Path:
    vg = write_relation(tmp_path / "sources" / "vg")
    out = tmp_path / "aro"
    repository, images = sources
    sources = AroSources(vg_dir=str(vg), sugarcrepe_dir=str(repository), coco_val2017_dir=str(images))
    build_aro(out, sources, configs=("relation", "sugarcrepe"))
    return out


def expected_averages(right: dict[str, np.ndarray]) -> dict[str, float]:
    """SugarCrepe's averages computed here: unweighted means of split accuracies, and all items pooled."""
    accuracy = {config: right[config].mean() for config in SUGARCREPE_CONFIGS}
    averages = {group: np.mean([accuracy[config] for config in splits]) for group, splits in SUGARCREPE_GROUPS.items()}
    averages["mean"] = np.mean(list(accuracy.values()))
    averages["pooled"] = sum(right[config].sum() for config in SUGARCREPE_CONFIGS) / NUM_ITEMS
    return averages


def test_eval_scores_the_seven_splits_and_their_averages_beside_the_blind_baseline(
    built, tiny_clip_dir, tmp_path, capsys
):
    blind_folder = saved(causal_lm, tmp_path / "gpt2")
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(tiny_clip_dir), "--blind", str(blind_folder), "--dataset", str(built)]
    assert main(argv + ["--config", "relation,sugarcrepe", "--num-workers", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| **swap** |" in printed and "| **mean** (headline) |" in printed
    results = json.loads((out / "results.json").read_text())

    model, processor = load_model(str(tiny_clip_dir))
    language_model, tokenizer = load_blind_model(str(blind_folder))
    right, blind_right = {}, {}
    for config in SUGARCREPE_CONFIGS:
        data = load_dataset(str(built), config, split="test")
        scores = one_at_a_time(lambda picture, caption: one_pair(model, processor, picture, caption), data)
        blind = one_at_a_time(lambda picture, caption: blind_one_caption(language_model, tokenizer, caption), data)
        right[config], blind_right[config] = scores[:, 0] > scores[:, 1], blind[:, 0] > blind[:, 1]
        numbers = results["configs"][config]
        assert numbers["accuracy"] == pytest.approx(right[config].mean(), abs=1e-12)
        assert numbers["blind"]["accuracy"] == pytest.approx(blind_right[config].mean(), abs=1e-12)
        same = SAME_WORDS.get(config.removeprefix("sugarcrepe_"), 0)
        share = same / len(ITEMS[config.removeprefix("sugarcrepe_")])
        assert (numbers["same_words_items"], numbers["same_words_share"]) == (same, pytest.approx(share))
    assert (results["configs"]["relation"]["same_words_items"], results["configs"]["relation"]["same_words_share"]) == (
        4,
        1.0,
    )
    summary = results["sugarcrepe"]
    assert summary["headline"] == "mean"
    model_averages, blind_averages = expected_averages(right), expected_averages(blind_right)
    assert list(summary["averages"]) == ["replace", "swap", "add", "mean", "pooled"]
    for name, average in summary["averages"].items():
        assert average["accuracy"] == pytest.approx(model_averages[name], abs=1e-12), name
        assert average["blind_accuracy"] == pytest.approx(blind_averages[name], abs=1e-12), name
        low, high = average["accuracy_ci"]
        assert low <= average["accuracy"] + 1e-9 and average["accuracy"] <= high + 1e-9
    assert summary["averages"]["swap"]["splits"] == ["sugarcrepe_swap_obj", "sugarcrepe_swap_att"]
    assert summary["averages"]["pooled"]["num_items"] == NUM_ITEMS

    # The card of a NegCLIP evaluated on these configs reports SugarCrepe beside ARO.
    args = NegCLIPTrainingArguments(
        output_dir=str(tmp_path / "negclip"), model_name_or_path="openai/clip-vit-base-patch32", dataset="org/coco"
    )
    card = model_card(args, EvalResult.from_json(results))
    aro_part, sugarcrepe_part = card.split("## SugarCrepe results")
    assert "| relation |" in aro_part and "sugarcrepe_" not in aro_part.split("## ARO results")[1]
    assert f"| **mean** (headline) | {model_averages['mean']:.3f}" in sugarcrepe_part
    assert "| swap_obj |" in sugarcrepe_part and "## Retrieval and zero-shot" in sugarcrepe_part
    assert "Not measured with this training" in model_card(args).split("## SugarCrepe results")[1]


@pytest.mark.parametrize("protocol", ["paper", "mteb"])
def test_a_bag_of_words_ties_exactly_on_the_same_words_items(built, tmp_path, monkeypatch, protocol):
    """A bag-of-words scorer ties every item whose negative has the true caption's words: wrong under the paper's
    protocol, right under mteb's argmax, whose headline is the accuracy over all items pooled."""
    (tmp_path / "bag_of_words.py").write_text(BAG_OF_WORDS_SCORER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import bag_of_words

    argv = [
        "eval",
        "--scorer",
        "bag_of_words:score",
        "--dataset",
        str(built),
        "--config",
        "sugarcrepe",
        "--save-scores",
    ]
    assert main(argv + ["--protocol", protocol, "--num-workers", "0", "--bootstrap", "0", "--out", "eval"]) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    right = {}
    for config in SUGARCREPE_CONFIGS:
        data = load_dataset(str(built), config, split="test")
        scores = one_at_a_time(lambda picture, caption: bag_of_words.score([picture], [caption])[0], data)
        ties = scores[:, 0] == scores[:, 1]
        saved_scores = pq.read_table(tmp_path / "eval" / "scores" / f"{config}.parquet").to_pydict()
        assert saved_scores["same_words"] == ties.tolist()  # the items only order can solve, named one by one
        assert (
            ties.sum()
            == results["configs"][config]["num_ties"]
            == SAME_WORDS.get(config.removeprefix("sugarcrepe_"), 0)
        )
        right[config] = (scores[:, 0] >= scores[:, 1]) if protocol == "mteb" else (scores[:, 0] > scores[:, 1])
        assert results["configs"][config]["accuracy"] == pytest.approx(right[config].mean(), abs=1e-12)
    summary = results["sugarcrepe"]
    assert summary["headline"] == ("pooled" if protocol == "mteb" else "mean")
    averages = expected_averages(right)
    assert averages["mean"] != pytest.approx(averages["pooled"])  # the two averages are told apart
    for name, expected in averages.items():
        assert summary["averages"][name]["accuracy"] == pytest.approx(expected, abs=1e-12)
        assert summary["averages"][name]["accuracy_ci"] is None  # --bootstrap 0


def test_one_split_or_one_group_gets_only_the_averages_it_completes(built, tmp_path, monkeypatch):
    (tmp_path / "bag_of_words.py").write_text(BAG_OF_WORDS_SCORER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["eval", "--scorer", "bag_of_words:score", "--dataset", str(built), "--num-workers", "0"]
    assert main(argv + ["--config", "sugarcrepe_swap_obj,sugarcrepe_swap_att", "--out", "swap"]) == 0
    assert list(json.loads(Path("swap/results.json").read_text())["sugarcrepe"]["averages"]) == ["swap"]
    assert main(argv + ["--config", "sugarcrepe_add_att", "--out", "one"]) == 0
    results = json.loads(Path("one/results.json").read_text())
    assert "sugarcrepe" not in results and list(results["configs"]) == ["sugarcrepe_add_att"]


def test_the_same_words_share_of_an_order_config_leaves_out_options_equal_to_the_true_caption(tmp_path, monkeypatch):
    """Item 0 has a shuffle of its words among its options, item 1 none, item 2 only its true caption again and
    other words: one item of three."""
    (tmp_path / "bag_of_words.py").write_text(BAG_OF_WORDS_SCORER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    true = "a red circle above a blue square"
    options = [
        [true, "a blue circle above a red square", "a red star", "a blue star", "a star"],
        [true, "a red star", "a blue star", "a green star", "a star"],
        [true, true, "a red star", "a blue star", "a green star"],
    ]
    names = ["original", "a", "b", "c", "d"]
    rows = [
        {
            "item_id": index,
            "image": random_image(index),
            "image_id": str(index),
            "caption_id": f"{index}#0",
            "caption_options": choices,
            "perturbations": names,
        }
        for index, choices in enumerate(options)
    ]
    write_config(tmp_path / "aro", "coco_order", rows)
    argv = ["eval", "--scorer", "bag_of_words:score", "--dataset", "aro", "--config", "coco_order"]
    assert main(argv + ["--num-workers", "0", "--out", "eval"]) == 0
    numbers = json.loads(Path("eval/results.json").read_text())["configs"]["coco_order"]
    assert (numbers["same_words_items"], numbers["same_words_share"]) == (1, pytest.approx(1 / 3))


def test_download_fetches_the_authors_files_and_coco_val2017_then_builds(serve, tmp_path, monkeypatch, capsys):  # noqa: F811
    repository, images = write_sugarcrepe(tmp_path / "staging")
    archive = zip_of(tmp_path / "val2017.zip", {f"val2017/{name}": (images / name).read_bytes() for name in IMAGES})
    files = {f"/{split}.json": (repository / "data" / f"{split}.json").read_bytes() for split in ITEMS}
    server = serve(files | {"/val2017.zip": archive.read_bytes()}, drop={"/val2017.zip", "/swap_att.json"})
    monkeypatch.setattr(build, "SUGARCREPE_URL", server.url("/{name}"))
    monkeypatch.setattr(build, "COCO_VAL2017_URL", server.url("/val2017.zip"))
    root, out = tmp_path / "sources", tmp_path / "aro"
    assert main(["build", "--download", str(root), "--configs", "sugarcrepe", "--out", str(out)]) == 0
    assert "sugarcrepe_swap_att/test: 3 items" in capsys.readouterr().out
    assert (root / "coco2017" / "val2017" / IMAGES[0]).read_bytes() == (images / IMAGES[0]).read_bytes()
    assert [range_ for path, range_ in server.requests if path == "/val2017.zip"][1].startswith("bytes=")
    assert len(load_dataset(str(out), "sugarcrepe_replace_rel", split="test")) == len(ITEMS["replace_rel"])


# Hostile inputs: one line naming the file and the item, exit 2, no traceback, the sources byte-identical, no output.


def edit_split(sources, split: str, edit) -> Path:
    path = sources[0] / "data" / f"{split}.json"
    items = json.loads(path.read_text())
    edit(items)
    path.write_text(json.dumps(items))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda items: items["1"].pop("negative_caption"), "item 1 has no 'negative_caption' key"),
        (lambda items: items["2"].update(caption=None), "item 2: caption should be a string, not null"),
        (lambda items: items["0"].update(caption=7), "item 0: caption should be a string, not int 7"),
        (lambda items: items["1"].update(negative_caption="  "), "item 1 has an empty negative_caption"),
        (
            lambda items: items["0"].update(negative_caption=items["0"]["caption"]),
            "item 0: the negative caption equals",
        ),
        (lambda items: items.update(x1=items["0"]), "item key 'x1' is not an item id"),
        (lambda items: items.update({"007": items["0"]}), "item key '007' is not an item id"),
        (
            lambda items: items["2"].update(filename="../../secret.jpg"),
            "item 2: filename '../../secret.jpg' leads outside",
        ),
        (lambda items: items["2"].update(filename="a\0.jpg"), "holds a NUL byte"),
        (lambda items: items.update({"1": "a caption"}), "item 1 is a str, not an object"),
    ],
)
def test_every_field_is_checked_naming_the_file_and_item(sources, tmp_path, capfd, edit, message):
    path = edit_split(sources, "replace_att", edit)
    before = snapshot(tmp_path)
    line = refused(capfd, build_argv(sources, tmp_path / "aro"), message)
    assert str(path) in line
    assert snapshot(tmp_path) == before and not (tmp_path / "aro").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[]", "should hold a JSON object of items keyed by their id"),
        (b"{}", "holds no items; a config cannot be empty"),
        (b'{"0": {"filename": "a.jpg", "caption": "a", "caption": "b"}}', "the key 'caption' is given twice"),
        (b'{"0": {}, "0": {}}', "the key '0' is given twice"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b'{"0": ', "is not valid JSON"),
    ],
)
def test_a_split_file_that_is_not_the_authors_format_is_named(sources, tmp_path, capfd, content, message):
    path = sources[0] / "data" / "swap_obj.json"
    path.write_bytes(content)
    before = snapshot(tmp_path)
    line = refused(capfd, build_argv(sources, tmp_path / "aro"), message)
    assert str(path) in line and snapshot(tmp_path) == before and not (tmp_path / "aro").exists()


def test_missing_split_files_and_two_versions_of_one_are_named(sources, tmp_path, capfd):
    data = sources[0] / "data"
    shutil.copy(data / "swap_obj.json", data / "swap_ent.json")
    before = snapshot(tmp_path)
    refused(capfd, build_argv(sources, tmp_path / "aro"), "holds both swap_obj.json and swap_ent.json")
    (data / "swap_ent.json").unlink()
    (data / "add_att.json").unlink()
    before = snapshot(tmp_path)
    refused(capfd, build_argv(sources, tmp_path / "aro"), "sugarcrepe_add_att: ")
    assert snapshot(tmp_path) == before and not (tmp_path / "aro").exists()


def test_the_two_source_options_go_together(sources, tmp_path, capfd):
    refused(capfd, ["build", "--sugarcrepe-dir", str(sources[0]), "--out", str(tmp_path / "aro")], "go together")


def test_an_output_inside_the_images_is_refused(sources, tmp_path, capfd):
    before = snapshot(tmp_path)
    refused(capfd, build_argv(sources, sources[1] / "aro"), "lies inside the input")
    assert snapshot(tmp_path) == before


def test_missing_and_corrupt_images_are_named_or_skipped_with_every_item_of_the_image(sources, tmp_path, capfd):
    repository, images = sources
    (images / IMAGES[1]).unlink()
    before = snapshot(tmp_path)
    refused(capfd, build_argv(sources, tmp_path / "aro"), f"are missing, e.g. {images / IMAGES[1]}")
    assert snapshot(tmp_path) == before
    (images / IMAGES[1]).write_bytes(b"not a jpeg")
    before = snapshot(tmp_path)
    line = refused(capfd, build_argv(sources, tmp_path / "aro"), "image unreadable")
    assert "item 1 (" in line and snapshot(tmp_path) == before

    assert main(build_argv(sources, tmp_path / "aro", "--skip-missing", "--configs", "sugarcrepe_swap_obj")) == 0
    skipped = json.loads((tmp_path / "aro" / "skipped.json").read_text())
    assert sorted(entry["item"] for entry in skipped) == [0, 3]  # both items of the corrupt image, by key
    assert sorted(load_dataset(str(tmp_path / "aro"), "sugarcrepe_swap_obj", split="test")["item_id"]) == [1]
