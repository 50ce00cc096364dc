"""Small CLIP models with a word-level tokenizer, for the offline demo and the tests.

A real CLIP tokenizer is a 49k-token BPE; for a synthetic world with a few dozen words a word-level tokenizer
says the same with a vocabulary the model can learn in minutes. Everything here is plain transformers: the
model is a `CLIPModel`, the processor a `CLIPProcessor`, and both save and load with `from_pretrained`.

>>> model, processor = make_tiny_clip(["a", "red", "circle"], image_size=32)
>>> batch = processor(text=["a red circle"], return_tensors="pt", padding=True)
>>> batch["input_ids"].tolist()
[[2, 4, 6, 5, 3]]
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<|startoftext|>", "<|endoftext|>", "<unk>"
# CLIP's text tower treats eos_token_id == 2 as a legacy config and pools at the highest token id instead of at
# the end token, so the end token must not get id 2.
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)


def word_tokenizer(words: Iterable[str], max_length: int = 32) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over `words`, wrapping each text in CLIP's start and end tokens."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(set(words)):
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=max_length,
    )


def tiny_clip_config(
    tokenizer: PreTrainedTokenizerFast,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    projection_dim: int = 64,
    mlp_ratio: int = 4,
    hidden_act: str = "quick_gelu",
) -> CLIPConfig:
    """A `CLIPConfig` sized for CPU work whose text tower pools at the tokenizer's end token; its MLPs are
    `mlp_ratio` times as wide as the model, with CLIP's QuickGELU or another transformers activation."""
    tower = dict(
        hidden_size=hidden_size,
        intermediate_size=mlp_ratio * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        hidden_act=hidden_act,
    )
    return CLIPConfig(
        text_config=dict(
            tower,
            vocab_size=len(tokenizer),
            max_position_embeddings=tokenizer.model_max_length,
            # CLIP pools at the first end token; tiny tokenizers must say which id that is.
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(tower, image_size=image_size, patch_size=patch_size),
        projection_dim=projection_dim,
    )


def tiny_clip_processor(tokenizer: PreTrainedTokenizerFast, image_size: int = 32) -> CLIPProcessor:
    """A `CLIPProcessor` that resizes and centre-crops to `image_size` with CLIP's normalisation.

    The PIL backend is pinned: it needs no torchvision and gives the same pixels on every machine.
    """
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def make_tiny_clip(
    words: Iterable[str], image_size: int = 32, seed: int = 0, **config_kwargs
) -> tuple[CLIPModel, CLIPProcessor]:
    """A randomly initialised (seeded) tiny `CLIPModel` and its processor for captions made of `words`."""
    tokenizer = word_tokenizer(words)
    config = tiny_clip_config(tokenizer, image_size=image_size, **config_kwargs)
    torch.manual_seed(seed)
    return CLIPModel(config).eval(), tiny_clip_processor(tokenizer, image_size)
