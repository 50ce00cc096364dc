"""Small generative vision-language models (LLaVA, Idefics3, Gemma 3, Llama 3.2 Vision, PaliGemma, BLIP-2 with OPT
or T5, InstructBLIP) with a
word-level tokenizer (and a chat template where the family has one), built offline for the tests and benchmarks of
the generative scorer.

Each builder returns a randomly initialised (seeded) model of the real transformers class and the real processor
of its family, so both save with `save_pretrained` and load back with `AutoModelForImageTextToText` and
`AutoProcessor`, exactly as a Hub checkpoint does. Weights that transformers initialises to a constant and that
would hide a bug are made random too (`random_query_tokens`, Mllama's gates).

Each builder imports its family's classes itself: importing all eight families takes 4 to 6 s on the 2-core test
machine, where a test needs one (`python -X importtime`, measured for issue 22).

>>> model, processor = make_tiny_vlm("llava", ["a", "red", "circle"])
>>> type(model).__name__, type(processor).__name__
('LlavaForConditionalGeneration', 'LlavaProcessor')
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
TURN_START, TURN_END = "<|im_start|>", "<|im_end|>"
# The words of the scorer's default prompts and of the chat template, so that prompts are never unknown tokens.
PROMPT_WORDS = (
    'does this figure show please answer yes or no Yes No Does Please Write write a short caption for this the image " '
    "? . : user assistant"
).split()
# A ChatML template over typed content parts, as Hub processors ship; `image_token` is filled in per family.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}" + TURN_START + "{{ message['role'] }}\n"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}IMAGE{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}" + TURN_END + "\n{% endfor %}{% if add_generation_prompt %}" + TURN_START + "assistant\n{% endif %}"
)


def chat_word_tokenizer(
    words: Iterable[str], special_tokens: Iterable[str] | dict[str, str] = (), max_length: int = 512
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` and the prompt words that splits punctuation off words, adds no tokens
    of its own (the chat template writes the start token) and knows `special_tokens` (image placeholders; a dict
    names them, as `tokenizer.image_token` for the processors that look them up by name)."""
    named = special_tokens if isinstance(special_tokens, dict) else {}
    specials = [PAD, UNK, BOS, EOS, TURN_START, TURN_END, *(named.values() if named else special_tokens)]
    vocab = {token: index for index, token in enumerate(specials)}
    for word in sorted(set(words) | set(PROMPT_WORDS)):
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="$A", pair="$A $B:1"
    )  # a pair's second text has type 1
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=max_length,
        extra_special_tokens=named or None,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[4:]})
    return tokenizer


def _text_config(tokenizer, hidden_size: int, num_layers: int) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _llava(words, hidden_size, num_layers, image_size):
    from transformers import (  # this family's classes only: see the module docstring
        CLIPImageProcessorPil,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = chat_word_tokenizer(words, ["<image>"])
    vision = dict(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=8,
    )
    config = LlavaConfig(
        vision_config=dict(vision, model_type="clip_vision_model"),
        text_config=dict(_text_config(tokenizer, hidden_size, num_layers), model_type="llama"),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE.replace("IMAGE", "<image>"),
    )
    return LlavaForConditionalGeneration(config), processor


def _idefics3(words, hidden_size, num_layers, image_size):
    from transformers import (  # this family's classes only: see the module docstring
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    tokens = ["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
    tokenizer = chat_word_tokenizer(words, tokens)
    vision = dict(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=8,
    )
    config = Idefics3Config(
        vision_config=vision,
        text_config=dict(_text_config(tokenizer, hidden_size, num_layers), model_type="llama"),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size}
    )
    # (image_size / patch_size)^2 patches, merged by scale_factor^2 in the connector.
    image_seq_len = (image_size // 8) ** 2 // 4
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=CHAT_TEMPLATE.replace("IMAGE", "<image>"),
    )
    return Idefics3ForConditionalGeneration(config), processor


def _gemma3(words, hidden_size, num_layers, image_size):
    from transformers import (  # this family's classes only: see the module docstring
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
    )

    tokens = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = chat_word_tokenizer(words, tokens)  # Gemma 3's processor reads its image tokens from the tokenizer
    text = dict(
        _text_config(tokenizer, hidden_size, num_layers),
        head_dim=hidden_size // 4,
        sliding_window=256,
        query_pre_attn_scalar=hidden_size // 4,
    )
    vision = dict(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=8,
    )
    tokens_per_image = (image_size // 16) ** 2  # the patch grid average-pooled 2 x 2
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
    )
    image_processor = Gemma3ImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=tokens_per_image,
        chat_template=CHAT_TEMPLATE.replace("IMAGE", "<start_of_image>"),
    )
    return Gemma3ForConditionalGeneration(config), processor


def _paligemma(words, hidden_size, num_layers, image_size):
    """PaliGemma has no chat template: its prompt is "<image>...<bos>{prompt}\\n", the answer a suffix."""
    from transformers import (  # this family's classes only: see the module docstring
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
    )

    tokenizer = chat_word_tokenizer(words, {"image_token": "<image>"})
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    image_processor.image_seq_length = (image_size // 8) ** 2  # one token per patch
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)  # adds its location tokens
    vision = dict(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=8,
        projection_dim=hidden_size,
    )
    # Larger weights than the default: at 0.02 a random Gemma over a vocabulary of ~1,200 predicts almost uniformly.
    text = dict(_text_config(tokenizer, hidden_size, num_layers), head_dim=hidden_size // 4, initializer_range=0.2)
    config = PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.image_token_id,
        projection_dim=hidden_size,
        hidden_size=hidden_size,
        vocab_size=len(tokenizer),
    )
    return PaliGemmaForConditionalGeneration(config), processor


def _blip2_parts(words, hidden_size, num_layers, image_size, text_model_type: str):
    """The vision, Q-Former and text configs and the processor parts shared by BLIP-2 and InstructBLIP."""
    from transformers import BlipImageProcessorPil  # this family's class only: see the module docstring

    tokenizer = chat_word_tokenizer(words, ["<image>"])  # the processors name their image token themselves
    vision = dict(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=8,
    )
    qformer = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        encoder_hidden_size=hidden_size,
        pad_token_id=tokenizer.pad_token_id,
    )
    text = dict(_text_config(tokenizer, hidden_size, num_layers), model_type=text_model_type)
    if text_model_type == "opt":
        text |= dict(ffn_dim=2 * hidden_size, word_embed_proj_dim=hidden_size)
    if text_model_type == "t5":  # Flan-T5: the prompt to the encoder, the answer from the decoder's start (pad) token
        text |= dict(d_ff=2 * hidden_size, d_kv=hidden_size // 4, decoder_start_token_id=tokenizer.pad_token_id)
    configs = dict(
        vision_config=vision,
        qformer_config=qformer,
        text_config=text,
        num_query_tokens=4,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    return configs, tokenizer, BlipImageProcessorPil(size={"height": image_size, "width": image_size})


def random_query_tokens(model):
    """`model` with seeded random learned queries (BLIP-2, InstructBLIP): transformers starts them at zero, and then
    every query is the same, so reading one query where all should be read (the matching head's mean) goes unseen."""
    with torch.no_grad():
        model.query_tokens.normal_()
    return model


def _blip2(words, hidden_size, num_layers, image_size, text_model_type: str = "opt"):
    """BLIP-2 with an OPT (or Flan-T5) language model; no chat template (its prompts are "Question: ... Answer:")."""
    from transformers import (  # this family's classes only: see the module docstring
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
    )

    configs, tokenizer, image_processor = _blip2_parts(words, hidden_size, num_layers, image_size, text_model_type)
    processor = Blip2Processor(
        image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=configs["num_query_tokens"]
    )
    return random_query_tokens(Blip2ForConditionalGeneration(Blip2Config(**configs))), processor


def _instructblip(words, hidden_size, num_layers, image_size):
    """InstructBLIP with a Llama (Vicuna) language model: its Q-Former reads the prompt with its own tokenizer."""
    from transformers import (  # this family's classes only: see the module docstring
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    configs, tokenizer, image_processor = _blip2_parts(words, hidden_size, num_layers, image_size, "llama")
    processor = InstructBlipProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        qformer_tokenizer=chat_word_tokenizer(words),
        num_query_tokens=configs["num_query_tokens"],
    )
    return random_query_tokens(InstructBlipForConditionalGeneration(InstructBlipConfig(**configs))), processor


def _mllama(words, hidden_size, num_layers, image_size):
    """Llama 3.2 Vision: text layers cross-attend to the image's states (one tile here), after an `<|image|>` token."""
    from transformers import (  # this family's classes only: see the module docstring
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessorPil,
        MllamaProcessor,
    )

    tokenizer = chat_word_tokenizer(words, ["<|image|>"])
    vision = dict(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_global_layers=1,
        attention_heads=4,
        image_size=image_size,
        patch_size=8,
        max_num_tiles=1,
        vision_output_dim=2 * hidden_size,
        intermediate_layers_indices=[0],
        supported_aspect_ratios=[[1, 1]],
    )
    text = dict(
        _text_config(tokenizer, hidden_size, num_layers + 1), cross_attention_layers=[num_layers], rope_scaling=None
    )
    config = MllamaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<|image|>")
    )
    model = MllamaForConditionalGeneration(config)
    with torch.no_grad():  # the cross-attention gates start at 0, which would hide the image from the text
        for name, parameter in model.named_parameters():
            if "gate" in name:
                parameter.fill_(1.0)
    image_processor = MllamaImageProcessorPil(size={"height": image_size, "width": image_size}, max_image_tiles=1)
    processor = MllamaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE.replace("IMAGE", "<|image|>")
    )
    return model, processor


FAMILIES = {
    "llava": _llava,
    "idefics3": _idefics3,
    "gemma3": _gemma3,
    "paligemma": _paligemma,
    "blip2": _blip2,
    "instructblip": _instructblip,
    "blip2-t5": partial(_blip2, text_model_type="t5"),
    "mllama": _mllama,
}


def make_tiny_vlm(
    family: str, words: Iterable[str], hidden_size: int = 32, num_layers: int = 1, image_size: int = 32, seed: int = 0
):
    """A seeded random (model, processor) of `family` (one of `FAMILIES`), in eval mode, for captions of `words`."""
    torch.manual_seed(seed)
    model, processor = FAMILIES[family](list(words), hidden_size, num_layers, image_size)
    return model.eval(), processor
