"""The generative scorer (image prefix computed once, its cache expanded over the candidates; or each pair run
whole, batched, where no prefix can be shared) equals one full forward of the model per (image, caption) pair, for
several families, both scores and several batch sizes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_WORDS, random_image
from datasets import Dataset, Features, Sequence, Value
from datasets import Image as ImageFeature
from tokenizers import processors
from vlm_reference import full_forward_scores

from aro.builders.synthetic import SyntheticSizes, build_synthetic_aro
from aro.cli import main
from aro.metrics.scoring import Scorer, adapter_class, load_model, load_split, score_items
from aro.metrics.scoring.adapters.generative import PerPairAdapter, SharedPrefixAdapter
from aro.metrics.scoring.adapters.prompts import GenerativePrompts, answer_token_id
from aro.models.tiny_vlm import make_tiny_vlm

FAMILIES = ["llava", "idefics3", "gemma3"]
# Families whose pairs run whole, and why results.json says so; they have no chat template.
PER_PAIR_FAMILIES = {
    "paligemma": "reads its prompt bidirectionally",
    "blip2": "takes no key/value cache",
    "instructblip": "Q-Former reads the prompt",
    "blip2-t5": "language model is an encoder-decoder",
    "mllama": "differ from its full forward",
}
TEMPLATE = GenerativePrompts(template="user : {prompt} assistant :")  # PaliGemma's processor places the image itself
CAPTIONS = [
    "a red circle",
    "a blue square",
    "the red circle to the left of a blue square",
    "a blue square to the left of the red circle",
    "a circle",
]


@pytest.fixture(scope="module")
def order_dataset():
    """An Order-shaped set: 6 items of K=5 captions, images shared by pairs of items, captions of several lengths."""
    rows = {
        "image": [random_image(index // 2) for index in range(6)],
        "caption_options": [[CAPTIONS[(index + shift) % 5] for shift in range(5)] for index in range(6)],
    }
    return Dataset.from_dict(
        rows, features=Features({"image": ImageFeature(), "caption_options": Sequence(Value("string"))})
    )


@pytest.mark.parametrize("score", ["vqa", "likelihood"])
@pytest.mark.parametrize("family", FAMILIES)
def test_shared_prefix_scores_equal_a_full_forward_per_pair(family, score, order_dataset):
    model, processor = make_tiny_vlm(family, TINY_WORDS, seed=1)
    assert adapter_class(model) is SharedPrefixAdapter
    reference = full_forward_scores(model, processor, order_dataset, score)
    assert np.ptp(reference) > 1e-4  # the captions really are told apart
    for batch_size in (1, 3, 16):
        result = score_items(model, processor, order_dataset, score=score, batch_size=batch_size)
        np.testing.assert_allclose(result.scores, reference, rtol=1e-4, atol=1e-5)
    assert result.unique_images == 3


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("score", ["vqa", "likelihood"])
@pytest.mark.parametrize("family", PER_PAIR_FAMILIES)
def test_pairs_that_cannot_share_a_prefix_run_whole_and_equal_a_full_forward(family, score, order_dataset):
    model, processor = make_tiny_vlm(family, TINY_WORDS, seed=4)
    prompts = (
        GenerativePrompts() if getattr(processor, "chat_template", None) else TEMPLATE
    )  # Mllama has a chat template
    reference = full_forward_scores(model, processor, order_dataset, score, prompts)
    assert np.ptp(reference) > 1e-4
    for batch_size in (1, 3, 16):
        scorer = Scorer(model, processor, score=score, prompts=prompts, batch_size=batch_size)
        np.testing.assert_allclose(scorer.score(order_dataset).scores, reference, rtol=1e-4, atol=1e-5)
    assert isinstance(scorer.adapter, PerPairAdapter)
    settings = scorer.adapter.settings()
    assert settings["prefix"] == "per pair" and PER_PAIR_FAMILIES[family] in settings["per_pair_because"]
    # The vision encoder's output is shared over an image's pairs unless it reads the prompt (InstructBLIP's Q-Former).
    assert settings["vision_encoder"] == ("once per pair" if family in ("instructblip", "mllama") else "once per image")


def test_a_prompt_template_replaces_the_chat_template(order_dataset):
    model, processor = make_tiny_vlm("llava", TINY_WORDS, seed=2)
    prompts = GenerativePrompts(
        template="user <image> {prompt} assistant: ", question="Does this figure show {caption} ?"
    )
    assert (
        prompts.text("vqa", "a red circle", processor)
        == "user <image> Does this figure show a red circle ? assistant: "
    )
    reference = full_forward_scores(model, processor, order_dataset, "vqa", prompts)
    np.testing.assert_allclose(
        score_items(model, processor, order_dataset, score="vqa", prompts=prompts, batch_size=4).scores,
        reference,
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("score", ["vqa", "likelihood"])
@pytest.mark.parametrize("family", ["llava", "blip2"])
def test_an_end_token_after_every_text_is_no_part_of_the_prompt(family, score, order_dataset):
    """A tokenizer that writes `</s>` after every text (XLM-R's, Kosmos-2's) scores as one that writes none: the
    answer is the first token the model would write after the prompt's last word (shared prefix and per pair)."""
    model, processor = make_tiny_vlm(family, TINY_WORDS, seed=6)
    prompts = TEMPLATE if family == "blip2" else GenerativePrompts()
    reference = full_forward_scores(model, processor, order_dataset, score, prompts)
    end = processor.tokenizer.eos_token
    processor.tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {end}", pair=f"$A $B:1 {end}:1", special_tokens=[(end, processor.tokenizer.eos_token_id)]
    )
    assert processor.tokenizer("a circle")["input_ids"][-1] == processor.tokenizer.eos_token_id
    scored = score_items(model, processor, order_dataset, score=score, prompts=prompts, batch_size=4)
    np.testing.assert_allclose(scored.scores, reference, rtol=1e-4, atol=1e-6)


def test_the_answer_tokens_are_looked_up_where_the_answer_is_written():
    _, processor = make_tiny_vlm("llava", TINY_WORDS)
    tokenizer = processor.tokenizer
    turn = GenerativePrompts().text("vqa", "a red circle", processor)
    assert turn.endswith("<|im_start|>assistant\n")
    assert (
        answer_token_id(tokenizer, turn, "Yes")
        == tokenizer.convert_tokens_to_ids("Yes")
        != answer_token_id(tokenizer, turn, "No")
    )
    with pytest.raises(
        ValueError,
        match=r"writes the answer 'Yes please' after the prompt as \['Yes', 'please'\] \(not one new token\)",
    ):
        answer_token_id(tokenizer, turn, "Yes please")


def test_a_model_without_chat_template_or_image_token_gets_one_clear_line(order_dataset):
    model, processor = make_tiny_vlm("llava", TINY_WORDS)
    processor.chat_template = None
    with pytest.raises(ValueError, match="LlavaProcessor has no chat template: pass --prompt-template"):
        score_items(model, processor, order_dataset, score="vqa")
    with pytest.raises(
        ValueError, match=r"the processor of LlavaForConditionalGeneration cannot take the image .* 0 <image> tokens"
    ) as error:
        score_items(model, processor, order_dataset, prompts=GenerativePrompts(template="{prompt}"))
    assert "\n" not in str(error.value)


def test_score_options_are_refused_for_models_that_are_not_generative(order_dataset, tiny_clip_dir):
    with pytest.raises(
        ValueError,
        match="--score and the prompts apply to generative models; CLIPModel is scored by the dual-encoder adapter",
    ):
        score_items(*load_model(str(tiny_clip_dir)), order_dataset, score="likelihood")


@pytest.fixture(scope="module")
def aro_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic") / "aro"
    build_synthetic_aro(
        folder,
        seed=0,
        sizes=SyntheticSizes(
            train_scenes=8, test_scenes=4, relation_per_relation=2, attribution_per_pair=1, order_captions=4
        ),
    )
    return folder


@pytest.fixture(scope="module")
def idefics3_folder(tmp_path_factory):
    """A saved tiny random Idefics3 and its processor, as a Hub checkpoint is."""
    model, processor = make_tiny_vlm("idefics3", TINY_WORDS, seed=3)
    folder = tmp_path_factory.mktemp("tiny-idefics3")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("score", ["vqa", "likelihood"])
def test_aro_eval_scores_a_saved_generative_model(score, aro_folder, idefics3_folder, tmp_path, capsys):
    folder = idefics3_folder
    out = tmp_path / "eval"
    arguments = [
        "eval",
        "--model",
        str(folder),
        "--dataset",
        str(aro_folder),
        "--config",
        "coco_order",
        "--num-workers",
        "0",
        "--score",
        score,
        "--out",
        str(out),
    ]
    assert main(arguments) == 0
    assert "| coco_order |" in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert saved["adapter"] == f"generative-{score}"
    assert saved["scoring"]["score"] == score and saved["scoring"]["prompts"] == GenerativePrompts().record()
    # The command's predictions are those of the full forward per pair on the model it loaded.
    loaded, loaded_processor = load_model(str(folder))
    assert type(loaded).__name__ == "Idefics3ForConditionalGeneration"
    reference = full_forward_scores(loaded, loaded_processor, load_split(str(aro_folder), "coco_order"), score)
    numbers = saved["configs"]["coco_order"]
    assert numbers["num_items"] == len(reference)
    assert numbers["accuracy"] == pytest.approx(float(np.mean(reference.argmax(axis=1) == 0)))
    if score == "vqa":
        assert 0 <= numbers["yes_rate_true_caption"] <= 1 and 0 <= numbers["yes_rate_false_captions"] <= 1


def test_aro_eval_scores_a_saved_paligemma_pair_by_pair(aro_folder, tmp_path, capsys):
    model, processor = make_tiny_vlm("paligemma", TINY_WORDS, seed=5)
    folder = tmp_path / "tiny-paligemma"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    template = "<image>caption en {prompt}"
    out = tmp_path / "eval"
    arguments = [
        "eval",
        "--model",
        str(folder),
        "--dataset",
        str(aro_folder),
        "--config",
        "coco_order",
        "--num-workers",
        "0",
        "--score",
        "likelihood",
    ]
    assert main([*arguments, "--prompt-template", template, "--out", str(out)]) == 0
    scoring = json.loads((out / "results.json").read_text())["scoring"]
    assert scoring["prefix"] == "per pair" and scoring["per_pair_because"].startswith(
        "PaliGemma reads its prompt bidirectionally"
    )
    loaded, loaded_processor = load_model(str(folder))
    reference = full_forward_scores(
        loaded,
        loaded_processor,
        load_split(str(aro_folder), "coco_order"),
        "likelihood",
        GenerativePrompts(template=template),
    )
    saved = json.loads((out / "results.json").read_text())["configs"]["coco_order"]
    assert saved["accuracy"] == pytest.approx(float(np.mean(reference.argmax(axis=1) == 0)))
    # VQAScore with the lower-case answers of PaliGemma's mix checkpoints.
    vqa_arguments = [
        *arguments[:-1],
        "vqa",
        "--prompt-template",
        "<image>answer en {prompt}",
        "--answer",
        "yes",
        "--negative-answer",
        "no",
    ]
    assert main([*vqa_arguments, "--out", str(tmp_path / "vqa")]) == 0
    scoring = json.loads((tmp_path / "vqa" / "results.json").read_text())["scoring"]
    assert scoring["prompts"]["answer"] == "yes" and scoring[
        "answer_token_ids"
    ] == loaded_processor.tokenizer.convert_tokens_to_ids(["yes", "no"])


SHARDED_SCRIPT = """
import sys
import numpy as np
from accelerate import PartialState
from aro.metrics.scoring import load_model, load_split, score_items

state = PartialState()
model, processor = load_model(sys.argv[1])
data = load_split(sys.argv[2], "coco_order")
result = score_items(model, processor, data, score="likelihood", batch_size=2, distributed=state)
if state.is_main_process:
    np.save(sys.argv[3], result.scores)
"""


def test_two_processes_score_as_one(aro_folder, idefics3_folder, tmp_path):
    script = tmp_path / "score_sharded.py"
    script.write_text(SHARDED_SCRIPT)
    environment = os.environ | {
        "ACCELERATE_USE_CPU": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(idefics3_folder),
            str(aro_folder),
            str(tmp_path / "two.npy"),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    model, processor = load_model(str(idefics3_folder))
    one = score_items(
        model, processor, load_split(str(aro_folder), "coco_order"), score="likelihood", batch_size=2
    ).scores
    np.testing.assert_allclose(np.load(tmp_path / "two.npy"), one, rtol=1e-5, atol=1e-6)
