"""`aro mine` and `aro train` never write over their inputs or the user's files, refuse what they cannot read in one
line, and never call a run NegCLIP that had no negatives to learn from (issue 22: data lost #4 and #5, silently
wrong #3, the train/mine tracebacks).

Every refusal goes through the command line, as a user meets it: exit 2, one error line naming the file, item or
option, no traceback, and every file of the user's byte-identical afterwards.
"""

import csv
import json
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import refused
from datasets import Dataset, load_dataset
from PIL import Image
from test_recipe import _released_file
from transformers import BertConfig

from aro.cli import main


def tree(folder) -> dict:
    """Every file below `folder` with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def data(scenes, tmp_path):
    """A copy of the synthetic image-caption dataset, the user's data that nothing may write over."""
    return shutil.copytree(scenes, tmp_path / "data")


def _mine(data, model, *flags) -> list[str]:
    return ["mine", "--dataset", str(data), "--dataset-config", "scenes", "--clip-model", str(model), *map(str, flags)]


@pytest.mark.parametrize(
    "out, message",
    [
        ("data/scenes/train-00000-of-00001.parquet", "lies inside the input"),
        ("data/negclip.parquet", "lies inside the input"),
        ("data", "is a folder"),
        ("train.parquet", "exists and is not a mining cache"),
        ("notes.txt", "exists and is not a mining cache"),
    ],
)
def test_mine_never_replaces_the_training_data_or_a_users_file(out, message, data, start_model, tmp_path, capfd):
    shutil.copy(data / "scenes" / "train-00000-of-00001.parquet", tmp_path / "train.parquet")
    (tmp_path / "notes.txt").write_text("my notes")
    before = tree(tmp_path)
    line = refused(capfd, _mine(data, start_model, "--out", tmp_path / out), message)
    assert f"--out {tmp_path / out}" in line
    assert tree(tmp_path) == before


def test_mine_writes_beside_the_dataset_replaces_only_its_cache_and_counts_the_negatives(data, start_model, capfd):
    """The default cache lies beside the dataset, not in it: a folder without a card (its data files found by name)
    would read a cache inside it as training data."""
    before = tree(data)
    assert main(_mine(data, start_model)) == 0
    cache = data.parent / "data-negclip-mining" / "scenes-train.parquet"
    negatives = pq.read_table(cache).column("negatives").to_pylist()
    with_negative = sum(1 for row in negatives if len(row) > 0)
    assert with_negative > 0
    assert f"{with_negative} of {len(negatives)} rows" in capfd.readouterr().out
    assert tree(data) == before
    # An earlier cache is replaced by a new mining.
    assert main(_mine(data, start_model, "--seed", "1", "--out", cache)) == 0
    assert json.loads(pq.read_schema(cache).metadata[b"negclip_mining"])["seed"] == 1
    assert not [path.name for path in cache.parent.iterdir() if path.name != cache.name]  # nothing left beside it


def test_a_dataset_folder_without_a_card_is_mined_beside_and_still_loads(data, start_model, tmp_path):
    folder = tmp_path / "no-card"
    folder.mkdir()
    shutil.copy(data / "scenes" / "train-00000-of-00001.parquet", folder / "train-00000-of-00001.parquet")
    assert main(["mine", "--dataset", str(folder), "--clip-model", str(start_model)]) == 0
    assert sorted(path.name for path in folder.iterdir()) == ["train-00000-of-00001.parquet"]
    assert (tmp_path / "no-card-negclip-mining" / "default-train.parquet").is_file()
    assert len(load_dataset(str(folder), split="train")) == 72


@pytest.mark.parametrize("command", ["mine", "train"])
def test_a_config_a_folder_without_a_card_lacks_is_one_line(command, data, start_model, train_argv, tmp_path, capfd):
    folder = tmp_path / "no-card"
    folder.mkdir()
    shutil.copy(data / "scenes" / "train-00000-of-00001.parquet", folder / "train.parquet")
    argv = (
        _mine(folder, start_model, "--out", tmp_path / "cache.parquet")
        if command == "mine"
        else [str(word) for word in train_argv(tmp_path / "run", dataset=folder)]
    )
    refused(capfd, argv, f"dataset {folder} has no config scenes (it has default)")
    assert not (tmp_path / "cache.parquet").exists() and not (tmp_path / "run").exists()


def test_an_empty_dataset_to_mine_is_one_line(start_model, tmp_path, capfd):
    folder = tmp_path / "empty"
    folder.mkdir()
    Dataset.from_dict({"image": [], "caption": [], "image_id": []}).to_parquet(folder / "train.parquet")
    refused(capfd, ["mine", "--dataset", str(folder), "--clip-model", str(start_model)], f"--dataset {folder} (split")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty"]


@pytest.mark.parametrize(
    "output_dir, mining_cache, message",
    [
        ("data", None, "--output-dir {tmp}/data is an input of this run"),
        ("data/run", None, "lies inside the input"),
        (".", None, "holds the input"),
        ("notebooks", None, "already exists and holds other files than an earlier aro train run (analysis.ipynb)"),
        ("run", "run/mining.parquet", "--mining-cache {tmp}/run/mining.parquet lies inside --output-dir"),
    ],
)
def test_train_never_writes_into_an_input_or_a_users_folder(
    output_dir, mining_cache, message, data, train_argv, tmp_path, capfd
):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "analysis.ipynb").write_text("{}")
    before = tree(tmp_path)
    flags = dict(dataset=data, mining_cache=tmp_path / (mining_cache or "mining.parquet"))
    refused(capfd, [str(word) for word in train_argv(tmp_path / output_dir, **flags)], message.format(tmp=tmp_path))
    assert tree(tmp_path) == before


def test_train_never_writes_into_the_model_it_starts_from(train_argv, start_model, tmp_path, capfd):
    before = tree(start_model)
    refused(capfd, [str(word) for word in train_argv(start_model)], "is an input of this run")
    assert tree(start_model) == before


def test_a_non_clip_model_to_train_from_is_one_line(train_argv, tmp_path, capfd):
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path / "bert"
    )
    argv = [str(word) for word in train_argv(tmp_path / "run", model_name_or_path=tmp_path / "bert", batch_size=8)]
    refused(capfd, argv, f"--model-name-or-path {tmp_path / 'bert'} is a bert model, not a CLIP")
    assert not (tmp_path / "run").exists()


def _released(tmp_path, change) -> list[str]:
    """`aro train` on an authors' file whose second row `change(row)` alters (a dict of the TSV's columns)."""
    path = _released_file(tmp_path / "released")
    with open(path, newline="") as file:
        rows = list(csv.reader(file, delimiter="\t"))
    header = rows[0]
    record = dict(zip(header, rows[2]))
    change(record, tmp_path)
    rows[2] = [record[name] for name in header]
    with open(path, "w", newline="") as file:
        csv.writer(file, delimiter="\t").writerows(rows)
    return ["train", "--train-file", str(path), "--output-dir", str(tmp_path / "run"), "--batch-size", "4"]


def _outside_image(tmp_path) -> str:
    Image.new("RGB", (8, 8), "red").save(tmp_path / "outside.jpg")
    return str(tmp_path / "outside.jpg")


def _dot_dot(record, tmp_path):
    _outside_image(tmp_path)
    record["filepath"] = "../outside.jpg"


def _absolute(record, tmp_path):
    record["filepath"] = _outside_image(tmp_path)


def _symlink_out(record, tmp_path):
    link = tmp_path / "released" / "coco" / "link.jpg"
    link.symlink_to(_outside_image(tmp_path))
    record["filepath"] = "coco/link.jpg"


@pytest.mark.parametrize(
    "change, message",
    [
        (_dot_dot, "line 3, filepath '../outside.jpg' leads outside the image root"),
        (_absolute, "leads outside the image root"),
        (_symlink_out, "filepath 'coco/link.jpg' leads outside the image root"),
        (
            lambda record, tmp: record.update(neg_caption=repr(["a red circle " * 20_000])),
            "line 3: not a readable tab-separated file (field larger than field limit",
        ),
        (lambda record, tmp: record.update(neg_image="[1, 2"), "line 3, neg_image: not a Python list literal"),
    ],
)
def test_a_bad_row_of_the_authors_file_is_one_line_naming_the_line(change, message, tmp_path, capfd):
    argv = _released(tmp_path, change)
    before = tree(tmp_path)
    refused(capfd, argv, message)
    assert tree(tmp_path) == before


def test_captions_with_no_possible_swap_are_refused_unless_asked_and_the_card_says_so(
    start_model, train_argv, tmp_path, capfd
):
    """All captions alike: mining finds no swap, and hard-negative training would be CLIP's loss named NegCLIP."""
    folder = tmp_path / "alike"
    folder.mkdir()
    colours = ["red", "green", "blue", "yellow", "white", "black", "purple", "orange"]
    Dataset.from_dict(
        {
            "image": [Image.new("RGB", (40, 40), colour) for colour in colours for _ in range(2)],
            "caption": ["a photo"] * 16,
            "image_id": [colour for colour in colours for _ in range(2)],
        }
    ).to_parquet(folder / "train.parquet")
    argv = [
        str(word)
        for word in train_argv(
            tmp_path / "run", dataset=folder, dataset_config="default", mining_cache=tmp_path / "m.parquet"
        )
    ] + ["--batch-size", "4", "--epochs", "1"]
    refused(
        capfd,
        argv,
        f"{tmp_path / 'm.parquet'}: only 0 of 16 rows (0.0%) have a swapped-word negative, "
        "below --min-negative-share 0.1",
    )
    assert not (tmp_path / "run").exists()
    assert main([*argv, "--min-negative-share", "0"]) == 0
    results = json.loads((tmp_path / "run" / "training_results.json").read_text())
    assert results["negatives"] == {"rows": 16, "rows_with_negative": 0, "share": 0.0}
    assert "present for 0 of 16 training rows, 0.0%" in (tmp_path / "run" / "README.md").read_text()


def test_an_authors_file_without_negatives_is_refused(start_model, tmp_path, capfd):
    path = _released_file(tmp_path / "released")
    with open(path, newline="") as file:
        rows = list(csv.reader(file, delimiter="\t"))
    rows[1:] = [[*row[:3], "[]", row[4]] for row in rows[1:]]
    with open(path, "w", newline="") as file:
        csv.writer(file, delimiter="\t").writerows(rows)
    argv = ["train", "--train-file", str(path), "--output-dir", str(tmp_path / "run"), "--batch-size", "4"]
    refused(capfd, [*argv, "--model-name-or-path", str(start_model)], "only 0 of 8 rows (0.0%) have a swapped-word")
    assert not (tmp_path / "run").exists()
