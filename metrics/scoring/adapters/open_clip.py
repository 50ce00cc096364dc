"""open_clip models: any architecture open_clip builds (its ViTs and ResNets, timm towers, SigLIP, CoCa's contrastive
head), scored through open_clip itself by the cosine of `encode_image` and `encode_text`, as open_clip's zero-shot
code compares them (SigLIP's logits, `scale * cosine + bias`, rank candidates as the cosine does).

`loading.load_model("hf-hub:ORG/NAME")` or `load_model("open_clip:ARCH:PRETRAINED")` builds the model with
`open_clip.create_model_and_transforms` and gives an `OpenClipProcessor`: open_clip's evaluation transform and its
tokenizer (`open_clip.get_tokenizer`). Captions are read as that tokenizer writes them (lower-cased and cleaned
where it does so, cut and padded to the context length), and each distinct row of token ids is encoded once.

>>> model, processor = load_model("hf-hub:timm/ViT-B-16-SigLIP")  # doctest: +SKIP
>>> result = score_items(model, processor, dataset)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..runtime import Runtime
from .dual import DualEncoderAdapter


@dataclass(frozen=True)
class OpenClipProcessor:
    """What open_clip gives beside the model: `preprocess` (a PIL image to a [3, H, W] tensor, the evaluation
    transform) and `tokenizer` (captions to a [captions, context_length] tensor of token ids)."""

    preprocess: Callable
    tokenizer: Callable


class OpenClipImages:
    """Collate a batch of PIL images through open_clip's transform (picklable, so it runs in workers)."""

    def __init__(self, preprocess: Callable):
        self.preprocess = preprocess

    def __call__(self, images: list) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.stack([self.preprocess(image) for image in images])}


def is_open_clip_model(model) -> bool:
    """Whether `model` is one of open_clip's model classes (told by its module, so open_clip need not be imported)."""
    return type(model).__module__.split(".")[0] == "open_clip"


class OpenClipAdapter(DualEncoderAdapter):
    family = "open_clip"
    summary = (
        "open_clip models of any architecture (aro eval --model hf-hub:ORG/NAME or open_clip:ARCH:PRETRAINED; "
        'pip install "aro[open_clip]")'
    )

    def __init__(self, model, processor: OpenClipProcessor, runtime: Runtime):
        self.runtime = runtime
        self.model = model.to(runtime.device).eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.preprocess
        self.text_limit = processor.tokenizer.context_length
        self.distinct_inputs = {}
        self.image_inputs = {"pixel_values"}

    @property
    def image_preprocess(self) -> OpenClipImages:
        return OpenClipImages(self.image_processor)

    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values)

    def embed_texts(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        return self.tokenizer(captions).to(self.runtime.device)

    def text_keys(self, captions: list[str]) -> list[tuple[int, ...]]:
        return [tuple(row) for row in self.tokenizer(captions).tolist()]

    def token_lengths(self, captions: list[str]) -> list[int]:
        """Token counts before the tokenizer cuts captions to its context length: the tokens other than padding in
        rows four times as long (a caption longer still counts as longer than the limit, which is all that is asked).
        The padding id is the one an empty caption's row holds most of."""
        rows = self.tokenizer(["", *captions], context_length=4 * self.text_limit)
        padding = rows[0].mode().values.item()
        return (rows[1:] != padding).sum(dim=1).tolist()
