"""Generative vision-language models (what `AutoModelForImageTextToText` builds: LLaVA, LLaVA-NeXT, Qwen2-VL/2.5-VL,
Idefics3/SmolVLM, Gemma 3, PaliGemma, BLIP-2, InstructBLIP...), scored by VQAScore or by caption likelihood (see
`prompts.py`), by one of two adapters that `adapters.adapter_class` chooses from the model (`why_no_shared_prefix`).

Each distinct pair (its image, and the token ids of its text) runs once (`Adapter.each_pair_once`), the pairs sorted
by image and walked in batches of as many pairs as `batch_size` items have. The candidates of an image differ only
in their caption, so where the model allows, everything before the caption is computed once (`SharedPrefixAdapter`):

- each unique image is preprocessed once, and its text with an empty caption is put through the processor once;
  each pair's token ids are that text's ids with the tokens from the caption on replaced by the pair's own, as the
  tokenizer writes them;
- the language model runs once over the shared prefix of an image, the image and the prompt's text before the
  caption, in one batch for the images of a batch of pairs, so the vision tower runs once per unique image of
  the batch;
- the prefix's key/value cache is expanded over the image's candidates, and only the rest of each pair (from the
  caption on) is run, all the batch's pairs together, left-padded with explicit positions, so
  the answer position is the last one of every row and only its logits are computed for VQAScore.

Where the image's states depend on the caption, no prefix can be shared, and each pair runs whole
(`PerPairAdapter`): the pairs of a batch in one right-padded forward through the model's own processor
and `forward`. That is so for PaliGemma (its prompt is read bidirectionally, so the image tokens see the caption in
the question) and InstructBLIP (its Q-Former reads the prompt), and for BLIP-2, whose `forward` takes no key/value
cache. A vision encoder that reads the image alone (PaliGemma's, BLIP-2's) still runs once per image: its output
goes to the forward as `mm_encoder_outputs`, row by row to the image's pairs.

Both adapters share their prompts, answer tokens, the reading of scores from logits and the walk from pairs to
images and back (`GenerativeAdapter`); both give the scores of one full forward per pair through the model's own
`forward` (tests/test_generative.py). The vision tower and the prefix are not cached across batches: a prefix's
cache is as large as a batch of captions.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from transformers.cache_utils import DYNAMIC_LAYER_TYPE_MAPPING, DummyLayer, LinearAttentionCacheLayerMixin

from aro.core.errors import InvalidInput

from ..data import ImageRows, Items
from .base import Adapter
from .prompts import (
    SCORES,
    GenerativePrompts,
    answer_token_id,
    common_prefix_length,
    end_tokens,
    without_end,
)

# Processor outputs that hold one value per token: the prefix forward takes their first P columns, and the rest of
# a pair is text, which these mark as such by leaving them out (Gemma 3's token types, Qwen2-VL's modality types,
# Kosmos-2's mask of the image's positions).
PER_TOKEN_INPUTS = ("token_type_ids", "mm_token_type_ids", "image_embeds_position_mask")
# Processor outputs that are text, padded on the right when pairs run whole (InstructBLIP's Q-Former reads the prompt).
TEXT_INPUTS = (
    "input_ids",
    "attention_mask",
    *PER_TOKEN_INPUTS,
    "qformer_input_ids",
    "qformer_attention_mask",
    "decoder_input_ids",
    "decoder_attention_mask",
    "cross_attention_mask",
)
# Inputs that carry the image to a generative model's forward (Video-LLaVA names its images apart from its videos;
# Fuyu takes patches, Pix2Struct flattened patches).
IMAGE_INPUTS = ("pixel_values", "pixel_values_images", "image_patches", "flattened_patches")
# Model types whose generative head is not scored here, and why (what to score instead).
NOT_SCORED = {
    "blip": "BLIP's captioner takes its start token from `generate` only; BLIP is scored by its matching head "
    "(a BlipForImageTextRetrieval checkpoint such as Salesforce/blip-itm-base-coco)",
    "udop": "UDOP reads a document's words with their boxes from OCR (`bbox`), not a prompt about an image",
}
# Model types whose pairs run whole, and why.
PER_PAIR_MODEL_TYPES = {
    "paligemma": "PaliGemma reads its prompt bidirectionally, so the image tokens see the caption",
    # Found in tests, not explained: over a cached prefix, a tiny Mllama's caption log-probabilities were up to 3e-3
    # away from its full forward (a padding-free single pair too), so its pairs run whole, as its own forward runs them.
    "mllama": "Llama 3.2 Vision's scores over a cached prefix differ from its full forward",
    "kosmos-2": "Kosmos-2's forward asks for the image (pixel values or embeddings) at every call, over a cache too",
}


@dataclass
class ImagePrefix:
    """One unique image: its processor inputs, the ids of its pairs, and how many leading tokens they share."""

    image_inputs: dict  # pixel values and their companions (sizes, masks, grids), batch dimension first
    token_inputs: dict  # per-token inputs of the prefix (token types), already cut to `length`
    pair_ids: list[list[int]]
    scored_from: list[int]  # per pair: the first token whose probability is read (the caption's first, or the answer's)
    length: int  # the shared prefix: tokens every pair of this image has in common, none of them scored


class GenerativeAdapter(Adapter):
    """What both generative adapters share: the score ("vqa" or "likelihood") and its `prompts` (see
    `GenerativePrompts`), the answer tokens, the processor call, reading scores from logits, and the walk from a batch
    of pairs to its unique images and back. Subclasses implement `score_images` and name their `prefix`."""

    family = "generative"
    summary = (
        "generative models that AutoModelForImageTextToText builds (LLaVA, LLaVA-NeXT, Qwen2-VL, Idefics3/SmolVLM, "
        "Gemma 3, PaliGemma, BLIP-2, InstructBLIP...), scored by --score vqa or likelihood"
    )
    prefix = ""  # how results.json names the way each image's pairs run: "shared" or "per pair"

    def __init__(self, model, processor, runtime, score: str = "vqa", prompts: GenerativePrompts | None = None):
        super().__init__(model, processor, runtime)
        if score not in SCORES:
            raise InvalidInput(f"a generative model scores with one of {list(SCORES)}, not {score!r}")
        # What the model's class cannot do is said before what its processor lacks (a chat template, say).
        refusal = why_not_scored(type(model), model.config)
        if refusal is not None:
            raise InvalidInput(f"{type(model).__name__} is not scored: {refusal}")
        self.score_name, self.prompts = score, prompts or GenerativePrompts()
        self.family = f"generative-{score}"
        self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        # The tokens the tokenizer writes after every text (XLM-R's `</s>`) close it: a decoder's prompt ends with its
        # last word, and the answer is the first token the model would write after it.
        self.end_tokens = end_tokens(self.tokenizer)
        self.notes = {}
        if score == "vqa":  # P(answer) and P(negative answer) at the answer position
            self.answer_ids = [
                answer_token_id(self.tokenizer, self.answer_context(), answer)
                for answer in (self.prompts.answer, self.prompts.negative_answer)
            ]

    def answer_context(self) -> str | None:
        """The text the answer is written after, to find its token there (None: a decoder's first token)."""
        return self.prompts.text("vqa", "", self.processor)

    def settings(self) -> dict:
        """What results.json records about how this model was scored."""
        settings = {"score": self.score_name, "prompts": self.prompts.record(), "prefix": self.prefix}
        return settings | ({"answer_token_ids": self.answer_ids} if self.score_name == "vqa" else {})

    def processor_inputs(self, text: str, image, **suffix) -> dict:
        try:
            return dict(self.processor(text=[text], images=[image], return_tensors="pt", **suffix))
        except Exception as error:  # noqa: BLE001 - processors raise anything on an image they cannot place
            raise InvalidInput(
                f"the processor of {type(self.model).__name__} cannot take the image with the prompt {text!r} "
                f"({' '.join(str(error).split())}); "
                "check that the prompt places the image token as the processor expects (--prompt-template)"
            ) from error

    def read_scores(self, logits: torch.Tensor, input_ids: torch.Tensor, reads: list[range]) -> list[torch.Tensor]:
        """Each row's score from the logits of its last positions: P(answer) and P(negative answer) at position
        `read.start`, just after the row's tokens (vqa), or the mean log-probability of the row's tokens at positions
        `read` (likelihood)."""
        offset = input_ids.shape[1] - logits.shape[1]  # the logits of the first `offset` positions were not computed
        log_probs = logits.float().log_softmax(dim=-1)
        if self.score_name == "vqa":
            return [
                log_probs[row, read.start - 1 - offset, self.answer_ids].exp().cpu() for row, read in enumerate(reads)
            ]
        scores = []
        for row, read in enumerate(reads):
            predicted_at = torch.arange(read.start - 1, read.stop - 1, device=logits.device) - offset
            scores.append(log_probs[row, predicted_at, input_ids[row, read.start : read.stop]].mean().reshape(1).cpu())
        return scores

    def forward(self, keep: int, **inputs):
        """The model's forward under autocast, computing the logits of the last `keep` positions only where the
        model can (the language-model head over a large vocabulary costs as much as a layer)."""
        with self.runtime.autocast():
            return self.model(**inputs, **({"logits_to_keep": keep} if self.keeps_logits else {}))

    def text_keys(self, captions: list[str]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """What the model reads of each caption: the token ids of the pair's text with the caption in it, and of the
        caption alone (as an encoder-decoder's decoder or a processor's suffix reads it)."""
        texts = [self.prompts.text(self.score_name, caption, self.processor) for caption in captions]
        in_text = self.tokenizer(texts)["input_ids"]
        alone = self.tokenizer(captions, add_special_tokens=False)["input_ids"]
        return [(tuple(text), tuple(caption)) for text, caption in zip(in_text, alone, strict=True)]

    def score_batch(self, items: Items, pairs: list[tuple[int, str]]) -> torch.Tensor:
        """Scores [pairs, ...] of a batch of (image, caption) pairs sorted by image: each image's pairs run together."""
        images = list(dict.fromkeys(image for image, _ in pairs))
        decoder = ImageRows(items.dataset, [items.image_rows[image] for image in images], items.image_column)
        captions = {image: [] for image in images}
        for image, caption in pairs:
            captions[image].append(caption)
        pictures = {image: decoder[position] for position, image in enumerate(images)}
        pair_scores = self.score_images(pictures, captions)
        return torch.stack([score for image in images for score in pair_scores[image]])

    def score_images(self, pictures: dict, captions: dict) -> dict[int, list[torch.Tensor]]:
        """Per unique image of a batch, the scores of its pairs (`captions[image]`, in order)."""
        raise NotImplementedError

    def score(self, items: Items) -> np.ndarray:
        # Each distinct pair runs once; a batch holds as many pairs as `batch_size` items have.
        pairs_per_batch = self.runtime.with_batch_size(self.runtime.batch_size * len(items.candidates[0]))
        scores = torch.from_numpy(
            self.each_pair_once(
                items,
                lambda share: pairs_per_batch.batched(lambda batch: self.score_batch(items, batch), share, "pairs"),
            )
        )
        if self.score_name == "vqa":
            says_yes = (scores[..., 0] > scores[..., 1]).numpy()
            negatives = ~items.same_as_true()[:, 1:]  # an option with the true caption's text is no false caption
            self.notes = {
                "yes_rate_true_caption": float(says_yes[:, 0].mean()),
                "yes_rate_false_captions": float(says_yes[:, 1:][negatives].mean()),
            }
        return scores[..., 0].numpy()


class SharedPrefixAdapter(GenerativeAdapter):
    """Each image's prefix (the image and the prompt before the caption) runs once, its key/value cache expanded
    over the image's candidates; only the rest of each pair runs."""

    prefix = "shared"

    def __init__(self, model, processor, runtime, score: str = "vqa", prompts: GenerativePrompts | None = None):
        super().__init__(model, processor, runtime, score, prompts)
        self.cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def image_prefix(self, image, captions: list[str]) -> ImagePrefix:
        """Processor inputs and token ids of one image's pairs with `captions`, and their shared prefix length."""
        bare_text = self.prompts.text(self.score_name, "", self.processor)
        inputs = self.processor_inputs(bare_text, image)
        bare_ids = without_end(inputs.pop("input_ids")[0].tolist(), self.end_tokens)
        inputs.pop("attention_mask", None)
        texts = [self.prompts.text(self.score_name, caption, self.processor) for caption in captions]
        tokens = self.tokenizer([bare_text, *texts])["input_ids"]
        bare_tokens, *pair_tokens = (without_end(ids, self.end_tokens) for ids in tokens)
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
            raise InvalidInput(
                f"the processor of {type(self.model).__name__} writes the image (or other tokens) into the prompt "
                f"after the caption or around it ({bare_text!r}): the scorer shares the image and the text before the "
                "caption, so the prompt must show the image first (--prompt-template)"
            )
        token_inputs = {name: inputs.pop(name)[:, :length] for name in PER_TOKEN_INPUTS if name in inputs}
        return ImagePrefix(inputs, token_inputs, pair_ids, scored_from, length)

    @torch.no_grad()
    def score_group(self, prefixes: list[ImagePrefix]) -> list[torch.Tensor]:
        """Scores of the pairs of images whose prefixes have one length and stackable inputs: one forward over the
        prefixes, one over the rest of every pair with the prefix cache expanded to it."""
        device, length = self.runtime.device, prefixes[0].length
        prefix_ids = torch.tensor([prefix.pair_ids[0][:length] for prefix in prefixes], device=device)
        image_inputs = {
            name: torch.cat([prefix.image_inputs[name] for prefix in prefixes]).to(device)
            for name in prefixes[0].image_inputs
        }
        token_inputs = {
            name: torch.cat([prefix.token_inputs[name] for prefix in prefixes]).to(device)
            for name in prefixes[0].token_inputs
        }
        output = self.forward(
            1,
            input_ids=prefix_ids,
            attention_mask=torch.ones_like(prefix_ids),
            use_cache=True,
            **image_inputs,
            **token_inputs,
        )
        cache = output.cache if hasattr(output, "cache") else output.past_key_values
        cached = cache.get_seq_length()
        if cached != length:  # the image is no part of the prompt's tokens (GIT prepends its states)
            raise InvalidInput(
                f"{type(self.model).__name__} caches {cached} positions for a prefix of {length} tokens: the image is "
                "not among its prompt's tokens, so the scorer cannot place the captions after it"
            )
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
        attention_mask = torch.cat(
            [torch.ones(len(rests), length, dtype=rest_mask.dtype, device=device), rest_mask], dim=1
        )
        keep = 1 if self.score_name == "vqa" else width
        output = self.forward(
            keep,
            input_ids=rest_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            use_cache=True,
            **{self.cache_argument: cache},
        )
        # Row r's pair tokens begin at width - len(rest); its scored tokens are read from scored_from[r] on.
        reads = [range(width - len(rest) + start, width) for rest, start in zip(rests, scored_from)]
        return self.read_scores(output.logits, rest_ids, reads)

    def score_images(self, pictures: dict, captions: dict) -> dict[int, list[torch.Tensor]]:
        """Per image, the scores of its pairs: each image prefixed once, images of one prefix shape together."""
        prefixes = {image: self.image_prefix(picture, captions[image]) for image, picture in pictures.items()}
        pair_scores = {}
        for members in _by_shape(
            {image: prefix.image_inputs for image, prefix in prefixes.items()},
            [prefix.length for prefix in prefixes.values()],
        ):
            flat = iter(self.score_group([prefixes[image] for image in members]))
            for image in members:
                pair_scores[image] = [next(flat) for _ in prefixes[image].pair_ids]
        return pair_scores


class PerPairAdapter(GenerativeAdapter):
    """Each pair runs whole, the pairs of a batch in one right-padded forward; the vision encoder runs once per image
    where the forward takes its output and it reads the image alone."""

    prefix = "per pair"

    def __init__(self, model, processor, runtime, score: str = "vqa", prompts: GenerativePrompts | None = None):
        super().__init__(model, processor, runtime, score, prompts)
        parameters = inspect.signature(model.forward).parameters
        self.per_pair_reason = why_no_shared_prefix(type(model), model.config)
        # An encoder-decoder language model (BLIP-2 Flan-T5) reads the prompt in its encoder; its decoder writes the
        # answer, or the caption, after its start token.
        text_config = getattr(model.config, "text_config", model.config)
        self.decoder_start = text_config.decoder_start_token_id if _is_encoder_decoder(model.config) else None
        # PaliGemma's processor takes the answer as a suffix, read causally after the prompt: the caption goes there.
        self.caption_as_suffix = score == "likelihood" and "suffix" in inspect.signature(processor.__call__).parameters
        # The tokens whose logits are read.
        self.scored_ids = "input_ids" if self.decoder_start is None else "decoder_input_ids"
        # The vision encoder runs once per image where the forward takes its output and it reads the image alone
        # (not InstructBLIP's, whose Q-Former reads the prompt): the names of the inputs it reads.
        encoder_parameters = (
            inspect.signature(model.get_image_features).parameters if hasattr(model, "get_image_features") else {}
        )
        shares_encoder = "mm_encoder_outputs" in parameters and not {"qformer_input_ids", "input_ids"} & set(
            encoder_parameters
        )
        self.image_encoder_inputs = (
            [name for name in encoder_parameters if name not in ("self", "kwargs")] if shares_encoder else []
        )

    def answer_context(self) -> str | None:
        return None if _is_encoder_decoder(self.model.config) else super().answer_context()

    def settings(self) -> dict:
        return super().settings() | {
            "per_pair_because": self.per_pair_reason,
            "vision_encoder": "once per image" if self.image_encoder_inputs else "once per pair",
        }

    def pair_inputs(self, image, caption: str) -> dict:
        """The processor's inputs for one (image, caption) pair, the caption where the model reads answers."""
        turn = self.prompts.turn(self.prompts.prompt(self.score_name, caption), self.processor)
        if self.decoder_start is not None:  # the prompt to the encoder; the caption (likelihood) to the decoder
            inputs = self.processor_inputs(turn, image)
            written = (
                self.tokenizer(caption, add_special_tokens=False)["input_ids"]
                if self.score_name == "likelihood"
                else []
            )
            inputs["decoder_input_ids"] = torch.tensor([[self.decoder_start, *written]])
            inputs["decoder_attention_mask"] = torch.ones_like(inputs["decoder_input_ids"])
        elif self.caption_as_suffix:
            inputs = self.processor_inputs(turn, image, suffix=[caption])
        else:
            inputs = self.processor_inputs(self.prompts.text(self.score_name, caption, self.processor), image)
        inputs.pop("labels", None)  # PaliGemma's processor writes training labels
        return inputs if self.decoder_start is not None else self.without_end_tokens(inputs)

    def without_end_tokens(self, inputs: dict) -> dict:
        """A decoder's processor inputs without the tokenizer's end tokens after the text, in every per-token input."""
        ids = inputs["input_ids"][0].tolist()
        cut = len(ids) - len(without_end(ids, self.end_tokens))
        return {name: value[:, : len(ids) - cut] if name in TEXT_INPUTS else value for name, value in inputs.items()}

    def image_pairs(self, image, captions: list[str]) -> list[tuple[dict, range]]:
        """Each pair's inputs and the positions of its scored tokens (among the decoder's, for an encoder-decoder):
        the answer that would follow the pair (vqa), or the caption's tokens, found against the pair with an empty
        caption (likelihood)."""
        pairs = [self.pair_inputs(image, caption) for caption in captions]
        if self.score_name == "vqa":
            return [
                (inputs, range(inputs[self.scored_ids].shape[1], inputs[self.scored_ids].shape[1])) for inputs in pairs
            ]
        if self.decoder_start is not None:  # the decoder holds its start token, then the caption
            return [(inputs, range(1, inputs["decoder_input_ids"].shape[1])) for inputs in pairs]
        bare = self.pair_inputs(image, "")["input_ids"][0].tolist()
        scored = []
        for caption, inputs in zip(captions, pairs):
            ids = inputs["input_ids"][0].tolist()
            start = common_prefix_length(bare, ids)
            end = len(ids) - (len(bare) - start)  # what follows the caption (PaliGemma's end token) is not scored
            if ids[end:] != bare[start:] or end <= start:
                raise InvalidInput(
                    f"the processor of {type(self.model).__name__} does not write the caption {caption!r} as one span "
                    "of the prompt's tokens"
                )
            scored.append((inputs, range(start, end)))
        return scored

    @torch.no_grad()
    def score_pairs(self, pairs: list[tuple[dict, range]], owners: list[int]) -> list[torch.Tensor]:
        """Scores of pairs with stackable image inputs, in one forward, their text right-padded (positions and
        causal attention of every real token are as in a forward of its pair alone). `owners` numbers each pair's
        image; where the vision encoder reads the image alone, it runs once per image and its output is shared."""
        device = self.runtime.device
        pad = dict.fromkeys(("input_ids", "decoder_input_ids"), self.tokenizer.pad_token_id or 0)
        firsts = [owners.index(owner) for owner in range(max(owners) + 1)]  # each image's first pair
        batch, image_inputs = {}, {}
        for name in pairs[0][0]:
            if name in self.image_encoder_inputs:  # the encoder's inputs: one copy per image, not per pair
                image_inputs[name] = torch.cat([pairs[first][0][name] for first in firsts]).to(device)
                continue
            values = [inputs[name] for inputs, _ in pairs]
            if name in TEXT_INPUTS:  # padded on the right along the tokens, their second dimension
                width = max(value.shape[1] for value in values)
                values = [
                    torch.nn.functional.pad(
                        value, (0, 0) * (value.dim() - 2) + (0, width - value.shape[1]), value=pad.get(name, 0)
                    )
                    for value in values
                ]
            batch[name] = torch.cat(values).to(device)
        if image_inputs:
            with self.runtime.autocast():
                encoded = self.model.get_image_features(**image_inputs)
            batch |= dict.fromkeys(image_inputs)  # None: BLIP-2's forward requires its pixel values be named
            batch["mm_encoder_outputs"] = {"image": _select_rows(encoded, torch.tensor(owners, device=device))}
        reads = [read for _, read in pairs]
        keep = batch[self.scored_ids].shape[1] - min(read.start for read in reads) + 1
        output = self.forward(keep, **batch)
        return self.read_scores(output.logits[:, -keep:], batch[self.scored_ids], reads)

    def score_images(self, pictures: dict, captions: dict) -> dict[int, list[torch.Tensor]]:
        """Per image, the scores of its pairs, each pair run whole, the pairs of one image shape together."""
        pairs = {image: self.image_pairs(picture, captions[image]) for image, picture in pictures.items()}
        pair_scores = {}
        for members in _by_shape({image: image_pairs[0][0] for image, image_pairs in pairs.items()}):
            owners = [owner for owner, image in enumerate(members) for _ in pairs[image]]
            flat = iter(self.score_pairs([pair for image in members for pair in pairs[image]], owners))
            for image in members:
                pair_scores[image] = [next(flat) for _ in pairs[image]]
        return pair_scores


def _common_suffix_length(first: list[int], second: list[int]) -> int:
    return common_prefix_length(first[::-1], second[::-1])


def _by_shape(inputs: dict[int, dict], lengths: list[int] | None = None) -> list[list[int]]:
    """Images whose image inputs (and prefix lengths, if given) have one shape, so that they stack in one batch."""
    groups: dict[tuple, list[int]] = {}
    for position, (image, values) in enumerate(inputs.items()):
        shapes = tuple((name, tuple(value.shape[1:])) for name, value in values.items() if name not in TEXT_INPUTS)
        groups.setdefault((lengths[position] if lengths else None, shapes), []).append(image)
    return list(groups.values())


def _select_rows(output, rows: torch.Tensor):
    """A model output (or tensor) with the batch rows `rows` of each of its tensors, nested outputs included."""
    if isinstance(output, torch.Tensor):
        return output.index_select(0, rows)
    if isinstance(output, tuple):
        return type(output)(_select_rows(value, rows) for value in output)
    if output is None or not hasattr(output, "items"):
        return output
    return type(output)(**{name: _select_rows(value, rows) for name, value in output.items()})


def _is_encoder_decoder(config) -> bool:
    return bool(
        getattr(config, "is_encoder_decoder", False)
        or getattr(getattr(config, "text_config", None), "is_encoder_decoder", False)
    )


def _has_running_state(config) -> bool:
    """Whether any of the language model's layers keeps a running state instead of a key/value per token (linear
    attention, convolution, hybrids), as transformers' cache builds its layers from the config's layer types."""
    text_config = getattr(config, "text_config", None) or config
    layer_types = getattr(text_config, "layer_types", None) or getattr(text_config, "layers_block_type", None) or []
    return any(
        issubclass(DYNAMIC_LAYER_TYPE_MAPPING.get(layer, DummyLayer), LinearAttentionCacheLayerMixin)
        for layer in layer_types
    )


def _forward_parameters(model_class) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(model_class.forward).parameters)


def why_not_scored(model_class, config) -> str | None:
    """Why a generative architecture is not scored (None: it is), from its class and config alone, so that it is
    refused before its weights load: a model type of `NOT_SCORED`, an action model, or a forward that cannot read an
    image and a prompt (no image input, no text prompt to the model that reads the image, an input that neither
    gives)."""
    parameters = _forward_parameters(model_class)
    if config.model_type in NOT_SCORED:
        return NOT_SCORED[config.model_type]
    if "actions" in parameters:  # vision-language-action models (PI0, PI0.5): their logits are action velocities
        return "it predicts robot actions (its forward takes actions), not text, so a caption has no likelihood"
    if not set(IMAGE_INPUTS) & set(parameters):
        return "its forward takes no image (no pixel values): it reads another modality, or text alone"
    if "input_ids" not in parameters:
        return (
            "its forward takes no prompt (no input_ids): the image goes to its encoder and text only to its decoder, "
            "so a question about a caption has nowhere to go"
        )
    known = {"self", *IMAGE_INPUTS, *TEXT_INPUTS}
    required = [
        name
        for name, parameter in parameters.items()
        if parameter.default is parameter.empty
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        and name not in known
    ]
    if required:
        return f"its forward requires {', '.join(required)}, which an image and a caption do not give"
    return None


def why_no_shared_prefix(model_class, config) -> str | None:
    """Why the pairs of an image cannot share its prefix (None: they can), from the model's class and config:
    `adapters.decide` then chooses `PerPairAdapter` over `SharedPrefixAdapter`."""
    parameters = _forward_parameters(model_class)
    if _is_encoder_decoder(config):
        return "its language model is an encoder-decoder: the prompt goes to its encoder, the answer is its decoder's"
    if config.model_type in PER_PAIR_MODEL_TYPES:
        return PER_PAIR_MODEL_TYPES[config.model_type]
    if "qformer_input_ids" in parameters:
        return "its Q-Former reads the prompt, so the image's tokens depend on the caption"
    if not {"cache", "past_key_values"} & set(parameters):
        return "its forward takes no key/value cache"
    if _has_running_state(config):
        return (
            "its language model keeps a running state in some layers (linear attention, convolution), which the "
            "padding between a shared prefix and a pair's tokens would change"
        )
    return None
