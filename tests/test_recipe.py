"""The NegCLIP recipe of the authors' fork: optimizer, schedule, clamp, crops, epochs, negatives, selection, their
file."""

import csv
import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset, load_dataset
from PIL import Image
from safetensors.torch import load_file

from aro.cli import main
from aro.models.negclip import NegCLIPModel
from aro.models.negclip.batches import NegCLIPBatches, TextTokens
from aro.models.negclip.card import recipe_table
from aro.models.negclip.loss_negclip import NegCLIPLoss
from aro.models.negclip.mining import swap_negatives
from aro.models.negclip.recipe import FORK_SETTINGS, crop_box, optimizer_groups, random_resized_crop
from aro.models.negclip.released import load_released
from aro.models.negclip.training import NegCLIPTrainingArguments, train

README = Path(__file__).resolve().parent.parent / "README.md"
LN_100 = math.log(100)


@pytest.fixture(scope="module")
def hot_start_model(start_model, tmp_path_factory):
    """`start_model` with its logit scale above ln 100, so that only the clamp can bring it down in a few steps."""
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(start_model)
    model.logit_scale.data.fill_(5.0)
    folder = tmp_path_factory.mktemp("hot-start")
    model.save_pretrained(folder)
    AutoProcessor.from_pretrained(start_model).save_pretrained(folder)
    return folder


def _arguments(scenes, start_model, output_dir, **changes):
    settings = dict(
        output_dir=str(output_dir),
        model_name_or_path=str(start_model),
        dataset=str(scenes),
        dataset_config="scenes",
        mining_cache=str(Path(output_dir).parent / "mining.parquet"),
        learning_rate=1e-3,
        batch_size=8,
        epochs=3,
        warmup_steps=4,
        report_to="none",
    )
    return NegCLIPTrainingArguments(**settings | changes)


@pytest.fixture(scope="module")
def run(scenes, hot_start_model, tmp_path_factory):
    """Three epochs of 24 images, batch 8, selecting the best epoch on the test split; a checkpoint every epoch."""
    output = tmp_path_factory.mktemp("run") / "negclip"
    return train(
        _arguments(scenes, hot_start_model, output, validation_split="test", save_every=3, learning_rate=2e-2, seed=1)
    )


def _log(output: Path) -> list[dict]:
    with open(output / "log.csv") as file:
        return list(csv.DictReader(file))


def fork_learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    """The fork's `cosine_lr`, written out: the rate of optimizer step `step` (from 0)."""
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) * base


def test_the_defaults_are_the_published_recipe():
    defaults = NegCLIPTrainingArguments()
    for setting in FORK_SETTINGS:
        if setting.argument and setting.value is not None and not setting.note:
            assert getattr(defaults, setting.argument) == setting.value, setting.setting
    assert recipe_table(defaults) in README.read_text(encoding="utf-8"), "README's recipe table is not the defaults'"


def test_weight_decay_groups_follow_the_fork(start_model):
    model = NegCLIPModel.from_clip(str(start_model))
    no_decay, decay = optimizer_groups(model, weight_decay=0.2)
    assert (no_decay["weight_decay"], decay["weight_decay"]) == (0.0, 0.2)
    # The fork's rule, on its own terms: no decay for fewer than 2 dimensions or gain/bias/logit-scale names.
    fork_excluded = {
        name
        for name, parameter in model.named_parameters()
        if parameter.ndim < 2 or any(part in name for part in ("bn", "ln", "bias", "logit_scale"))
    }
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    assert {names[id(parameter)] for parameter in no_decay["params"]} == fork_excluded
    assert {names[id(parameter)] for parameter in decay["params"]} == set(names.values()) - fork_excluded
    assert {
        "logit_scale",
        "vision_model.embeddings.class_embedding",
        "text_model.final_layer_norm.weight",
    } <= fork_excluded
    assert "text_model.embeddings.token_embedding.weight" not in fork_excluded


def test_the_logged_learning_rate_is_the_forks_schedule_step_by_step(run):
    logged = [float(row["learning_rate"]) for row in _log(run)]
    total = 3 * (24 // 8)
    assert len(logged) == total
    expected = [fork_learning_rate(step, 2e-2, 4, total) for step in range(total)]
    assert logged == pytest.approx(expected, rel=1e-6)
    # What the test would see from a scheduler stepped twice per optimizer step, or logged one step late.
    assert logged != pytest.approx(
        [fork_learning_rate(min(2 * step, total - 1), 2e-2, 4, total) for step in range(total)], rel=1e-3
    )
    assert logged != pytest.approx([fork_learning_rate(step + 1, 2e-2, 4, total) for step in range(total)], rel=1e-3)


def test_logit_scale_is_clamped_after_every_step(run, hot_start_model):
    assert float(load_file(str(hot_start_model / "model.safetensors"))["logit_scale"]) == pytest.approx(5.0)
    for folder in [run, *sorted((run / "checkpoints").glob("step-*"))]:
        assert 0 <= float(load_file(str(folder / "model.safetensors"))["logit_scale"]) <= LN_100 + 1e-6, folder


def test_an_epoch_is_one_caption_per_image(run, scenes, start_model, tmp_path):
    assert [int(row["epoch"]) for row in _log(run)] == [0] * 3 + [1] * 3 + [2] * 3  # 24 images / 8, not 72 captions / 8
    data = load_dataset(str(scenes), "scenes", split="train")
    args = _arguments(
        scenes, start_model, tmp_path / "unused", batch_size=6, hard_negatives=False, image_negatives=False
    )
    processor = _processor(start_model)
    drawn = []
    for epoch in range(2):
        batches = NegCLIPBatches(data, args, None, None, processor, epoch)
        rows = [row for step in batches.steps for row in step]
        assert sorted(data[row]["image_id"] for row in rows) == sorted(set(data["image_id"])), (
            "every image exactly once"
        )
        assert NegCLIPBatches(data, args, None, None, processor, epoch).steps == batches.steps, "seeded"
        drawn.append(set(rows))
    assert drawn[0] != drawn[1], "the caption of an image is drawn again every epoch"
    every_caption = NegCLIPBatches(
        data, NegCLIPTrainingArguments(**vars(args) | {"epoch_rows": "captions"}), None, None, processor, 0
    )
    assert sorted(row for step in every_caption.steps for row in step) == list(range(72))


def test_each_process_takes_its_slice_of_the_global_batch(scenes, start_model):
    """Two processes of B rows each see, step by step, exactly the rows one process of 2B rows sees."""
    data = load_dataset(str(scenes), "scenes", split="train")
    processor = _processor(start_model)
    args = NegCLIPTrainingArguments(batch_size=5, hard_negatives=False, image_negatives=False, epoch_rows="captions")
    one = NegCLIPBatches(data, NegCLIPTrainingArguments(**vars(args) | {"batch_size": 10}), None, None, processor, 1)
    first, second = (NegCLIPBatches(data, args, None, None, processor, 1, process, 2) for process in (0, 1))
    assert len(one) == len(first) == len(second) == 72 // 10
    for step in range(len(one)):
        assert first.steps[step] + second.steps[step] == one.steps[step], step
        assert len(first.steps[step]) == len(second.steps[step]) == 5


def _processor(folder):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(folder)


def test_best_epoch_selection_keeps_the_epoch_with_the_best_recall(run):
    selection = json.loads((run / "training_results.json").read_text())["selection"]
    recalls = [entry["text_to_image_recall@1"] for entry in selection["validation"]]
    assert [entry["epoch"] for entry in selection["validation"]] == [1, 2, 3]
    best = selection["best_epoch"]
    assert recalls[best - 1] == max(recalls) and best == 1 + recalls.index(max(recalls))
    assert best != 3, f"this run's recalls {recalls} should make an earlier epoch the best, or the test proves nothing"
    kept, best_checkpoint, last = (
        load_file(str(folder / "model.safetensors"))
        for folder in (run, run / "checkpoints" / f"step-{3 * best}", run / "checkpoints" / "step-9")
    )
    assert all(torch.equal(kept[name], best_checkpoint[name]) for name in kept)
    assert not all(torch.equal(kept[name], last[name]) for name in kept)
    assert f"epoch {best} of 3" in (run / "README.md").read_text()


def test_a_caption_without_a_swap_gets_no_negative_and_no_copy_of_itself(spacy_parser, start_model, tmp_path):
    captions = [
        "a red circle to the left of a blue square",
        "a circle",
        "a green star above a yellow triangle",
        "a square",
    ]
    colours = ["red", "green", "blue", "yellow"]
    data = Dataset.from_dict(
        {
            "image": [Image.new("RGB", (40, 48), colour) for colour in colours],
            "caption": captions,
            "image_id": ["a", "b", "c", "d"],
        }
    )
    negatives = swap_negatives(captions, nlp=spacy_parser, per_caption=2)
    assert negatives[1] == [] and negatives[3] == [] and negatives[0] and negatives[2]
    args = NegCLIPTrainingArguments(batch_size=4, seed=0)
    neighbours = [[1], [0], [3], [2]]
    inputs = NegCLIPBatches(data, args, negatives, neighbours, _processor(start_model), epoch=0)[0]
    tokenizer = _processor(start_model).tokenizer
    texts = tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=True)
    negative_texts = tokenizer.batch_decode(inputs["negative_input_ids"], skip_special_tokens=True)
    for text, negative, real in zip(texts, negative_texts, inputs["negative_mask"].tolist()):
        assert real == (text in (captions[0], captions[2]))
        assert negative != text, "a caption is never its own negative"
    # The masked slots are left out of every image's softmax: the loss equals the loss without those texts at all.
    model = NegCLIPModel.from_clip(str(start_model))
    loss = model(**inputs, return_loss=True).loss
    output = model(**inputs, return_loss=False)
    scale = model.logit_scale.exp()
    kept_negatives = output.negative_text_embeds[inputs["negative_mask"]]
    logits = scale * output.image_embeds @ torch.cat([output.text_embeds, kept_negatives]).t()
    labels = torch.arange(len(output.image_embeds))
    reference = (
        F.cross_entropy(logits, labels) + F.cross_entropy(scale * output.text_embeds @ output.image_embeds.t(), labels)
    ) / 2
    assert float(loss) == pytest.approx(float(reference), rel=1e-5)
    unmasked = NegCLIPLoss()(output.image_embeds, output.text_embeds, scale, output.negative_text_embeds)
    assert float(unmasked) != pytest.approx(float(reference), rel=1e-5)


def test_the_neighbour_brings_one_of_its_captions(scenes, start_model, tmp_path):
    data = load_dataset(str(scenes), "scenes", split="train")
    args = _arguments(scenes, start_model, tmp_path / "unused", hard_negatives=False)
    image_ids = data["image_id"]
    first_rows = {image_id: image_ids.index(image_id) for image_id in image_ids}
    neighbours = [
        [first_rows[image_ids[(row + 3) % 72]]] for row in range(72)
    ]  # one neighbour image, named by its first row
    batches = NegCLIPBatches(data, args, None, neighbours, _processor(start_model), epoch=0)
    picked = [batches.neighbour_of(row) for row in range(72)]
    assert all(image_ids[pick] == image_ids[neighbours[row][0]] for row, pick in enumerate(picked))
    assert len({pick for pick in picked} - set(first_rows.values())) > 0, "not always the neighbour's first caption"


def test_batch_tokens_are_the_tokenizers_own_with_each_text_tokenized_once(start_model):
    """Kept ids (at most 2 here, so that later texts take the uncached path) give every batch the tokenizer's own
    tensors, padded on either side, a text beyond the tokenizer's 32 tokens cut as it cuts it."""
    tokenizer = _processor(start_model).tokenizer
    batches = [
        ["a red circle", " ".join(["a red circle"] * 12), ""],
        ["a blue star above a red circle", "a red circle", "a blue star"],
        ["a blue star", "a red circle", "a blue star above a red circle"],
    ]
    for side in ("right", "left"):
        tokenizer.padding_side = side
        tokens = TextTokens(tokenizer, cached_texts=2)
        for texts in batches:
            expected = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            got = tokens(texts)
            assert torch.equal(got["input_ids"], expected["input_ids"]), (side, texts)
            assert torch.equal(got["attention_mask"], expected["attention_mask"]), (side, texts)
        assert list(tokens.ids) == ["a red circle", " ".join(["a red circle"] * 12)]


def test_crops_cover_most_of_the_image_and_are_seeded(start_model, scenes):
    for seed in range(200):
        left, top, right, bottom = crop_box(300, 200, random.Random(seed))
        assert 0 <= left < right <= 300 and 0 <= top < bottom <= 200
        assert 0.88 <= (right - left) * (bottom - top) / (300 * 200) <= 1.0
        assert 3 / 4 - 0.02 <= (right - left) / (bottom - top) <= 4 / 3 + 0.02
    image = torch.from_numpy(np.array(Image.effect_noise((64, 48), 40).convert("RGB"))).permute(2, 0, 1)
    first, again = (random_resized_crop(image, (32, 24), random.Random("0:1:5:crop")) for _ in range(2))
    assert first.shape == (3, 24, 32) and first.dtype == torch.uint8 and torch.equal(first, again)
    # What PIL's bicubic resize makes of the same crop, to within rounding.
    left, top, right, bottom = crop_box(64, 48, random.Random("0:1:5:crop"))
    pil = (
        Image.fromarray(image.permute(1, 2, 0).numpy()).crop((left, top, right, bottom)).resize((32, 24), Image.BICUBIC)
    )
    assert (first.permute(1, 2, 0).int() - torch.from_numpy(np.array(pil)).int()).abs().max() <= 2
    data = load_dataset(str(scenes), "scenes", split="train")
    args = NegCLIPTrainingArguments(batch_size=4, hard_negatives=False, image_negatives=False)
    processor = _processor(start_model)
    pixels = [NegCLIPBatches(data, args, None, None, processor, epoch)[0]["pixel_values"] for epoch in (0, 0, 1)]
    assert torch.equal(pixels[0], pixels[1]) and not torch.equal(pixels[0], pixels[2])


def _released_file(folder: Path, rows: int = 8) -> Path:
    """A file in the authors' format (their pandas export: an unnamed index column, list literals, TSV)."""
    images = folder / "coco" / "val2014"
    images.mkdir(parents=True)
    words = ["circle", "square", "star", "triangle"]
    with open(folder / "valid_neg_clip.tsv", "w", newline="") as file:
        writer = csv.writer(file, delimiter="\t")
        writer.writerow(["", "title", "filepath", "neg_caption", "neg_image"])
        for row in range(rows):
            name = f"coco/val2014/COCO_val2014_{row:012d}.jpg"
            Image.new("RGB", (40, 30), (row * 30, 255 - row * 30, 90)).save(folder / name)
            first, second = words[row % 4], words[(row + 1) % 4]
            caption = f"a red {first} to the left of a blue {second}"
            negatives = [f"a red {second} to the left of a blue {first}", f"it 's a {second}"] if row % 3 else []
            writer.writerow(
                [row, caption, name, repr(negatives), repr([(row + 1) % rows, (row + 2) % rows, (row + 3) % rows])]
            )
    return folder / "valid_neg_clip.tsv"


def test_training_straight_from_the_authors_file(start_model, tmp_path):
    path = _released_file(tmp_path / "released")
    data, negatives, neighbours = load_released(path)
    assert (
        len(data) == 8
        and data[0]["image"].size == (40, 30)
        and data[1]["caption"] == "a red square to the left of a blue star"
    )
    assert (
        negatives[0] == []
        and negatives[1] == ["a red star to the left of a blue square", "it 's a star"]
        and neighbours[7] == [0, 1, 2]
    )
    output = tmp_path / "from-file"
    assert (
        main(
            [
                "train",
                "--train-file",
                str(path),
                "--validation-file",
                str(path),
                "--model-name-or-path",
                str(start_model),
                "--output-dir",
                str(output),
                "--batch-size",
                "4",
                "--epochs",
                "2",
                "--warmup-steps",
                "1",
                "--learning-rate",
                "1e-3",
                "--report-to",
                "none",
            ]
        )
        == 0
    )
    assert len(_log(output)) == 4
    assert json.loads((output / "training_results.json").read_text())["selection"]["best_epoch"] in (1, 2)


def test_a_broken_authors_file_is_a_one_line_error_naming_the_line(tmp_path):
    path = _released_file(tmp_path / "released")
    lines = path.read_text().splitlines()
    lines[3] = re.sub(r"\[\d+, \d+, \d+\]$", "[1, 99, 2]", lines[3])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 4, neg_image: row 99 is not a row"):
        load_released(path)
