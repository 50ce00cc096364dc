"""`aro eval` and `aro retrieval` against inputs that used to end in a traceback or a silently wrong number: each is
now one line naming the file, item or option, exit code 2, and every file the user gave is byte-identical after.
Dataset and option mistakes are named before the model loads: the model given is one that does not exist, and the
error is about the dataset or option, not the model."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY_WORDS, refused
from datasets import Dataset, Features, List, Value
from datasets import Image as ImageFeature
from PIL import Image

from aro.builders.writer import configs_yaml
from aro.core.contract import config_features
from aro.metrics.scoring import load_split, score_items
from aro.models.tiny_clip import make_tiny_clip

MISSING_MODEL = "/no/such/model"
SHARD = "test-00000-of-00001.parquet"


@pytest.fixture
def aro_folder(scenes) -> Path:
    """The session's synthetic ARO folder (conftest's `scenes`): the four configs, coco_retrieval and the scenes."""
    return scenes


def snapshot(*paths: Path) -> dict[Path, bytes]:
    """Every file under `paths` (files or folders), with its bytes."""
    files = [path for root in paths for path in ([root] if root.is_file() else sorted(root.rglob("*")))]
    return {path: path.read_bytes() for path in files if path.is_file()}


def refused_unchanged(capfd, argv: list[str], message: str, *inputs: Path) -> str:
    """`refused` (exit 2, one error line holding `message`, no traceback), the `inputs` byte-identical after, and no
    `--out` written."""
    before = snapshot(*inputs)
    line = refused(capfd, argv, message)
    assert snapshot(*inputs) == before
    if "--out" in argv:
        assert not Path(argv[argv.index("--out") + 1]).exists()
    return line


def eval_args(model, dataset, tmp_path, *extra) -> list[str]:
    out = str(tmp_path / "eval")
    return ["eval", "--model", str(model), "--dataset", str(dataset), "--num-workers", "0", "--out", out, *extra]


def one_config(source: Path, folder: Path, config: str, table: pa.Table | None = None, card: bool = True) -> Path:
    """A folder holding only `config` (its Parquet from `source`, or `table`), with a card naming it, or without one
    (then `datasets` calls its one config `default`, as a Hub copy's)."""
    (folder / config).mkdir(parents=True)
    table = pq.read_table(source / config / SHARD) if table is None else table
    pq.write_table(table, folder / config / SHARD)
    if card:
        yaml = configs_yaml({(config, "test"): table.num_rows}, {config: config_features(config)})
        (folder / "README.md").write_text(yaml + "\n")
    return folder


# A config the folder lacks, or holds under another name ------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "asked", "message"),
    [
        ("coco_order", "relation", "has no config relation (it has coco_order)"),
        ("relation", "all", "has no config attribution (it has relation)"),
    ],
)
def test_a_config_the_folder_lacks_is_named_with_what_it_has(aro_folder, tmp_path, capfd, held, asked, message):
    folder = one_config(aro_folder, tmp_path / f"only-{held}", held)
    refused_unchanged(
        capfd, eval_args(MISSING_MODEL, folder, tmp_path, "--config", asked), f"dataset {folder} {message}", folder
    )


def test_a_single_default_config_is_read_only_as_the_one_config_it_can_be(aro_folder, tmp_path, capfd):
    bare = one_config(aro_folder, tmp_path / "bare", "coco_order", card=False)
    refused_unchanged(
        capfd,
        eval_args(MISSING_MODEL, bare, tmp_path, "--config", "all"),
        f"dataset {bare} has a single config (default), which holds one ARO config, not 4",
        bare,
    )
    line = refused_unchanged(
        capfd, eval_args(MISSING_MODEL, bare, tmp_path, "--config", "relation"), "not those of relation", bare
    )
    assert f"{bare}/coco_order/{SHARD} has the columns" in line and "caption_options" in line


# Parquet that cannot be scored, named before the model loads ---------------------------------------------------------


def without_false_caption(table: pa.Table) -> pa.Table:
    return table.drop(["false_caption"])


def with_a_null_caption(table: pa.Table) -> pa.Table:
    captions = table.column("false_caption").to_pylist()
    captions[3] = None
    return table.set_column(table.schema.get_field_index("false_caption"), "false_caption", pa.array(captions))


def without_rows(table: pa.Table) -> pa.Table:
    return table.slice(0, 0)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            without_false_caption,
            " has the columns {columns}, not those of relation (image, true_caption, false_caption)",
        ),
        (with_a_null_caption, ": item 3 (item_id {item_id}) has false_caption None: every caption must be text"),
        (without_rows, ": the relation config has no rows to score"),
    ],
)
def test_parquet_that_cannot_be_scored_is_named_before_the_model_loads(aro_folder, tmp_path, capfd, damage, message):
    table = damage(pq.read_table(aro_folder / "relation" / SHARD))
    folder = one_config(aro_folder, tmp_path / "aro", "relation", table)
    item_id = pq.read_table(aro_folder / "relation" / SHARD).column("item_id")[3].as_py()
    refused_unchanged(
        capfd,
        eval_args(MISSING_MODEL, folder, tmp_path, "--config", "relation"),
        f"{folder}/relation/{SHARD}" + message.format(columns=table.column_names, item_id=item_id),
        folder,
    )


def test_limit_zero_is_refused_before_the_model_loads(aro_folder, tmp_path, capfd):
    refused_unchanged(
        capfd,
        eval_args(MISSING_MODEL, aro_folder, tmp_path, "--config", "relation", "--limit", "0"),
        "the limit (--limit) must be at least 1 item per config, not 0",
        aro_folder,
    )


def test_captions_that_cannot_be_scored_are_named_from_python_too():
    """A dataset in memory (or from the Hub) is checked where its items are read, naming the item."""
    model, processor = make_tiny_clip(TINY_WORDS, image_size=32, seed=0)
    image = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    features = Features({"image": ImageFeature(), "caption_options": List(Value("string"))})
    ragged = Dataset.from_dict(
        {"image": [image] * 2, "caption_options": [["a red circle", "circle a red"], ["a", "b", "c"]]}, features
    )
    with pytest.raises(ValueError, match=r"item 1 has 3 caption options and item 0 has 2"):
        score_items(model, processor, ragged)
    null = Dataset.from_dict({"image": [image], "caption_options": [["a red circle", None]]}, features)
    with pytest.raises(ValueError, match=r"item 0 has caption_options\[1\] None: every caption must be text"):
        score_items(model, processor, null)
    with pytest.raises(ValueError, match="the dataset has no rows"):
        score_items(model, processor, null.select([]))


# Scores that are not finite ------------------------------------------------------------------------------------------


def test_a_scorer_returning_nan_or_infinity_is_refused_naming_the_item_and_option(aro_folder, tmp_path, capfd):
    data = load_split(str(aro_folder), "relation")
    target = data[5]["false_caption"]
    # The first item and option showing `target`: the first non-finite score in item order.
    item, option = next(
        (index, position)
        for index, row in enumerate(data)
        for position, caption in enumerate([row["true_caption"], row["false_caption"]])
        if caption == target
    )
    for value, shown in (("float('nan')", "nan"), ("float('inf')", "inf")):
        scorer = tmp_path / f"scorer_{shown}.py"
        scorer.write_text(
            f"def score(images, captions):\n    return [{value} if caption == {target!r} else len(caption) "
            "for caption in captions]\n"
        )
        argv = ["eval", "--scorer", f"{scorer}:score", "--dataset", str(aro_folder), "--config", "relation"]
        refused_unchanged(
            capfd,
            [*argv, "--num-workers", "0", "--out", str(tmp_path / "eval")],
            f"the scorer scorer_{shown}:score gave the score {shown} to item {item} (item_id {data[item]['item_id']}), "
            f"option {option} ({target!r})",
            aro_folder,
            scorer,
        )


def test_a_model_giving_nan_is_refused(aro_folder, tmp_path, capfd):
    model, processor = make_tiny_clip(TINY_WORDS, image_size=32, seed=0)
    with torch.no_grad():
        model.visual_projection.weight[0, 0] = float("nan")  # every image embedding, hence every score, is NaN
    folder = tmp_path / "nan-clip"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    line = refused_unchanged(
        capfd,
        eval_args(folder, aro_folder, tmp_path, "--config", "coco_order"),
        "CLIPModel gave the score nan to item 0 (item_id 0), option 0",
        aro_folder,
        folder,
    )
    assert "scores must be finite numbers" in line


# Model folders that cannot be loaded --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no weights", "has no weights that can be loaded: Error no file named model.safetensors"),
        ("no processor", "has no processor that can be loaded: Can't load image processor"),
        ("no tokenizer", "has no tokenizer files: its tokenizer knows only its 2 special tokens"),
        ("corrupt weights", "model.safetensors cannot be read (Error while deserializing header"),
        ("truncated weights", "model.safetensors cannot be read (Error while deserializing header"),
    ],
)
def test_a_model_folder_that_cannot_be_loaded_is_one_line(aro_folder, tiny_clip_dir, tmp_path, capfd, damage, message):
    folder = Path(shutil.copytree(tiny_clip_dir, tmp_path / "model"))
    weights = folder / "model.safetensors"
    if damage == "no weights":
        weights.unlink()
    elif damage == "no processor":
        for name in ("processor_config.json", "tokenizer.json", "tokenizer_config.json"):
            (folder / name).unlink()
    elif damage == "no tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (folder / name).unlink()
    elif damage == "corrupt weights":
        weights.write_bytes(b"not safetensors" * 64)
    else:
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = refused_unchanged(
        capfd, eval_args(folder, aro_folder, tmp_path, "--config", "relation"), message, folder, aro_folder
    )
    assert str(folder) in line


# aro retrieval ------------------------------------------------------------------------------------------------------


def test_retrieval_names_a_config_the_folder_lacks(aro_folder, tiny_clip_dir, tmp_path, capfd):
    argv = ["retrieval", "--model", str(tiny_clip_dir), "--dataset", str(aro_folder), "--num-workers", "0"]
    refused_unchanged(
        capfd,
        [*argv, "--config", "flickr30k_retrieval", "--out", str(tmp_path / "out")],
        f"dataset {aro_folder} has no config flickr30k_retrieval (it has relation, attribution",
        aro_folder,
        tiny_clip_dir,
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON (Expecting property name"),
        (json.dumps({"configs": {"relation": {"accuracy": 0.5}}}), "holds ['configs'], not the results of"),
        (json.dumps({"retrieval": [1, 2]}), "holds ['retrieval'], not the results of"),
    ],
)
def test_base_results_that_are_not_retrieval_results_are_refused_before_the_run(
    aro_folder, tmp_path, capfd, content, message
):
    base = tmp_path / "base.json"
    base.write_text(content)
    argv = ["retrieval", "--model", MISSING_MODEL, "--dataset", str(aro_folder), "--card", "--base-results", str(base)]
    refused_unchanged(capfd, [*argv, "--out", str(tmp_path / "out")], f"--base-results {base} {message}", base)


def test_max_images_zero_is_refused_before_the_run(aro_folder, tmp_path, capfd):
    argv = ["retrieval", "--model", MISSING_MODEL, "--zero-shot", str(aro_folder), "--zero-shot-config", "scenes"]
    refused_unchanged(
        capfd,
        [*argv, "--max-images", "0", "--out", str(tmp_path / "out")],
        "max_images (--max-images) must be at least 1, not 0",
        aro_folder,
    )
