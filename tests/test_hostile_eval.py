"""`aro eval` against hostile inputs: one error line naming what is wrong, checked before any model loads where it
can be (no traceback), outputs replaced as a whole, and Order items with identical options counted."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_WORDS, refused
from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image

from aro.builders.writer import configs_yaml
from aro.cli import main
from aro.core.contract import config_features
from aro.metrics.scoring import load_split
from aro.metrics.scoring.evaluation import evaluate_model
from aro.models.tiny_clip import make_tiny_clip

MISSING_MODEL = "/no/such/model"


@pytest.fixture(scope="module")
def aro_folder(tmp_path_factory) -> Path:
    """A small synthetic ARO folder (four configs) to evaluate on."""
    from aro.builders.synthetic import SyntheticSizes, build_synthetic_aro

    folder = tmp_path_factory.mktemp("synthetic") / "aro"
    build_synthetic_aro(
        folder,
        seed=0,
        sizes=SyntheticSizes(
            train_scenes=4, test_scenes=2, relation_per_relation=2, attribution_per_pair=1, order_captions=4
        ),
    )
    return folder


def eval_args(model, dataset, *extra) -> list[str]:
    return ["eval", "--model", str(model), "--dataset", str(dataset), "--num-workers", "0", *extra]


# checked before the model loads: a model that does not exist is named only after these -----------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--config", "vg_relation"], "unknown ARO config(s) ['vg_relation']"),
        (["--batch-size", "0"], "batch size must be at least 1, not 0"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--device-map", "auto", "--device", "cpu"], "the device map places the model itself"),
        (["--limit", "0"], "the limit (--limit) must be at least 1 item per config, not 0"),
        (["--bootstrap", "-1"], "bootstrap draws (--bootstrap) must be 0 (no intervals) or more, not -1"),
        (["--seed", "-5"], "the seed (--seed) must be 0 or more, not -5"),
    ],
)
def test_bad_options_are_refused_before_the_model_loads(aro_folder, capfd, extra, message):
    refused(capfd, eval_args(MISSING_MODEL, aro_folder, *extra), message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused(aro_folder, capfd):
    refused(
        capfd,
        eval_args(MISSING_MODEL, aro_folder, "--device", "cuda"),
        "device 'cuda' asked for, but CUDA is not available",
    )


@pytest.mark.parametrize("dataset", ["x", "missing/folder/aro", "./aro-missing"])
def test_a_dataset_that_does_not_exist_is_named_before_the_model_loads(tmp_path, capfd, monkeypatch, dataset):
    monkeypatch.chdir(tmp_path)
    refused(capfd, eval_args(MISSING_MODEL, dataset), f"dataset folder {dataset} does not exist")


def test_a_hub_dataset_out_of_reach_is_one_line(tiny_clip_dir, tmp_path, capfd):
    refused(
        capfd,
        eval_args(tiny_clip_dir, "org/no-such-aro", "--config", "relation", "--out", str(tmp_path / "eval")),
        "dataset 'org/no-such-aro' is not a local folder",
    )


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (MISSING_MODEL, "model /no/such/model is not a folder"),
        ("org/no-such-model", "model 'org/no-such-model' cannot be loaded"),
    ],
)
def test_a_model_that_does_not_exist_is_one_line(aro_folder, capfd, model, message):
    refused(capfd, eval_args(model, aro_folder, "--config", "relation"), message)


def test_a_dataset_folder_given_as_the_model_is_one_line(aro_folder, capfd):
    refused(capfd, eval_args(aro_folder, aro_folder, "--config", "relation"), f"model '{aro_folder}' cannot be loaded")


def test_a_clip_given_as_the_blind_language_model_is_one_line(aro_folder, tiny_clip_dir, tmp_path, capfd):
    refused(
        capfd,
        eval_args(tiny_clip_dir, aro_folder, "--config", "relation", "--blind", str(tiny_clip_dir), "--out", "o"),
        f"--blind {tiny_clip_dir} is a clip model, not a language model that writes text",
    )


@pytest.mark.parametrize(
    ("content", "encoding", "message"),
    [(None, None, "cannot be read (No such file or directory)"), ("mod\xe8le\n", "latin-1", "cannot be read")],
)
def test_a_models_file_that_cannot_be_read_is_one_line(aro_folder, tmp_path, capfd, content, encoding, message):
    listing = tmp_path / "models.txt"
    if content is not None:
        listing.write_text(content, encoding=encoding)
    argv = ["eval", "--models-file", str(listing), "--dataset", str(aro_folder)]
    refused(capfd, argv, f"--models-file {listing} {message}")


BROKEN_SCORERS = {
    "raises": ("def score(images, captions):\n    return 1 / 0\n", "ZeroDivisionError: division by zero (at {file}:2)"),
    "words": (
        "def score(images, captions):\n    return ['high'] * len(captions)\n",
        "list values that are not numbers",
    ),
    "syntax": ("def score(images, captions)\n    return []\n", "fails as it loads: SyntaxError"),
    "import": ("raise RuntimeError('no GPU here')\n", "fails as it loads: RuntimeError: no GPU here (at {file}:1)"),
    "missing": (None, "no file {file}"),
}


@pytest.mark.parametrize("kind", BROKEN_SCORERS)
def test_a_scorer_that_fails_is_one_line_naming_where(aro_folder, tmp_path, capfd, kind):
    source, message = BROKEN_SCORERS[kind]
    scorer = tmp_path / f"scorer_{kind}.py"
    if source is not None:
        scorer.write_text(source)
    argv = ["eval", "--scorer", f"{scorer}:score", "--dataset", str(aro_folder), "--config", "relation"]
    refused(capfd, [*argv, "--num-workers", "0", "--out", str(tmp_path / "out")], message.format(file=scorer))
    assert not (tmp_path / "out").exists()


def test_an_output_that_is_a_file_or_someone_elses_folder_is_refused(aro_folder, tmp_path, capfd):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    refused(capfd, eval_args(MISSING_MODEL, aro_folder, "--out", str(out)), "is a file")
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "chapter1.tex").write_text("mine")
    refused(capfd, eval_args(MISSING_MODEL, aro_folder, "--out", str(other)), "holds other files")
    assert out.read_text() == "mine" and (other / "chapter1.tex").read_text() == "mine"


# outputs, workers, the cache -------------------------------------------------------------------------------------


def test_a_new_run_replaces_the_whole_output_folder(aro_folder, tiny_clip_dir, tmp_path, capfd):
    out = tmp_path / "eval"
    assert main(eval_args(tiny_clip_dir, aro_folder, "--config", "relation,coco_order", "--out", str(out))) == 0
    assert (out / "coco_order.png").exists()
    assert main(eval_args(tiny_clip_dir, aro_folder, "--config", "relation", "--out", str(out))) == 0
    assert sorted(path.name for path in out.iterdir()) == [
        ".aro-output.json",  # the marker that lets the next run replace this folder
        "relation.png",
        "results.json",
        "results.md",
    ]  # no model-index.yaml: the dataset has no Hub id
    assert list(json.loads((out / "results.json").read_text())["configs"]) == ["relation"]
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".eval")] == []


def test_a_corrupt_image_in_a_worker_names_the_item_without_the_workers_traceback(
    aro_folder, tiny_clip_dir, tmp_path, capfd
):
    broken = tmp_path / "broken"
    rows = load_split(str(aro_folder), "relation").cast_column("image", ImageFeature(decode=False)).to_list()
    rows[3]["image"] = {"bytes": b"not an image", "path": None}
    write_config(broken, "relation", rows)
    refused(
        capfd,
        ["eval", "--model", str(tiny_clip_dir), "--dataset", str(broken), "--config", "relation", "--num-workers", "1"],
        "item 3: the image cannot be decoded",
    )


def test_the_local_dataset_cache_keeps_only_the_newest_copy_of_a_folder(aro_folder, tmp_path):
    import datasets

    folder = tmp_path / "aro"
    rows = load_split(str(aro_folder), "relation").cast_column("image", ImageFeature(decode=False)).to_list()
    write_config(folder, "relation", rows)
    assert load_split(str(folder), "relation").num_rows == len(rows)
    write_config(folder, "relation", rows[:3])  # rebuilt in place
    assert load_split(str(folder), "relation").num_rows == 3
    copies = [path for path in (Path(datasets.config.HF_DATASETS_CACHE) / "local").iterdir()]
    assert len(copies) == 2  # the synthetic folder's and this folder's
    assert all(len(list(copy.iterdir())) == 1 for copy in copies)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `folder`, hidden ones included."""
    return {str(path.relative_to(folder)): path.read_bytes() if path.is_file() else None for path in folder.rglob("*")}


def test_out_dot_in_a_project_folder_is_refused_and_nothing_is_touched(
    aro_folder, tiny_clip_dir, tmp_path, capfd, monkeypatch
):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('mine')\n")
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "results.json").write_text('{"mine": true}\n')  # a file of the same name as eval's own
    before = snapshot(project)
    monkeypatch.chdir(project)
    refused(
        capfd,
        eval_args(tiny_clip_dir, aro_folder, "--config", "relation", "--out", "."),
        "holds other files than an earlier aro eval output (.git, results.json, src)",
    )
    assert snapshot(project) == before


def test_a_notebook_added_to_an_earlier_eval_folder_is_named_and_kept(aro_folder, tiny_clip_dir, tmp_path, capfd):
    out = tmp_path / "eval"
    argv = eval_args(tiny_clip_dir, aro_folder, "--config", "relation", "--bootstrap", "0", "--out", str(out))
    assert main(argv) == 0
    (out / "analysis.ipynb").write_text('{"cells": [], "nbformat": 4}\n')
    before = snapshot(out)
    refused(capfd, argv, "analysis.ipynb (not written by aro)")
    assert snapshot(out) == before


def test_several_models_share_one_output_replaced_whole_and_a_file_added_inside_is_named(
    aro_folder, tiny_clip_dir, tmp_path, capfd
):
    other = tmp_path / "other-clip"
    model, processor = make_tiny_clip(TINY_WORDS, image_size=32, seed=5)
    model.save_pretrained(other)
    processor.save_pretrained(other)
    out = tmp_path / "eval"
    common = ["--config", "relation", "--bootstrap", "0", "--out", str(out)]
    both = ["eval", "--model", str(tiny_clip_dir), "--model", str(other), "--dataset", str(aro_folder), *common]
    assert main([*both, "--num-workers", "0"]) == 0
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [".aro-output.json", "comparison.csv", "comparison.md", "comparison.png", tiny_clip_dir.name, "other-clip"]
    )
    notebook = out / "other-clip" / "analysis.ipynb"
    notebook.write_text('{"cells": []}\n')
    before = snapshot(out)
    refused(capfd, [*both, "--num-workers", "0"], "other-clip/analysis.ipynb (not written by aro)")
    assert snapshot(out) == before
    notebook.unlink()  # the folder is again exactly what eval wrote: a new run replaces it whole, never merged
    assert main(eval_args(other, aro_folder, *common)) == 0
    assert sorted(path.name for path in out.iterdir()) == [
        ".aro-output.json",
        "relation.png",
        "results.json",
        "results.md",
    ]


# identical options -----------------------------------------------------------------------------------------------


def write_config(folder: Path, config: str, rows: list[dict]) -> None:
    """An ARO folder of one config as `aro build` lays it out (Parquet shard and a card with `configs:` YAML)."""
    (folder / config).mkdir(parents=True, exist_ok=True)
    for old in (folder / config).glob("*.parquet"):
        old.unlink()
    Dataset.from_list(rows, features=config_features(config)).to_parquet(
        folder / config / "test-00000-of-00001.parquet"
    )
    (folder / "README.md").write_text(
        configs_yaml({(config, "test"): len(rows)}, {config: config_features(config)}) + "\n"
    )


def test_results_count_items_with_identical_options_and_leave_out_those_without_negative(tiny_clip_dir, tmp_path):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    options = [
        [
            "a red circle above a blue square",
            "a blue circle above a red square",
            "a red square above a blue circle",
            "above a red circle a blue square",
            "a blue square a red circle above",
        ],
        ["a red circle", "a red circle", "a circle red", "red a circle", "circle a red"],
        ["a a a"] * 5,
    ]
    rows = [
        {
            "item_id": index,
            "image": image,
            "image_id": str(index),
            "caption_id": f"{index}#0",
            "caption_options": captions,
            "perturbations": ["original", "a", "b", "c", "d"],
        }
        for index, captions in enumerate(options)
    ]
    folder = tmp_path / "aro"
    write_config(folder, "coco_order", [row | {"image": {"bytes": encode(row["image"]), "path": None}} for row in rows])
    numbers = evaluate_model(str(tiny_clip_dir), str(folder), "coco_order").configs["coco_order"]
    assert numbers.items_with_identical_options == 2 and numbers.items_without_negative == 1
    assert numbers.num_items == 2


def encode(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_help_imports_no_torch():
    """`aro --help` and `aro <command> --help` load only the command's parser module: no torch, transformers or
    datasets."""
    import subprocess

    for command in (
        [],
        ["build"],
        ["eval"],
        ["demo"],
        ["push-metric"],
        ["convert"],
        ["retrieval"],
        ["train"],
        ["mine"],
    ):
        code = (
            "import sys\nfrom aro.cli import main\n"
            "try:\n    main(sys.argv[1:] + ['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = ('torch', 'transformers', 'datasets')\n"
            "print(sorted(name for name in heavy if name in sys.modules), file=sys.stderr)"
        )
        finished = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, timeout=120)
        assert finished.stderr.strip().splitlines()[-1] == "[]", (command, finished.stderr)
        assert "default" in finished.stdout or not command
