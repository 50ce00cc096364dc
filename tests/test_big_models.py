"""Models at their real size, and the blind baseline item by item, through `aro eval --model FOLDER` as a user runs
it, on tiny saved models of three kinds (a dual encoder, a matching head, a generative model):

- `--device-map auto` with a `--max-memory` too small for the model spreads it over the CPU and the disk, as over
  several GPUs, and scores exactly as the model loaded whole;
- `--dtype bf16|fp16` loads the weights in that dtype, and scores within a stated tolerance of fp32;
- `--attn-implementation eager` and `sdpa` score alike, and a class without the one asked for is refused;
- every bad placement option is one line, and leaves the user's files as they were;
- `--save-scores` with `--blind` writes the blind model's score of every option, its prediction and correctness.
"""

import gc
import hashlib
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY_WORDS, refused
from safetensors.torch import load_file
from test_adapters import (
    aro_folder,  # noqa: F401 - the fixture: relation (10 items) and coco_order (3 items)
    blind_one_caption,
    blip2,
    blip_itm,
    causal_lm,
    one_at_a_time,
    one_pair,
    saved,
    siglip,
)
from vlm_reference import full_forward_scores

from aro.cli import main
from aro.core.errors import InvalidInput
from aro.metrics.scoring import Runtime, load_model, load_split
from aro.metrics.scoring.loading import load_blind_model
from aro.models.tiny_vlm import make_tiny_vlm

CONFIGS = ("relation", "coco_order")
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# How far a score may move from fp32, as a share of the largest fp32 score: measured at most 0.9% (SigLIP cosines)
# in bf16 and 0.14% in fp16 (8 significant bits against 11).
TOLERANCE = {"bf16": 0.03, "fp16": 0.005}
# The share of the weights' bytes `--max-memory` gives the CPU: enough for the first layers, the rest to the disk.
CPU_SHARE = 0.75
# A tiny BLIP-2 with a quarter of its weights' bytes on the CPU puts its Q-Former embeddings on the disk (at 0.75
# they stay on the CPU, and it scores).
EMBEDDINGS_ON_DISK_SHARE = 0.25


def llava():
    """A tiny LLaVA whose linear and embedding weights are drawn at std 0.2: at transformers' 0.02 it predicts nearly
    uniformly over its vocabulary, so P(Yes) barely differs between captions (1.54% to 1.56%), and any dtype or
    placement would pass a comparison."""
    model, processor = make_tiny_vlm("llava", TINY_WORDS)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                module.weight.normal_(0, 0.2)
    return model, processor


FAMILIES = {"siglip": siglip, "blip-itm": blip_itm, "llava": llava}


@pytest.fixture(scope="module")
def dataset(aro_folder):  # noqa: F811 - test_adapters' fixture, under a name of this module
    return aro_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Each family saved once, as a Hub checkpoint is."""
    root = tmp_path_factory.mktemp("models")
    return {name: saved(build, root / name) for name, build in FAMILIES.items()}


def evaluate(folder: Path, dataset: Path, out: Path, *options: str) -> tuple[dict, dict]:
    """`aro eval --save-scores` of a model folder with `options`: its results.json and its score tables."""
    arguments = ["eval", "--model", str(folder), "--dataset", str(dataset), "--config", ",".join(CONFIGS)]
    arguments += ["--num-workers", "0", "--bootstrap", "0", "--save-scores", "--out", str(out), *options]
    assert main(arguments) == 0
    tables = {config: pq.read_table(out / "scores" / f"{config}.parquet") for config in CONFIGS}
    return json.loads((out / "results.json").read_text()), tables


@pytest.fixture(scope="module")
def whole(folders, dataset, tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """Each family scored in fp32, loaded whole on the CPU: what every other placement is compared with."""
    out = tmp_path_factory.mktemp("whole")
    return {name: evaluate(folder, dataset, out / name) for name, folder in folders.items()}


def scores_of(tables: dict, prefix: str = "score_") -> np.ndarray:
    """Every option's score of every config, one flat array (NaN where an option is the true caption's text)."""
    return np.concatenate(
        [
            np.stack([table[name].to_numpy() for name in table.column_names if name.startswith(prefix)], axis=1).ravel()
            for table in tables.values()
        ]
    )


@torch.no_grad()
def fp32_reference(family: str, folder: Path, dataset: Path) -> np.ndarray:
    """Every option's score of every config as `scores_of` orders them, computed apart from the scorer: the model in
    fp32 and one forward per (image, caption) pair, as test_adapters (SigLIP, BLIP) and vlm_reference (LLaVA's
    VQAScore) define a score."""
    model, processor = load_model(str(folder))
    per_config = []
    for config in CONFIGS:
        data = load_split(str(dataset), config)
        if family == "llava":
            per_config.append(full_forward_scores(model, processor, data, "vqa"))
        else:
            per_config.append(
                one_at_a_time(lambda picture, caption: one_pair(model, processor, picture, caption), data)
            )
    return np.concatenate([scores.ravel() for scores in per_config])


def parameter_bytes(folder: Path, load=load_model) -> int:
    """The bytes of the parameters of the model in `folder`, loaded in fp32 by `load` (`load_blind_model` for a
    language model alone)."""
    model, _ = load(str(folder))
    return sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())


def contents(*folders: Path) -> dict[str, str]:
    """The SHA-256 of every file below `folders`: to show that a refused run left the user's files as they were."""
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# One model over the CPU and the disk ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_a_model_spread_over_the_cpu_and_the_disk_scores_exactly_as_whole(family, folders, whole, dataset, tmp_path):
    size = parameter_bytes(folders[family])
    budget = f"cpu={int(size * CPU_SHARE)}"
    results, tables = evaluate(
        folders[family], dataset, tmp_path / "spread", "--device-map", "auto", "--max-memory", budget
    )
    placed = results["weights"]["device_map"]
    assert set(placed) == {"cpu", "disk"} and min(placed.values()) > 0, placed
    assert sum(placed.values()) == size  # every parameter is somewhere, once
    assert results["device"] == "cpu" and whole[family][0]["weights"]["device_map"] is None
    for config in CONFIGS:
        assert tables[config].equals(whole[family][1][config]), f"{family} {config}"


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="needs a machine without CUDA devices")
@pytest.mark.parametrize("family", ["siglip", "llava"])
def test_a_device_map_with_room_for_the_whole_model_on_the_cpu_scores_as_the_plain_run(
    family, folders, whole, dataset, tmp_path
):
    """Without GPUs and without --max-memory, accelerate's map is `{"": "cpu"}`: the model is loaded whole, and
    transformers gives it no `hf_device_map`; its inputs go where its weights are."""
    results, tables = evaluate(folders[family], dataset, tmp_path / "map", "--device-map", "auto")
    assert results["device"] == "cpu" and results["weights"]["device_map"] is None
    for config in CONFIGS:
        assert tables[config].equals(whole[family][1][config]), f"{family} {config}"


def test_a_checkpoint_that_is_not_safetensors_is_offloaded_through_the_offload_folder(
    folders, whole, dataset, tmp_path, capfd
):
    """transformers reads safetensors weights on the disk in place; a .bin checkpoint's weights must be re-saved,
    into a folder of their own inside --offload-folder that goes with the model."""
    folder = shutil.copytree(folders["siglip"], tmp_path / "siglip-bin")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    budget = ["--device-map", "auto", "--max-memory", f"cpu={int(parameter_bytes(folder) * CPU_SHARE)}"]
    offload = tmp_path / "offload"
    offload.mkdir()
    (offload / "notes.txt").write_text("mine")
    before = contents(folder, dataset, offload)
    arguments = ["eval", "--model", str(folder), "--dataset", str(dataset), "--config", "relation"]
    refused(capfd, arguments + ["--num-workers", "0", "--out", str(tmp_path / "refused"), *budget], "--offload-folder")
    assert contents(folder, dataset, offload) == before and not (tmp_path / "refused").exists()

    results, tables = evaluate(folder, dataset, tmp_path / "spread", *budget, "--offload-folder", str(offload))
    assert results["weights"]["device_map"]["disk"] > 0
    for config in CONFIGS:
        assert tables[config].equals(whole["siglip"][1][config])
    gc.collect()  # the re-saved weights go with the model
    assert sorted(path.name for path in offload.iterdir()) == ["notes.txt"]


# The weights' dtype ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize("family", FAMILIES)
def test_dtype_loads_the_weights_in_it_and_scores_near_fp32(family, dtype, folders, whole, dataset, tmp_path):
    results, tables = evaluate(folders[family], dataset, tmp_path / dtype, "--dtype", dtype)
    model, _ = load_model(str(folders[family]), runtime=Runtime(device="cpu", dtype=dtype))
    assert {parameter.dtype for parameter in model.parameters()} == {TORCH_DTYPES[dtype]}
    count = sum(parameter.numel() for parameter in model.parameters())
    assert results["weights"]["parameters"] == {str(TORCH_DTYPES[dtype]).removeprefix("torch."): count}
    assert results["dtype"] == dtype and whole[family][0]["weights"]["parameters"] == {"float32": count}

    reference = fp32_reference(family, folders[family], dataset)
    fp32, scores = scores_of(whole[family][1]), scores_of(tables)
    written = ~np.isnan(fp32)  # NaN: an option with the true caption's text
    assert np.array_equal(written, ~np.isnan(scores))
    np.testing.assert_allclose(fp32[written], reference[written], rtol=1e-5, atol=1e-6)  # the reference is right
    scale = np.abs(reference).max()
    np.testing.assert_allclose(scores[written], reference[written], rtol=0, atol=TOLERANCE[dtype] * scale)
    assert not np.array_equal(scores[written], fp32[written])  # the dtype was used, not only recorded


def test_a_checkpoint_saved_in_bf16_is_scored_in_fp32_unless_asked(folders, dataset, tmp_path):
    """transformers 5 loads a checkpoint in the dtype it was saved in unless told otherwise; aro asks for fp32, so
    that scores do not depend on how a checkpoint was saved."""
    folder = shutil.copytree(folders["siglip"], tmp_path / "siglip-bf16")  # its processor files
    model, _ = load_model(str(folder))
    model.to(torch.bfloat16).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"  # what transformers would load
    results, _ = evaluate(folder, dataset, tmp_path / "eval")
    assert list(results["weights"]["parameters"]) == ["float32"] and results["dtype"] == "fp32"


# The attention implementation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["siglip", "llava"])
def test_eager_and_sdpa_attention_score_alike(family, folders, dataset, tmp_path):
    runs = {
        implementation: evaluate(
            folders[family], dataset, tmp_path / implementation, "--attn-implementation", implementation
        )
        for implementation in ("eager", "sdpa")
    }
    for implementation, (results, _) in runs.items():
        assert results["weights"]["attn_implementation"] == implementation
    np.testing.assert_allclose(scores_of(runs["eager"][1]), scores_of(runs["sdpa"][1]), rtol=1e-5, atol=1e-6)


# Bad placement options: one line, the user's files unchanged -------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--max-memory", "cpu=1GB"], "--max-memory applies to a model spread by a device map: add --device-map auto"),
        (["--offload-folder", "offload"], "--offload-folder applies to a model spread by a device map"),
        (["--device-map", "everywhere"], "device map (--device-map) must be one of ['auto', 'balanced'"),
        (["--device-map", "auto", "--max-memory", "cpu"], "max memory (--max-memory) 'cpu' is not DEVICE=SIZE"),
        (["--device-map", "auto", "--max-memory", "cpu=lots"], "max memory (--max-memory) of cpu: 'lots' is no size"),
        (["--device-map", "auto", "--max-memory", "gpu=1GB"], "max memory (--max-memory): 'gpu' is no device"),
        (["--attn-implementation", "fast"], "attention implementation (--attn-implementation) 'fast' is none of"),
        (["--device-map", "auto", "--offload-folder", "README.md"], "(--offload-folder) README.md is a file"),
        (["--dtype", "fp64"], "argument --dtype: invalid choice: 'fp64'"),
    ],
)
def test_bad_placement_options_are_one_line_before_the_model_loads(
    options, message, folders, dataset, tmp_path, capfd, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("mine")
    before = contents(folders["siglip"], dataset, tmp_path)
    arguments = ["eval", "--model", str(folders["siglip"]), "--dataset", str(dataset), "--out", "eval"]
    if options[0] == "--dtype":  # argparse refuses it, exit 2 with its usage line
        with pytest.raises(SystemExit) as stopped:
            main(arguments + options)
        assert stopped.value.code == 2 and message in capfd.readouterr().err
    else:
        refused(capfd, arguments + options, message)
    assert contents(folders["siglip"], dataset, tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["README.md"]


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="needs a machine without CUDA devices")
def test_max_memory_for_a_gpu_this_machine_lacks_is_one_line(folders, dataset, tmp_path, capfd):
    arguments = ["eval", "--model", str(folders["siglip"]), "--dataset", str(dataset), "--out", str(tmp_path / "e")]
    refused(capfd, arguments + ["--device-map", "auto", "--max-memory", "0=70GiB,cpu=1GiB"], "names GPU 0, but this")


@pytest.mark.parametrize(
    ("family", "implementation", "message"),
    [
        ("blip-itm", "sdpa", "cannot run with --attn-implementation sdpa: BlipForImageTextRetrieval does not support"),
        ("siglip", "flash_attention_2", "cannot run with --attn-implementation flash_attention_2: FlashAttention2"),
    ],
)
def test_an_attention_implementation_the_class_lacks_is_one_line(
    family, implementation, message, folders, dataset, tmp_path, capfd
):
    if implementation == "flash_attention_2" and torch.cuda.is_available():
        pytest.skip("flash-attn may be installed where there is CUDA")
    before = contents(folders[family], dataset)
    arguments = ["eval", "--model", str(folders[family]), "--dataset", str(dataset), "--config", "relation"]
    line = refused(capfd, arguments + ["--out", str(tmp_path / "e"), "--attn-implementation", implementation], message)
    assert str(tmp_path) not in line.split(str(folders[family]))[-1]  # transformers' advice names a Hub URL of it
    assert contents(folders[family], dataset) == before and not (tmp_path / "e").exists()


def test_a_model_whose_code_reads_an_offloaded_weight_is_one_line(dataset, tmp_path, capfd):
    """BLIP-2's Q-Former embeddings move their input to their weight's device, which accelerate leaves on the meta
    device when they are offloaded: one line, not a traceback from inside transformers."""
    folder = saved(blip2, tmp_path / "blip2")
    before = contents(folder, dataset)
    out = tmp_path / "e"
    arguments = ["eval", "--model", str(folder), "--dataset", str(dataset), "--config", "relation", "--out", str(out)]
    budget = f"cpu={int(parameter_bytes(folder) * EMBEDDINGS_ON_DISK_SHARE)}"
    message = "Blip2ForImageTextRetrieval cannot run with weights offloaded to the CPU or the disk"
    refused(capfd, arguments + ["--num-workers", "0", "--device-map", "auto", "--max-memory", budget], message)
    assert contents(folder, dataset) == before and not out.exists()


def test_a_device_map_is_refused_with_several_processes():
    """Each process of a data-parallel launch would load the whole model over every GPU of the machine."""
    two_processes = SimpleNamespace(process_index=0, num_processes=2)  # what accelerate's PartialState exposes
    with pytest.raises(InvalidInput, match="--device-map spreads one model over every device of this machine, and 2"):
        Runtime(device_map="auto", distributed=two_processes)


def test_runtime_reads_max_memory_as_accelerate_takes_it():
    assert Runtime(device_map="auto", max_memory="cpu=1.5GiB").max_memory == {"cpu": 1610612736}
    assert Runtime(device_map="auto", max_memory={"cpu": "300KB"}).max_memory == {"cpu": 300000}
    assert Runtime(device_map="auto").device is None  # the model's first device, once it is placed


# The blind baseline, item by item ----------------------------------------------------------------------------------


def test_blind_scores_are_saved_per_item_beside_the_model(dataset, tiny_clip_dir, tmp_path):
    """The blind model's score of every option is the mean log-likelihood of the caption, one caption at a time
    through its own forward; its prediction is the strictly best option (-1 on a tie)."""
    blind = saved(causal_lm, tmp_path / "gpt2")
    results, tables = evaluate(tiny_clip_dir, dataset, tmp_path / "eval", "--blind", str(blind))
    assert results["blind_weights"]["parameters"] == {"float32": sum(p.numel() for p in causal_lm()[0].parameters())}
    model, tokenizer = load_blind_model(str(blind))
    with torch.no_grad():
        for config, table in tables.items():
            data = load_split(str(dataset), config)
            expected = one_at_a_time(lambda picture, caption: blind_one_caption(model, tokenizer, caption), data)
            names = [name for name in table.column_names if name.startswith("blind_score_")]
            assert [name.removeprefix("blind_") for name in names] == [
                name for name in table.column_names if name.startswith("score_")
            ]
            saved_scores = np.stack([table[name].to_numpy() for name in names], axis=1)
            np.testing.assert_allclose(saved_scores, expected, rtol=1e-5, atol=1e-6)
            best = expected.max(axis=1, keepdims=True)
            predictions = [int(row.argmax()) if row.sum() == 1 else -1 for row in expected == best]
            assert table["blind_prediction"].to_pylist() == predictions
            assert table["blind_correct"].to_pylist() == [prediction == 0 for prediction in predictions]
            assert results["configs"][config]["blind"]["accuracy"] == pytest.approx(np.mean(np.array(predictions) == 0))

    # The blind model is loaded as the model is: in the dtype asked for, spread by the same device map.
    bf16, bf16_tables = evaluate(
        tiny_clip_dir,
        dataset,
        tmp_path / "bf16",
        "--blind",
        str(blind),
        "--dtype",
        "bf16",
        "--attn-implementation",
        "eager",
    )
    assert list(bf16["blind_weights"]["parameters"]) == ["bfloat16"]
    assert bf16["blind_weights"]["attn_implementation"] == "eager"
    reference = scores_of(tables, "blind_score_")
    np.testing.assert_allclose(
        scores_of(bf16_tables, "blind_score_"), reference, atol=TOLERANCE["bf16"] * np.nanmax(np.abs(reference))
    )
    spread, spread_tables = evaluate(
        tiny_clip_dir, dataset, tmp_path / "spread", "--blind", str(blind), "--device-map", "auto",
        "--max-memory", f"cpu={int(parameter_bytes(blind, load_blind_model) * CPU_SHARE)}",
    )  # fmt: skip
    assert spread["blind_weights"]["device_map"]["disk"] > 0
    for config in CONFIGS:
        assert spread_tables[config].equals(tables[config])
