"""The Hub's current vision-language families scored through the user's path: a tiny random model of the real
transformers class with its real processor, saved to a folder, scored by `aro eval --model FOLDER --save-scores`,
and compared with one full forward of the model per (image, caption) pair (`vlm_reference`), for VQAScore and
likelihood at batch sizes 1 and 7 (the config has more items than a batch); SigLIP 2 as a dual encoder, with its
variable-resolution (NaFlex) inputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import without_package
from vlm_reference import dual_encoder_scores, full_forward_scores

from aro.builders.synthetic import SyntheticSizes, build_synthetic_aro
from aro.cli import main
from aro.metrics.scoring import load_split
from aro.metrics.scoring.adapters.prompts import GenerativePrompts
from aro.models.tiny_vlm import make_tiny_siglip2, make_tiny_vlm

CONFIG = "relation"
BATCH_SIZES = (1, 7)
# family (a `tiny_vlm` builder) -> how its pairs run ("shared" prefix or "per pair")
FAMILIES = {
    "qwen2_vl": "shared",
    "qwen2_5_vl": "shared",
    "qwen3_vl": "shared",
    "llava_onevision": "shared",
    "llava_onevision1_5": "shared",
    "ovis2_5": "shared",
    "internvl": "shared",
    "mistral3": "shared",
    "pixtral_llava": "shared",
    "smolvlm": "shared",
    "kosmos2": "per pair",
}
# Families without a chat template: the prompt template a user passes (Kosmos-2's processor places the image).
TEMPLATES = {"kosmos2": "Question: {prompt} Answer:"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def aro_folder(tmp_path_factory):
    """A synthetic ARO build whose relation config has 12 items, more than a batch of 7."""
    folder = tmp_path_factory.mktemp("synthetic") / "aro"
    sizes = SyntheticSizes(
        train_scenes=4, test_scenes=4, relation_per_relation=3, attribution_per_pair=1, order_captions=1
    )
    build_synthetic_aro(folder, seed=0, sizes=sizes)
    return folder


@pytest.fixture(scope="module")
def relation(aro_folder):
    return load_split(str(aro_folder), CONFIG)


@pytest.fixture(scope="module")
def words(relation):
    """The words of the config's captions, so that the tiny tokenizers know every one."""
    return sorted(
        {
            word
            for row in relation
            for caption in (row["true_caption"], row["false_caption"])
            for word in caption.split()
        }
    )


def saved(model, processor, folder):
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def evaluated(folder, aro_folder, out, *options: str) -> tuple[np.ndarray, dict]:
    """`aro eval --save-scores` of the model in `folder` on the config: its scores [items, 2] and results.json."""
    arguments = ["eval", "--model", str(folder), "--dataset", str(aro_folder), "--config", CONFIG]
    arguments += ["--num-workers", "0", "--bootstrap", "0", "--save-scores", "--out", str(out), *options]
    assert main(arguments) == 0
    return scores_of(out)


def scores_of(out) -> tuple[np.ndarray, dict]:
    """The scores [items, 2] that `aro eval --save-scores` wrote into `out`, and its results.json."""
    table = pq.read_table(out / "scores" / f"{CONFIG}.parquet").to_pydict()
    scores = np.array([table["score_true_caption"], table["score_false_caption"]]).T
    return scores, json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("score", ["vqa", "likelihood"])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_saved_hub_family_scores_as_a_full_forward_per_pair(family, score, aro_folder, relation, words, tmp_path):
    model, processor = make_tiny_vlm(family, words, seed=2)
    folder = saved(model, processor, tmp_path / family)
    prompts = GenerativePrompts(template=TEMPLATES.get(family))
    reference = full_forward_scores(model, processor, relation, score, prompts)
    assert np.ptp(reference) > 1e-4 * np.abs(reference).max()  # the captions really are told apart
    template = ["--prompt-template", TEMPLATES[family]] if family in TEMPLATES else []
    for batch_size in BATCH_SIZES:
        out = tmp_path / f"eval-{batch_size}"
        scores, results = evaluated(
            folder, aro_folder, out, "--score", score, "--batch-size", str(batch_size), *template
        )
        np.testing.assert_allclose(scores, reference, rtol=1e-4, atol=1e-6)
    assert results["scoring"]["prefix"] == FAMILIES[family]
    assert results["image_processor"].endswith("Pil")  # the pinned backend, though torchvision is installed


def test_siglip2_is_scored_with_its_variable_resolution_inputs(aro_folder, relation, tmp_path):
    """SigLIP 2's processor gives each image a patch count of its own (`spatial_shapes`) and a mask of the padded
    patches (`pixel_attention_mask`); the image tower needs both."""
    model, processor = make_tiny_siglip2(seed=3)
    folder = saved(model, processor, tmp_path / "siglip2")
    reference = dual_encoder_scores(model, processor, relation)
    assert np.ptp(reference) > 1e-3
    for batch_size in BATCH_SIZES:
        scores, results = evaluated(
            folder, aro_folder, tmp_path / f"eval-{batch_size}", "--batch-size", str(batch_size)
        )
        np.testing.assert_allclose(scores, reference, rtol=1e-4, atol=1e-6)
    assert results["adapter"] == "dual-encoder" and results["image_processor"] == "Siglip2ImageProcessorPil"


# `aro eval` as on a machine without torchvision: `find_spec` does not see it (transformers' check) and importing it
# fails; each model folder given is evaluated into `<folder>-eval`.
NO_TORCHVISION = (
    without_package("torchvision")
    + """
from aro.cli import main

dataset, *folders = sys.argv[1:]
for folder in folders:
    arguments = ["eval", "--model", folder, "--dataset", dataset, "--config", "relation", "--num-workers", "0"]
    code = main([*arguments, "--bootstrap", "0", "--save-scores", "--out", folder + "-eval"])
    print(folder, code)
assert "torchvision" not in sys.modules
"""
)


def test_without_torchvision_the_scores_are_the_same_and_a_processor_that_needs_it_is_one_line(
    aro_folder, words, tmp_path
):
    """The PIL image backend is pinned, so a model scores the same with torchvision installed or not; Qwen2-VL's
    processor (its video processor exists only for torchvision) is refused in one line saying what to install."""
    llava = saved(*make_tiny_vlm("llava", words, seed=4), tmp_path / "llava")
    qwen = saved(*make_tiny_vlm("qwen2_vl", words, seed=4), tmp_path / "qwen")
    run = subprocess.run(
        [sys.executable, "-c", NO_TORCHVISION, str(aro_folder), str(llava), str(qwen)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-4:] == [str(llava), "0", str(qwen), "2"], run.stdout
    errors = [line for line in run.stderr.splitlines() if line.startswith("aro eval: error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "its processor needs torchvision, which is not installed" in errors[0] and str(qwen) in errors[0]
    without, _ = scores_of(Path(f"{llava}-eval"))
    with_torchvision, _ = evaluated(llava, aro_folder, tmp_path / "eval")
    np.testing.assert_array_equal(without, with_torchvision)


def test_a_processor_loaded_for_scoring_saves_and_reloads_as_it_was(relation, tmp_path):
    """`load_processor` pins the PIL image backend by handing transformers the image processor; what it returns must
    still save (transformers copied that argument into the tokenizer's settings, which then failed to serialise)."""
    from aro.metrics.scoring.loading import load_processor

    model, processor = make_tiny_vlm("llava", ["a", "red", "circle", "square", "left", "of"])
    loaded = load_processor(str(saved(model, processor, tmp_path / "llava")))
    loaded.save_pretrained(tmp_path / "again")
    reloaded = load_processor(str(tmp_path / "again"))
    picture = relation[0]["image"].convert("RGB")
    first, second = (
        p(text=["<image> a red circle"], images=[picture], return_tensors="pt") for p in (loaded, reloaded)
    )
    assert first["input_ids"].tolist() == second["input_ids"].tolist()
    torch.testing.assert_close(first["pixel_values"], second["pixel_values"])
