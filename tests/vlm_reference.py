"""The naive computations the scorers are compared with: the model's processor and one full forward of the model per
(image, caption) pair, written independently of the scorers (shared by the generative and Hub-family tests)."""

import inspect

import numpy as np
import torch

from aro.metrics.scoring.adapters.prompts import GenerativePrompts

DEFAULT_PROMPTS = GenerativePrompts()


def candidates(row) -> list[str]:
    """An item's captions, the true one first: an Order set's options, or a VG set's two captions."""
    return row["caption_options"] if "caption_options" in row else [row["true_caption"], row["false_caption"]]


def shared_length(first: list[int], second: list[int]) -> int:
    """How many leading tokens two sequences share."""
    length = 0
    while length < min(len(first), len(second)) and first[length] == second[length]:
        length += 1
    return length


@torch.no_grad()
def full_forward_scores(model, processor, dataset, score: str, prompts=DEFAULT_PROMPTS) -> np.ndarray:
    """Generative scores [items, candidates] of one full forward per pair. The answer is the tokenizer's token for the
    answer word (word-level tokenizers), read at the last position (vqa); likelihood is the mean log-probability of
    the tokens after those the pair shares with an empty caption. A processor that takes the answer as a suffix
    (PaliGemma) gets the caption there, and its training labels mark the caption's tokens; an encoder-decoder reads
    the prompt and is scored by its own loss on the caption as labels (likelihood), or by its first decoder position
    (vqa)."""
    answer = processor.tokenizer.convert_tokens_to_ids(prompts.answer)
    as_suffix = score == "likelihood" and "suffix" in inspect.signature(processor.__call__).parameters
    text_config = getattr(model.config, "text_config", model.config)
    decoder_start = text_config.decoder_start_token_id if text_config.is_encoder_decoder else None
    scores = []
    for row in dataset:
        picture = row["image"].convert("RGB")
        bare = processor(text=[prompts.text(score, "", processor)], images=[picture], return_tensors="pt")
        bare = bare["input_ids"][0].tolist()
        item = []
        for caption in candidates(row):
            if decoder_start is not None:
                turn = prompts.turn(prompts.prompt(score, caption), processor)
                inputs = processor(text=[turn], images=[picture], return_tensors="pt")
                if score == "likelihood":
                    labels = processor.tokenizer([caption], add_special_tokens=False, return_tensors="pt")["input_ids"]
                    item.append(-float(model(**inputs, labels=labels).loss))
                else:
                    logits = model(**inputs, decoder_input_ids=torch.tensor([[decoder_start]])).logits[0, 0]
                    item.append(float(logits.softmax(dim=-1)[answer]))
                continue
            if as_suffix:
                turn = prompts.turn(prompts.caption_prompt, processor)
                inputs = processor(text=[turn], images=[picture], suffix=[caption], return_tensors="pt")
                positions = torch.nonzero(inputs.pop("labels")[0] != -100).flatten()[:-1]  # not the end token
            else:
                inputs = processor(
                    text=[prompts.text(score, caption, processor)], images=[picture], return_tensors="pt"
                )
                inputs.pop("labels", None)
                ids = inputs["input_ids"][0].tolist()
                positions = torch.arange(shared_length(bare, ids), len(ids))
            log_probs = model(**inputs).logits[0].log_softmax(dim=-1)
            ids = inputs["input_ids"][0]
            if score == "vqa":
                item.append(float(log_probs[-1, answer].exp()))
            else:
                item.append(float(log_probs[positions - 1, ids[positions]].mean()))
        scores.append(item)
    return np.array(scores)


@torch.no_grad()
def dual_encoder_scores(model, processor, dataset) -> np.ndarray:
    """Dual-encoder scores [items, candidates]: the cosine of the image and text embeddings of one full forward of
    the model per pair, with every input its processor makes (SigLIP's captions padded to the limit)."""
    scores = []
    for row in dataset:
        item = []
        for caption in candidates(row):
            inputs = processor(
                text=[caption], images=[row["image"].convert("RGB")], padding="max_length", return_tensors="pt"
            )
            output = model(**inputs)
            item.append(float(torch.nn.functional.cosine_similarity(output.image_embeds, output.text_embeds)))
        scores.append(item)
    return np.array(scores)
