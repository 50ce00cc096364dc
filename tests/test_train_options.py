"""`aro train` beyond NegCLIP, through the user's path: `--loss fsc` with `--lora-rank`, scores measured every epoch
(`--eval-retrieval`, `--zero-shot`), the kept epoch picked by `--select-by` under a floor, resume with LoRA, and the
card. The first step's loss is checked against FSC-CLIP's equations written in `test_loss_fsc.py`, and the kept epoch
against the scores in `log.csv`."""

import csv
import json

import pytest
import torch
from conftest import refused
from datasets import load_dataset
from safetensors.torch import load_file
from test_loss_fsc import reference_contrastive, reference_global, reference_local
from transformers import AutoModel, CLIPModel, CLIPProcessor

from aro.cli import main
from aro.models.negclip import NegCLIPModel
from aro.models.negclip.arguments import NegCLIPTrainingArguments
from aro.models.negclip.batches import NegCLIPBatches
from aro.models.negclip.loss_fsc import image_local_features, text_local_features
from aro.models.negclip.mining import load_cache

# Three steps an epoch (24 scenes, 8 per step), two epochs; LoRA of rank 2 with a large alpha so that it moves.
RUN = dict(batch_size=8, epochs=2, save_every=2, loss="fsc", lora_rank=2, lora_alpha=16, learning_rate=3e-2)
ADAPTED = ("q_proj", "k_proj", "v_proj", "out_proj")


def scored(scenes) -> dict:
    """Scores after every epoch: retrieval of the held-out scenes, zero-shot on `objects`, ARO for the selection."""
    return dict(
        eval_dataset=scenes,
        eval_configs=["relation", "attribution"],
        eval_retrieval="coco_retrieval",
        zero_shot=scenes,
        zero_shot_config="objects",
        zero_shot_templates=["a {}"],
        select_by="aro",
        select_floor=0.5,
    )


@pytest.fixture(scope="module")
def mining_cache(train_argv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mined")
    argv = train_argv(folder / "run", max_steps=1, mining_cache=folder / "mining.parquet", batch_size=8)
    assert main(argv) == 0
    return folder / "mining.parquet"


@pytest.fixture(scope="module")
def run(train_argv, mining_cache, scenes, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fsc") / "run"
    assert main(train_argv(folder, mining_cache=mining_cache, **RUN, **scored(scenes))) == 0
    return folder


def test_the_first_step_is_fsc_clips_loss_of_the_first_batch(run, scenes, start_model, mining_cache):
    args = NegCLIPTrainingArguments(batch_size=8, dataset=str(scenes), dataset_config="scenes")
    data = load_dataset(str(scenes), "scenes", split="train")
    negatives, neighbours, _ = load_cache(mining_cache)
    inputs = NegCLIPBatches(data, args, negatives, neighbours, CLIPProcessor.from_pretrained(start_model), 0)[0]
    model = CLIPModel.from_pretrained(start_model).double()  # LoRA's B starts at zero: step 1 is the start's
    with torch.no_grad():
        images = model.vision_model(pixel_values=inputs["pixel_values"].double())
        texts = model.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        negative_texts = model.text_model(
            input_ids=inputs["negative_input_ids"], attention_mask=inputs["negative_attention_mask"]
        )
        negative_tokens, negative_token_mask = text_local_features(
            model, negative_texts.last_hidden_state, inputs["negative_attention_mask"]
        )
        tokens, token_mask = text_local_features(model, texts.last_hidden_state, inputs["attention_mask"])
        x = dict(
            image_embeds=torch.nn.functional.normalize(model.visual_projection(images.pooler_output), dim=-1),
            text_embeds=torch.nn.functional.normalize(model.text_projection(texts.pooler_output), dim=-1),
            logit_scale=model.logit_scale.exp(),
            negative_text_embeds=torch.nn.functional.normalize(
                model.text_projection(negative_texts.pooler_output), dim=-1
            )[:, None],
            negative_mask=inputs["negative_mask"][:, None],
            patches=image_local_features(model, images.last_hidden_state),
            tokens=tokens,
            token_mask=token_mask,
            negative_tokens=negative_tokens[:, None],
            negative_token_mask=negative_token_mask[:, None],
        )
        expected = reference_contrastive(x) + 0.5 * reference_global(x) + 0.2 * reference_local(x)
    first = next(row for row in csv.DictReader((run / "log.csv").open()) if row["loss"])
    assert first["step"] == "1" and float(first["loss"]) == pytest.approx(float(expected), abs=2e-5)


def test_lora_is_merged_into_a_plain_clip_that_only_changed_the_adapted_layers(run, start_model):
    saved, start = load_file(run / "model.safetensors"), load_file(start_model / "model.safetensors")
    assert set(saved) == set(start)  # no adapter or base-layer tensor: a plain checkpoint
    for name, tensor in start.items():
        adapted = any(f".{layer}.weight" in name for layer in ADAPTED)
        assert torch.equal(saved[name], tensor) != adapted, name
    assert isinstance(AutoModel.from_pretrained(run), NegCLIPModel)
    assert isinstance(CLIPModel.from_pretrained(run), CLIPModel)


def test_every_epoch_is_scored_and_the_kept_one_is_the_best_aro_above_the_floor(run):
    rows = [row for row in csv.DictReader((run / "log.csv").open()) if not row["loss"]]
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]  # the start, then each epoch
    start, epochs = rows[0], rows[1:]
    floored = ("retrieval/text_to_image_recall@1", "zero_shot/accuracy")
    admitted = [
        row for row in epochs if all(float(row[name]) >= 0.5 * float(start[name]) for name in floored)
    ] or epochs
    means = {int(row["epoch"]): (float(row["aro/relation"]) + float(row["aro/attribution"])) / 2 for row in admitted}
    assert all(mean == pytest.approx(float(row["aro/mean"]), abs=1e-6) for row, mean in zip(admitted, means.values()))
    selection = json.loads((run / "training_results.json").read_text())["selection"]
    assert selection["best_epoch"] == max(means, key=lambda epoch: (round(means[epoch], 6), -epoch))
    assert selection["select_by"] == "aro" and selection["floor"] == 0.5
    card = (run / "README.md").read_text()
    assert "FSC-CLIP" in card and "LoRA of rank 2" in card and "swapped words" in card
    zero_shot = float(start["zero_shot/accuracy"])
    assert f"| zero_shot/accuracy | {zero_shot:.3f} |" in card  # the start beside the kept epoch


def test_a_lora_run_resumes_bitwise(run, train_argv, mining_cache, scenes, tmp_path):
    """Stopped after step 4 (mid-epoch 2, its checkpoint's adapters and base weights saved), then resumed: the same
    weights, scores and selection as the run that went through."""
    output = tmp_path / "run"
    assert main(train_argv(output, mining_cache=mining_cache, max_steps=4, **RUN, **scored(scenes))) == 0
    argv = train_argv(output, mining_cache=mining_cache, resume_from="latest", **RUN, **scored(scenes))
    assert main(argv) == 0
    expected, actual = load_file(run / "model.safetensors"), load_file(output / "model.safetensors")
    assert all(torch.equal(actual[name], expected[name]) for name in expected)
    assert (output / "log.csv").read_text() == (run / "log.csv").read_text()


@pytest.mark.parametrize(
    "flags, message",
    [
        (dict(loss="fsc", hard_negatives="false"), "--loss fsc needs hard negatives"),
        (dict(select_by="zero_shot"), "--select-by zero_shot needs --zero-shot"),
        (dict(lora_rank=0), "--lora-rank must be at least 1"),
        (dict(select_floor=0.9), "--select-floor needs --eval-retrieval or --zero-shot"),
    ],
)
def test_impossible_options_are_one_line(flags, message, train_argv, tmp_path, capfd):
    refused(capfd, train_argv(tmp_path / "run", **flags), message)
    assert not (tmp_path / "run").exists()
