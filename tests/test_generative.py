"""The generative scorer (image prefix computed once, its cache expanded over the candidates) equals one full
forward of the model per (image, caption) pair, for several families, both scores and several batch sizes."""

import json

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image as ImageFeature, Sequence, Value
from PIL import Image

from aro.cli import main
from aro.metrics.scoring import score_items
from aro.metrics.scoring.adapters.prompts import GenerativePrompts, answer_token_id, common_prefix_length
from aro.models.tiny_vlm import make_tiny_vlm

from conftest import TINY_WORDS

FAMILIES = ["llava", "idefics3"]
CAPTIONS = ["a red circle", "a blue square", "the red circle to the left of a blue square", "a blue square to the left of the red circle", "a circle"]


def image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 36, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def order_dataset():
    """An Order-shaped set: 6 items of K=5 captions, images shared by pairs of items, captions of several lengths."""
    rows = {
        "image": [image(index // 2) for index in range(6)],
        "caption_options": [[CAPTIONS[(index + shift) % 5] for shift in range(5)] for index in range(6)],
    }
    return Dataset.from_dict(rows, features=Features({"image": ImageFeature(), "caption_options": Sequence(Value("string"))}))


@torch.no_grad()
def full_forward_scores(model, processor, dataset, score: str, prompts=GenerativePrompts()) -> np.ndarray:
    """The naive computation: the processor and one full forward per (image, caption) pair."""
    answer = answer_token_id(processor.tokenizer, prompts.text("vqa", "", processor), prompts.answer)
    scores = []
    for row in dataset:
        picture = row["image"].convert("RGB")
        bare = processor(text=[prompts.text(score, "", processor)], images=[picture], return_tensors="pt")["input_ids"][0].tolist()
        item = []
        for caption in row["caption_options"]:
            inputs = processor(text=[prompts.text(score, caption, processor)], images=[picture], return_tensors="pt")
            log_probs = model(**inputs).logits[0].log_softmax(dim=-1)
            ids = inputs["input_ids"][0]
            if score == "vqa":
                item.append(float(log_probs[-1, answer].exp()))
                continue
            start = common_prefix_length(bare, ids.tolist())  # the caption's first token
            item.append(float(log_probs[torch.arange(start - 1, len(ids) - 1), ids[start:]].mean()))
        scores.append(item)
    return np.array(scores)


@pytest.mark.parametrize("score", ["vqa", "likelihood"])
@pytest.mark.parametrize("family", FAMILIES)
def test_shared_prefix_scores_equal_a_full_forward_per_pair(family, score, order_dataset):
    model, processor = make_tiny_vlm(family, TINY_WORDS, seed=1)
    reference = full_forward_scores(model, processor, order_dataset, score)
    assert np.ptp(reference) > 1e-4  # the captions really are told apart
    for batch_size in (1, 3, 16):
        result = score_items(model, processor, order_dataset, score=score, batch_size=batch_size)
        np.testing.assert_allclose(result.scores, reference, rtol=1e-4, atol=1e-5)
    assert result.unique_images == 3
