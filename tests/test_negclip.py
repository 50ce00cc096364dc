"""NegCLIP: the loss, the CLIP call, saving and loading (Auto classes, plain CLIP, pipeline, remote code), the miner
(chunked and sharded as whole), the results and exact resume."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from datasets import load_dataset
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor, CLIPModel
from transformers.models.clip.modeling_clip import CLIPOutput

from aro.models.negclip import NegCLIPModel
from aro.models.negclip.loss_negclip import NegCLIPLoss
from aro.models.negclip.mining import nearest_images, swap_negatives
from aro.models.negclip.training import NegCLIPTrainingArguments, train


def reference_loss(images, texts, negatives, scale):
    """The NegCLIP loss written out from explicit logits, one row at a time."""
    n = len(images)
    candidates = torch.cat([texts, negatives])
    image_terms, text_terms = [], []
    for row in range(n):
        logits = torch.stack([scale * images[row] @ candidate for candidate in candidates])
        image_terms.append(-torch.log_softmax(logits, dim=0)[row])
        logits = torch.stack([scale * texts[row] @ image for image in images])
        text_terms.append(-torch.log_softmax(logits, dim=0)[row])
    return (torch.stack(image_terms).mean() + torch.stack(text_terms).mean()) / 2


def test_loss_equals_the_explicit_reference():
    torch.manual_seed(0)
    images, texts, negatives = (F.normalize(torch.randn(6, 8), dim=-1) for _ in range(3))
    scale = torch.tensor(10.0)
    assert torch.allclose(
        NegCLIPLoss()(images, texts, scale, negatives), reference_loss(images, texts, negatives, scale), atol=1e-6
    )
    # Without negatives it is CLIP's loss.
    clip = (
        F.cross_entropy(scale * images @ texts.t(), torch.arange(6))
        + F.cross_entropy(scale * texts @ images.t(), torch.arange(6))
    ) / 2
    assert torch.allclose(NegCLIPLoss()(images, texts, scale), clip, atol=1e-6)


def test_a_hard_negative_equal_to_the_caption_costs_more():
    torch.manual_seed(1)
    images, texts = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)
    easy = NegCLIPLoss()(images, texts, torch.tensor(10.0), -texts)
    hard = NegCLIPLoss()(images, texts, torch.tensor(10.0), texts.clone())
    assert hard > easy


def test_save_then_auto_model_and_plain_clip_give_the_same_features(tiny_clip_dir, tmp_path):
    model = NegCLIPModel.from_clip(str(tiny_clip_dir)).eval()
    model.save_pretrained(tmp_path / "negclip")
    assert not list((tmp_path / "negclip").glob("*.bin")) and (tmp_path / "negclip" / "model.safetensors").exists()
    pixels = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[2, 4, 5, 3], [2, 6, 7, 3]])
    expected = model.get_image_features(pixel_values=pixels).pooler_output
    loaded = AutoModel.from_pretrained(tmp_path / "negclip").eval()
    assert isinstance(loaded, NegCLIPModel)
    assert type(AutoModel.from_pretrained(tiny_clip_dir)) is CLIPModel  # a plain CLIP checkpoint stays a CLIPModel
    plain = CLIPModel.from_pretrained(tmp_path / "negclip").eval()
    assert torch.allclose(loaded.get_image_features(pixel_values=pixels).pooler_output, expected, atol=1e-6)
    assert torch.allclose(plain.get_image_features(pixel_values=pixels).pooler_output, expected, atol=1e-6)
    assert torch.allclose(
        plain.get_text_features(input_ids=ids).pooler_output,
        model.get_text_features(input_ids=ids).pooler_output,
        atol=1e-6,
    )


def test_a_saved_negclip_works_without_this_package(tiny_clip_dir, tmp_path):
    folder = tmp_path / "negclip"
    NegCLIPModel.from_clip(str(tiny_clip_dir)).save_pretrained(folder)
    AutoProcessor.from_pretrained(tiny_clip_dir).save_pretrained(folder)
    assert {"modeling_negclip.py", "loss_negclip.py"} <= {path.name for path in folder.iterdir()}
    # A fresh interpreter that never imports aro: the Hub widget's path (no remote code) and trust_remote_code.
    script = f"""
import sys
from PIL import Image
from transformers import AutoModel, AutoProcessor, CLIPModel, pipeline
image = Image.new("RGB", (32, 32), "red")
for trust in (False, True):
    processor = AutoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=trust)
    classify = pipeline("zero-shot-image-classification", model={str(folder)!r}, trust_remote_code=trust)
    scores = classify(image, candidate_labels=["red circle", "blue square"])
    assert type(classify.model) is CLIPModel and abs(sum(score["score"] for score in scores) - 1) < 1e-5, scores
model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True)
assert "aro" not in sys.modules
print(type(processor).__name__, type(model).__name__, type(model).__module__)
"""
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"HF_HUB_OFFLINE": "1", "PATH": ""},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    processor_class, model_class, module = run.stdout.split()
    assert (processor_class, model_class) == ("CLIPProcessor", "NegCLIPModel")
    assert "modeling_negclip" in module and "aro.models" not in module


def test_the_standard_clip_call_on_negclip_gives_clips_outputs(tiny_clip_dir):
    processor = AutoProcessor.from_pretrained(tiny_clip_dir)
    negclip, clip = NegCLIPModel.from_clip(str(tiny_clip_dir)).eval(), CLIPModel.from_pretrained(tiny_clip_dir).eval()
    images = [Image.new("RGB", (32, 32), "red"), Image.new("RGB", (32, 32), "blue")]
    batch = processor(text=["a red circle", "a blue square"], images=images, return_tensors="pt", padding=True)
    output, expected = negclip(**batch), clip(**batch)
    assert isinstance(output, CLIPOutput) and output.loss is None
    for name in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
        assert torch.allclose(output[name], expected[name], atol=1e-6), name
    assert torch.allclose(
        output.vision_model_output.pooler_output, expected.vision_model_output.pooler_output, atol=1e-6
    )
    assert torch.allclose(
        output.text_model_output.last_hidden_state, expected.text_model_output.last_hidden_state, atol=1e-6
    )
    # Keyword arguments reach CLIP; the loss comes only when asked, and without negatives it is CLIP's.
    hidden = negclip(**batch, output_hidden_states=True).vision_model_output.hidden_states
    assert len(hidden) == negclip.config.vision_config.num_hidden_layers + 1
    assert isinstance(negclip(**batch, return_dict=False), tuple)
    assert torch.allclose(negclip(**batch, return_loss=True).loss, clip(**batch, return_loss=True).loss, atol=1e-6)


def test_hard_negatives_add_columns_and_the_negclip_loss(tiny_clip_dir):
    processor = AutoProcessor.from_pretrained(tiny_clip_dir)
    model = NegCLIPModel.from_clip(str(tiny_clip_dir)).eval()
    images = [Image.new("RGB", (32, 32), "red"), Image.new("RGB", (32, 32), "blue")]
    batch = processor(
        images=images,
        text=["a red circle", "a blue square", "a circle red", "a square blue"],
        padding=True,
        return_tensors="pt",
    )
    output = model(
        pixel_values=batch.pixel_values,
        input_ids=batch.input_ids[:2],
        attention_mask=batch.attention_mask[:2],
        negative_input_ids=batch.input_ids[2:],
        negative_attention_mask=batch.attention_mask[2:],
        return_loss=True,
    )
    assert output.logits_per_image.shape == (2, 4) and torch.equal(output.logits_per_text, output.logits_per_image.t())
    scale = model.logit_scale.exp()
    assert torch.allclose(
        output.logits_per_image[:, 2:], scale * output.image_embeds @ output.negative_text_embeds.t(), atol=1e-6
    )
    expected = reference_loss(output.image_embeds, output.text_embeds, output.negative_text_embeds, scale)
    assert torch.allclose(output.loss, expected, atol=1e-6)


def test_swap_negatives_keep_the_words_and_differ(spacy_parser):
    nlp = spacy_parser
    captions = [
        "a child holding a flowered umbrella and petting a yak",
        "a red circle to the left of a blue square",
        "dog",
    ]
    negatives = swap_negatives(captions, nlp=nlp, per_caption=4, seed=0)
    assert negatives[2] == []  # nothing to swap
    for caption, swapped in zip(captions[:2], negatives[:2]):
        assert len(swapped) == 4 and len(set(swapped)) == 4
        for negative in swapped:
            assert negative != caption and sorted(negative.split()) == sorted(caption.split())
    assert (
        "a blue square to the left of a red circle" in negatives[1]
        or "a umbrella holding a flowered child and petting a yak" in negatives[0]
    )
    assert swap_negatives(captions, nlp=nlp, per_caption=4, seed=0) == negatives
    assert swap_negatives(captions, nlp=nlp, per_caption=2, seed=1) != [row[:2] for row in negatives]


def test_swapping_coordinated_noun_phrases_is_a_paraphrase_not_a_negative(spacy_parser):
    nlp = spacy_parser
    captions = ["a red circle and a blue square", "a dog and a cat on a couch"]
    negatives = swap_negatives(captions, nlp=nlp, per_caption=10, seed=0)
    # "a blue square and a red circle" says the same; the attribute swaps say something else.
    assert sorted(negatives[0]) == ["a blue circle and a red square", "a red square and a blue circle"]
    # "a cat and a dog on a couch" says the same, whether reached by swapping the phrases or the nouns.
    assert "a cat and a dog on a couch" not in negatives[1]
    assert "a dog and a couch on a cat" in negatives[1]


def brute_force_neighbours(embeddings, image_ids, k):
    """For every row, the first rows of the `k` other images most similar to its image: an explicit double loop."""
    first_rows = {}
    for row, image_id in enumerate(image_ids):
        first_rows.setdefault(image_id, row)
    found = []
    for image_id in image_ids:
        mine = embeddings[first_rows[image_id]]
        others = [(float(mine @ embeddings[row]), row) for other, row in first_rows.items() if other != image_id]
        found.append([row for _, row in sorted(others, reverse=True)[:k]])
    return found


def test_nearest_images_in_chunks_smaller_than_the_data_equal_a_brute_force_search():
    """An image must never be its own neighbour in any chunk, the first or a later one."""
    generator = torch.Generator().manual_seed(0)
    image_ids = [f"image-{index % 13}" for index in range(31)]  # 13 images, most of them on several rows
    by_image = F.normalize(torch.randn(13, 8, generator=generator), dim=-1)
    embeddings = by_image[[index % 13 for index in range(31)]]
    expected = brute_force_neighbours(embeddings, image_ids, k=3)
    assert nearest_images(embeddings, image_ids, k=3, chunk=4) == expected
    assert nearest_images(embeddings, image_ids, k=3) == expected  # one chunk holds all 13 images


def test_swapped_negatives_mined_in_shards_equal_those_mined_whole(spacy_parser):
    """Each caption's draw is keyed by its index in the dataset, so shards (processes) and spaCy batches change
    nothing."""
    captions = [
        "a red circle to the left of a blue square",
        "a child holding a flowered umbrella and petting a yak",
        "a green star above a yellow triangle",
        "a large dog chasing a small cat",
        "a man riding a brown horse near a white fence",
    ]
    whole = swap_negatives(captions, nlp=spacy_parser, per_caption=2, seed=3)
    shards = swap_negatives(captions[:2], nlp=spacy_parser, per_caption=2, seed=3, batch_size=1) + swap_negatives(
        captions[2:], nlp=spacy_parser, per_caption=2, seed=3, first_index=2
    )
    assert shards == whole and all(whole)
    # The index is part of the key: the same captions at other positions draw otherwise.
    assert swap_negatives(captions[2:], nlp=spacy_parser, per_caption=2, seed=3) != whole[2:]


def test_nearest_images_exclude_the_image_itself_and_its_other_rows():
    embeddings = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), dim=-1)
    image_ids = ["a", "a", "b", "c", "d"]  # rows 0 and 1 show the same image
    neighbours = nearest_images(embeddings, image_ids, k=2)
    assert neighbours[0] == neighbours[1] == [2, 4]
    assert neighbours[3] == [4, 2]
    for row, found in enumerate(neighbours):
        assert all(image_ids[other] != image_ids[row] for other in found)


def _arguments(scenes, start_model, output_dir, **changes):
    settings = dict(
        output_dir=str(output_dir),
        model_name_or_path=str(start_model),
        dataset=str(scenes),
        dataset_config="scenes",
        mining_cache=str(output_dir.parent / "mining.parquet"),
        learning_rate=1e-3,
        batch_size=8,
        epochs=2,
        warmup_steps=1,
    )
    return NegCLIPTrainingArguments(**settings | changes)


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_training_lowers_the_loss_and_writes_logs_and_card(scenes, start_model, tmp_path):
    output = train(
        _arguments(scenes, start_model, tmp_path / "run", epochs=4, validation_split="test", epoch_rows="captions")
    )
    losses = [float(line.split(",")[2]) for line in (output / "log.csv").read_text().splitlines()[1:]]
    assert len(losses) == 4 * (72 // 8)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert (output / "tensorboard").is_dir() and "NegCLIP" in (output / "README.md").read_text()
    assert isinstance(AutoModel.from_pretrained(output), NegCLIPModel)
    rows = len(load_dataset(str(scenes), "scenes", split="train"))
    assert pq_rows(tmp_path / "mining.parquet") == rows
    # The share of rows with a swapped-word negative, counted from the cache, is in the results and the card.
    mined = pq.read_table(tmp_path / "mining.parquet").column("negatives").to_pylist()
    with_negative = sum(1 for negatives in mined if negatives)
    results = json.loads((output / "training_results.json").read_text())
    assert results["negatives"] == {"rows": rows, "rows_with_negative": with_negative, "share": with_negative / rows}
    assert f"present for {with_negative} of {rows} training rows" in (output / "README.md").read_text()
    # The validation loss is the mean CLIP loss over whole batches of the test split, computed here by hand.
    test_split = load_dataset(str(scenes), "scenes", split="test")
    model, processor = CLIPModel.from_pretrained(output).eval(), AutoProcessor.from_pretrained(output)
    losses = []
    for start in range(0, len(test_split) - 8 + 1, 8):
        batch = processor(
            images=[image.convert("RGB") for image in test_split[start : start + 8]["image"]],
            text=test_split[start : start + 8]["caption"],
            padding=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            logits = model(**batch).logits_per_image
        labels = torch.arange(8)
        losses.append((F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2)
    assert len(losses) == len(test_split) // 8 >= 2
    assert results["validation_loss"] == pytest.approx(float(torch.stack(losses).mean()), rel=1e-5)


def pq_rows(path):
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


def test_an_interrupted_run_resumed_ends_with_the_same_weights(scenes, start_model, tmp_path):
    whole = train(_arguments(scenes, start_model, tmp_path / "whole"))
    # Stop after 5 of 18 steps (mid-epoch), checkpointing there, then resume to the end.
    train(_arguments(scenes, start_model, tmp_path / "part", max_steps=5, save_every=5))
    resumed = train(
        _arguments(
            scenes, start_model, tmp_path / "part", resume_from=str(tmp_path / "part" / "checkpoints" / "step-5")
        )
    )
    expected, actual = _weights(whole), _weights(resumed)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
