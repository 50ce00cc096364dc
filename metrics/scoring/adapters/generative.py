"""Generative vision-language models (what `AutoModelForImageTextToText` builds, where the image is tokens of the
language model's prompt and the forward takes a key/value cache: LLaVA, LLaVA-NeXT, Qwen2-VL/2.5-VL,
Idefics3/SmolVLM, Gemma 3...), scored by VQAScore or by caption likelihood (see `prompts.py`).

The candidates of an item differ only in their caption, so everything before the caption is computed once:

- each unique image is preprocessed once, and its text with an empty caption is put through the processor once;
  each pair's token ids are that text's ids with the tokens from the caption on replaced by the pair's own, as the
  tokenizer writes them (a processor that writes tokens after the caption, PaliGemma's "\n", is refused);
- the language model runs once over the shared prefix of an image, the image and the prompt's text before the
  caption, in one batch for the images of a batch of items, so the vision tower runs once per unique image of
  the batch (items are sorted by image, so items showing one image share a batch);
- the prefix's key/value cache is expanded over the image's candidates, and only the rest of each pair (from the
  caption on) is run, the candidates of all the batch's items together, left-padded with explicit positions, so
  the answer position is the last one of every row and only its logits are computed for VQAScore.

The scores equal one full forward per pair through the model's own `forward` (tests/test_generative.py). The
vision tower and the prefix are not cached across batches: a prefix's cache is as large as a batch of captions.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch

from ..data import ImageRows, Items
from .base import Adapter
from .prompts import SCORES, GenerativePrompts, answer_token_id, common_prefix_length

# Processor outputs that hold one value per token: the prefix forward takes their first P columns, and the rest of
# a pair is text, which these mark as such by leaving them out (Gemma 3's token types, Qwen2-VL's modality types).
PER_TOKEN_INPUTS = ("token_type_ids", "mm_token_type_ids")


@dataclass
class ImagePrefix:
    """One unique image: its processor inputs, the ids of its pairs, and how many leading tokens they share."""

    image_inputs: dict  # pixel values and their companions (sizes, masks, grids), batch dimension first
    token_inputs: dict  # per-token inputs of the prefix (token types), already cut to `length`
    pair_ids: list[list[int]]
    scored_from: list[int]  # per pair: the first token whose probability is read (the caption's first, or the answer's)
    length: int  # the shared prefix: tokens every pair of this image has in common, none of them scored


class GenerativeAdapter(Adapter):
    """Scores (image, caption) pairs by `score` ("vqa" or "likelihood") with `prompts` (see `GenerativePrompts`)."""

    family = "generative"
    summary = (
        "generative models that AutoModelForImageTextToText builds and that take a key/value cache (LLaVA, LLaVA-NeXT, "
        "Qwen2-VL, Idefics3/SmolVLM, Gemma 3...), scored by --score vqa or likelihood"
    )

    def __init__(self, model, processor, runtime, score: str = "vqa", prompts: GenerativePrompts | None = None):
        super().__init__(model, processor, runtime)
        if score not in SCORES:
            raise ValueError(f"a generative model scores with one of {list(SCORES)}, not {score!r}")
        # What the model's class cannot do is said before what its processor lacks (a chat template, say).
        parameters = inspect.signature(model.forward).parameters
        if not {"cache", "past_key_values"} & set(parameters):
            raise ValueError(f"{type(model).__name__}.forward takes no key/value cache, so its prompt prefix cannot be shared")
        self.score_name, self.prompts = score, prompts or GenerativePrompts()
        self.family = f"generative-{score}"
        if score == "vqa":  # P(answer) and P(negative answer) at the answer position
            bare_turn = self.prompts.text("vqa", "", processor)
            self.answer_ids = [answer_token_id(self.tokenizer, bare_turn, answer) for answer in (self.prompts.answer, self.prompts.negative_answer)]
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self.keeps_logits = "logits_to_keep" in parameters
        self.notes = {}

    def settings(self) -> dict:
        """What results.json records about how this model was scored."""
        settings = {"score": self.score_name, "prompts": self.prompts.record()}
        return settings | ({"answer_token_ids": self.answer_ids} if self.score_name == "vqa" else {})

    # Token bookkeeping -------------------------------------------------------------------------------------------

    def processor_inputs(self, text: str, image) -> dict:
        try:
            return dict(self.processor(text=[text], images=[image], return_tensors="pt"))
        except Exception as error:  # noqa: BLE001 - processors raise anything on an image they cannot place
            raise ValueError(
                f"the processor of {type(self.model).__name__} cannot take the image with the prompt {text!r} "
                f"({' '.join(str(error).split())}); "
                "check that the prompt places the image token as the processor expects (--prompt-template)"
            ) from error

    def image_prefix(self, image, captions: list[str]) -> ImagePrefix:
        """Processor inputs and token ids of one image's pairs with `captions`, and their shared prefix length."""
        bare_text = self.prompts.text(self.score_name, "", self.processor)
        inputs = self.processor_inputs(bare_text, image)
        bare_ids = inputs.pop("input_ids")[0].tolist()
        inputs.pop("attention_mask", None)
        texts = [self.prompts.text(self.score_name, caption, self.processor) for caption in captions]
        tokens = self.tokenizer([bare_text, *texts])["input_ids"]
        bare_tokens, pair_tokens = tokens[0], tokens[1:]
        # The processor's ids of the bare text are its tokenizer's with the image placeholder expanded in place; a
        # pair's ids are the bare ids up to where the pair's text departs from the bare text, then the pair's own
        # tokens. The expansion must end before the captions begin, and the shared prefix must hold all of it.
        expansion_end = len(bare_ids) - _common_suffix_length(bare_ids, bare_tokens)
        offset = len(bare_ids) - len(bare_tokens)
        departures = [common_prefix_length(bare_tokens, ids) for ids in pair_tokens]
        pair_ids = [bare_ids[: offset + departure] + ids[departure:] for departure, ids in zip(departures, pair_tokens)]
        # VQAScore reads the answer that would follow the pair's last token; likelihood the caption's tokens.
        if self.score_name == "vqa":
            scored_from = [len(ids) for ids in pair_ids]
        else:
            scored_from = [common_prefix_length(bare_ids, ids) for ids in pair_ids]
        # The prefix stops before the token whose logits predict the first scored token, so that every logit read
        # comes from the forward over the rest of the pair.
        length = min(min(common_prefix_length(bare_ids, ids) for ids in pair_ids), min(scored_from) - 1)
        if length < expansion_end:
            raise ValueError(
                f"the processor of {type(self.model).__name__} writes the image (or other tokens) into the prompt after "
                f"the caption or around it ({bare_text!r}): the scorer shares the image and the text before the caption, "
                "so the prompt must show the image first (--prompt-template)"
            )
        token_inputs = {name: inputs.pop(name)[:, :length] for name in PER_TOKEN_INPUTS if name in inputs}
        return ImagePrefix(inputs, token_inputs, pair_ids, scored_from, length)

    # Forward passes ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def score_group(self, prefixes: list[ImagePrefix]) -> list[torch.Tensor]:
        """Scores of the pairs of images whose prefixes have one length and stackable inputs: one forward over the
        prefixes, one over the rest of every pair with the prefix cache expanded to it."""
        device, length = self.runtime.device, prefixes[0].length
        prefix_ids = torch.tensor([prefix.pair_ids[0][:length] for prefix in prefixes], device=device)
        image_inputs = {name: torch.cat([prefix.image_inputs[name] for prefix in prefixes]).to(device) for name in prefixes[0].image_inputs}
        token_inputs = {name: torch.cat([prefix.token_inputs[name] for prefix in prefixes]).to(device) for name in prefixes[0].token_inputs}
        output = self.forward(1, input_ids=prefix_ids, attention_mask=torch.ones_like(prefix_ids), **image_inputs, **token_inputs)
        cache = output.cache if hasattr(output, "cache") else output.past_key_values
        rope_deltas = getattr(getattr(self.model, "model", None), "rope_deltas", None)

        owners = [row for row, prefix in enumerate(prefixes) for _ in prefix.pair_ids]
        rests = [ids[length:] for prefix in prefixes for ids in prefix.pair_ids]
        scored_from = [start - length for prefix in prefixes for start in prefix.scored_from]
        width = max(len(rest) for rest in rests)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        rest_ids = torch.tensor([[pad] * (width - len(rest)) + rest for rest in rests], device=device)
        rest_mask = torch.tensor([[0] * (width - len(rest)) + [1] * len(rest) for rest in rests], device=device)
        # Left padding sits between the prefix and the pair's tokens: masked out, and skipped by the positions.
        positions = length + (rest_mask.cumsum(dim=1) - 1).clamp(min=0)
        if rope_deltas is not None:  # multimodal RoPE (Qwen2-VL): text after the image is shifted by the image's delta
            positions = (positions + rope_deltas.to(device)[owners]).unsqueeze(0).expand(3, -1, -1)
        cache.batch_select_indices(torch.tensor(owners, device=device))
        attention_mask = torch.cat([torch.ones(len(rests), length, dtype=rest_mask.dtype, device=device), rest_mask], dim=1)
        keep = 1 if self.score_name == "vqa" else width
        output = self.forward(keep, input_ids=rest_ids, attention_mask=attention_mask, position_ids=positions, **{self.cache_argument: cache})
        log_probs = output.logits[:, -keep:].float().log_softmax(dim=-1)
        if self.score_name == "vqa":
            return list(log_probs[:, -1, self.answer_ids].exp().cpu())
        scores = []
        for row, rest in enumerate(rests):
            start = width - len(rest)  # where the pair's tokens begin in its padded row
            targets = torch.tensor(rest[scored_from[row] :], device=device)
            predicted_at = torch.arange(start + scored_from[row] - 1, start + len(rest) - 1, device=device)
            scores.append(log_probs[row, predicted_at, targets].mean().reshape(1).cpu())
        return scores

    def forward(self, keep: int, **inputs):
        """The model's forward under autocast, with its cache, computing the logits of the last `keep` positions
        only where the model can (the language-model head over a large vocabulary costs as much as a layer)."""
        with self.runtime.autocast():
            return self.model(**inputs, use_cache=True, **({"logits_to_keep": keep} if self.keeps_logits else {}))

    def score_batch(self, items: Items, item_indices: list[int]) -> torch.Tensor:
        """Scores [n, K, ...] of a batch of items: each unique image prefixed once, its pairs run together."""
        images = sorted({items.image_of_item[item] for item in item_indices})
        decoder = ImageRows(items.dataset, [items.image_rows[image] for image in images], items.image_column)
        captions = {image: [] for image in images}
        for item in item_indices:
            captions[items.image_of_item[item]].extend(items.candidates[item])
        prefixes = {image: self.image_prefix(decoder[position], captions[image]) for position, image in enumerate(images)}
        groups: dict[tuple, list[int]] = {}
        for image, prefix in prefixes.items():
            shapes = tuple((name, tuple(value.shape[1:])) for name, value in prefix.image_inputs.items())
            groups.setdefault((prefix.length, shapes), []).append(image)
        pair_scores: dict[int, list[torch.Tensor]] = {}
        for members in groups.values():
            flat = iter(self.score_group([prefixes[image] for image in members]))
            for image in members:
                pair_scores[image] = [next(flat) for _ in prefixes[image].pair_ids]
        # Back from image order to item order: each image's pairs are its items' candidates, item after item.
        taken = {image: 0 for image in images}
        rows = []
        for item in item_indices:
            image, count = items.image_of_item[item], len(items.candidates[item])
            rows.append(torch.stack(pair_scores[image][taken[image] : taken[image] + count]))
            taken[image] += count
        return torch.stack(rows)

    def score(self, items: Items) -> np.ndarray:
        order = sorted(range(len(items.candidates)), key=items.image_of_item.__getitem__)
        scored = self.runtime.gathered(lambda share: self.runtime.batched(lambda batch: self.score_batch(items, batch), share, "items"), order)
        scores = torch.empty_like(scored)
        scores[torch.tensor(order)] = scored
        if self.score_name == "vqa":
            says_yes = (scores[..., 0] > scores[..., 1]).numpy()
            negatives = ~items.same_as_true()[:, 1:]  # an option with the true caption's text is no false caption
            self.notes = {"yes_rate_true_caption": float(says_yes[:, 0].mean()), "yes_rate_false_captions": float(says_yes[:, 1:][negatives].mean())}
        return scores[..., 0].numpy()


def _common_suffix_length(first: list[int], second: list[int]) -> int:
    return common_prefix_length(first[::-1], second[::-1])
