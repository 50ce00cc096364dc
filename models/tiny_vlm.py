"""Small generative vision-language models (every family of `FAMILIES`: LLaVA, Qwen-VL, InternVL, Mistral 3, Ovis2.5
and more) with a word-level tokenizer (and a chat template where the family has one), built offline for the tests
and benchmarks of the generative scorer.

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

import string
from collections.abc import Iterable
from functools import partial

import torch
import transformers
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
    words: Iterable[str],
    special_tokens: Iterable[str] | dict[str, str] = (),
    max_length: int = 512,
    end_token: bool = False,
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` and the prompt words that splits punctuation off words, adds no tokens
    of its own (the chat template writes the start token; with `end_token`, it writes `<s> ... </s>` around every
    text, as XLM-R's and T5's do) and knows `special_tokens` (image placeholders; a dict names them, as
    `tokenizer.image_token` for the processors that look them up by name)."""
    named = special_tokens if isinstance(special_tokens, dict) else {}
    specials = [PAD, UNK, BOS, EOS, TURN_START, TURN_END, *(named.values() if named else special_tokens)]
    vocab = {token: index for index, token in enumerate(specials)}
    for word in sorted(set(words) | set(PROMPT_WORDS)):
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if end_token:
        ends = [(BOS, vocab[BOS]), (EOS, vocab[EOS])]
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B:1 {EOS}:1", special_tokens=ends
        )
    else:  # a pair's second text has type 1
        backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1")
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


def _vision(hidden_size: int, num_layers: int, image_size: int, patch_size: int = 8) -> dict:
    """A ViT vision config (CLIP, SigLIP, Idefics3 and most towers name their sizes this way)."""
    return dict(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
    )


# Qwen2-VL's and its successors' image tokens, as their tokenizers name them (the processors look them up by name).
QWEN_TOKENS = {
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
}


def _qwen_vl(words, hidden_size, num_layers, image_size, version: str = "2"):
    """Qwen2-VL, Qwen2.5-VL or Qwen3-VL: multimodal RoPE, an image of 8 x 8 patches merged 2 x 2 into few tokens.

    Their processors' video processor exists only for torchvision. Larger weights and fast rotations than the
    defaults, so that a wrong position moves the scores by far more than the tolerance.
    """

    model_class, config_class, processor_class, video_class = {
        "2": ("Qwen2VLForConditionalGeneration", "Qwen2VLConfig", "Qwen2VLProcessor", "Qwen2VLVideoProcessor"),
        "2.5": (
            "Qwen2_5_VLForConditionalGeneration",
            "Qwen2_5_VLConfig",
            "Qwen2_5_VLProcessor",
            "Qwen2VLVideoProcessor",
        ),
        "3": ("Qwen3VLForConditionalGeneration", "Qwen3VLConfig", "Qwen3VLProcessor", "Qwen3VLVideoProcessor"),
    }[version]
    tokenizer = chat_word_tokenizer(words, QWEN_TOKENS)
    patches = dict(patch_size=8, spatial_merge_size=2, temporal_patch_size=2)
    vision = dict(depth=num_layers, hidden_size=hidden_size, num_heads=4, **patches)
    if version == "2":
        vision |= dict(embed_dim=hidden_size, mlp_ratio=2)
    else:
        vision |= dict(intermediate_size=2 * hidden_size, out_hidden_size=hidden_size)
    if version == "2.5":
        vision |= dict(window_size=16, fullatt_block_indexes=[0])
    if version == "3":
        vision |= dict(num_position_embeddings=16, deepstack_visual_indexes=[0])
    rope = {"rope_type": "default", "mrope_section": [2, 1, 1], "rope_theta": 2.0}
    if version == "3":
        rope["mrope_interleaved"] = True
    text = dict(
        _text_config(tokenizer, hidden_size, num_layers), head_dim=hidden_size // 4, initializer_range=0.2
    ) | dict(rope_parameters=rope)
    ids = {
        f"{name}_id": tokenizer.convert_tokens_to_ids(token)
        for name, token in QWEN_TOKENS.items()
        if name != "vision_end_token" or version != "3"
    } | {"vision_end_token_id": tokenizer.convert_tokens_to_ids(QWEN_TOKENS["vision_end_token"])}
    config = getattr(transformers, config_class)(text_config=text, vision_config=vision, **ids)
    pixels = {"shortest_edge": 16 * 16, "longest_edge": 48 * 48}
    image_processor = transformers.Qwen2VLImageProcessorPil(
        size=pixels, merge_size=2, **{k: v for k, v in patches.items() if k != "spatial_merge_size"}
    )
    video_processor = getattr(transformers, video_class)(size=pixels, merge_size=2, patch_size=8, temporal_patch_size=2)
    processor = getattr(transformers, processor_class)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>"),
    )
    return getattr(transformers, model_class)(config), processor


def _qwen3_with_axial_vit(words, hidden_size, num_layers, image_size, family: str):
    """LLaVA-OneVision-1.5 or Ovis2.5: a ViT with 2D (axial) RoPE over 8 x 8 patches of one frame, merged 2 x 2, and
    a Qwen3 language model with plain 1D positions. LLaVA-OneVision-1.5's processor is EXAONE 4.5's, its image
    processor Qwen2-VL's; Ovis2.5 puts its image tokens between start and end tokens of its own."""
    tokens, config_class, model_class, processor_class, image_class, video_class, image_text = {
        "llava_onevision1_5": (
            QWEN_TOKENS,
            "LlavaOnevision15Config",
            "LlavaOnevision15ForConditionalGeneration",
            "Exaone4_5_Processor",
            "Qwen2VLImageProcessorPil",
            "Qwen2VLVideoProcessor",
            "<|vision_start|><|image_pad|><|vision_end|>",
        ),
        "ovis2_5": (
            {
                f"{kind}{part}_token": f"<ovis_{kind}{part}>"
                for kind in ("image", "video")
                for part in ("", "_start", "_end")
            },
            "Ovis2_5Config",
            "Ovis2_5ForConditionalGeneration",
            "Ovis2_5Processor",
            "Ovis2_5ImageProcessorPil",
            "Ovis2_5VideoProcessor",
            "<ovis_image>",
        ),
    }[family]
    tokenizer = chat_word_tokenizer(words, tokens)
    patches = dict(patch_size=8, spatial_merge_size=2)
    vision = dict(intermediate_size=2 * hidden_size, rope_parameters={"rope_type": "axial", "rope_theta": 2.0})
    if family == "ovis2_5":
        vision |= dict(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=4,
            image_size=image_size,
            window_size=16,
            vocab_size=64,
            max_position_embeddings=64,
        )
    else:
        vision |= dict(depth=num_layers, hidden_size=hidden_size, num_heads=4, out_hidden_size=hidden_size)
    text = dict(_text_config(tokenizer, hidden_size, num_layers), head_dim=hidden_size // 4, initializer_range=0.2)
    ids = {f"{name}_id": tokenizer.convert_tokens_to_ids(token) for name, token in tokens.items()}
    config = getattr(transformers, config_class)(text_config=text, vision_config=vision | patches, **ids)
    frames = dict(size={"shortest_edge": 16 * 16, "longest_edge": 48 * 48}, merge_size=2, patch_size=8)
    processor = getattr(transformers, processor_class)(
        image_processor=getattr(transformers, image_class)(temporal_patch_size=1, **frames),
        tokenizer=tokenizer,
        video_processor=getattr(transformers, video_class)(temporal_patch_size=1, **frames),
        chat_template=CHAT_TEMPLATE.replace("IMAGE", image_text),
    )
    return getattr(transformers, model_class)(config), processor


def _llava_onevision(words, hidden_size, num_layers, image_size):
    """LLaVA-OneVision: a SigLIP tower, the image split into tiles of a grid of pinpoints (one tile here) plus the
    whole image, with a newline token after each row of features; a Qwen2 language model."""
    from transformers import (  # this family's classes only: see the module docstring
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = chat_word_tokenizer(words, {"image_token": "<image>", "video_token": "<video>"})
    grid = [[image_size, image_size]]
    config = LlavaOnevisionConfig(
        vision_config=dict(_vision(hidden_size, num_layers, image_size), model_type="siglip_vision_model"),
        text_config=dict(_text_config(tokenizer, hidden_size, num_layers), model_type="qwen2"),
        image_token_id=tokenizer.image_token_id,
        video_token_id=tokenizer.video_token_id,
        image_grid_pinpoints=grid,
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
    )
    size = {"height": image_size, "width": image_size}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessorPil(size=size, image_grid_pinpoints=grid),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=(image_size // 8) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE.replace("IMAGE", "<image>"),
    )
    return LlavaOnevisionForConditionalGeneration(config), processor


def _internvl(words, hidden_size, num_layers, image_size):
    """InternVL: an InternViT tower whose patch features are pixel-shuffled 2 x 2, between <img> and </img>."""
    from transformers import (  # this family's classes only: see the module docstring
        GotOcr2ImageProcessorPil,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tokens = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    tokenizer = chat_word_tokenizer(words, tokens)
    vision = _vision(hidden_size, num_layers, image_size) | dict(image_size=[image_size, image_size], patch_size=[8, 8])
    config = InternVLConfig(
        vision_config=vision,
        text_config=dict(_text_config(tokenizer, hidden_size, num_layers), model_type="qwen2"),
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=(image_size // 16) ** 2,
        downsample_ratio=0.5,
    )
    size = {"height": image_size, "width": image_size}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessorPil(size=size, crop_to_patches=False),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=(image_size // 16) ** 2,
        chat_template=CHAT_TEMPLATE.replace("IMAGE", "<IMG_CONTEXT>"),
    )
    return InternVLForConditionalGeneration(config), processor


def _pixtral(words, hidden_size, num_layers, image_size, model: str = "mistral3"):
    """Mistral 3 (a Pixtral tower whose patches are merged 2 x 2), or Pixtral in LLaVA (`model="llava"`): the image
    in rows of [IMG] tokens, each row ended by [IMG_BREAK], the last by [IMG_END]; a Mistral language model."""

    merge = 2 if model == "mistral3" else 1
    tokens = {"image_token": "[IMG]", "image_break_token": "[IMG_BREAK]", "image_end_token": "[IMG_END]"}
    tokenizer = chat_word_tokenizer(words, tokens)
    vision = dict(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        head_dim=hidden_size // 4,
        image_size=image_size,
        patch_size=8,
        model_type="pixtral",
    )
    text = dict(_text_config(tokenizer, hidden_size, num_layers), head_dim=hidden_size // 4, model_type="mistral")
    if model == "mistral3":
        config = transformers.Mistral3Config(
            vision_config=vision,
            text_config=text,
            image_token_id=tokenizer.image_token_id,
            spatial_merge_size=merge,
            vision_feature_layer=-1,
        )
    else:
        config = transformers.LlavaConfig(
            vision_config=vision,
            text_config=text,
            image_token_id=tokenizer.image_token_id,
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
        )
    processor = transformers.PixtralProcessor(
        image_processor=transformers.PixtralImageProcessorPil(
            size={"longest_edge": image_size}, patch_size={"height": 8, "width": 8}
        ),
        tokenizer=tokenizer,
        patch_size=8,
        spatial_merge_size=merge,
        chat_template=CHAT_TEMPLATE.replace("IMAGE", "[IMG]"),
        **tokens,
    )
    model_class = "Mistral3ForConditionalGeneration" if model == "mistral3" else "LlavaForConditionalGeneration"
    return getattr(transformers, model_class)(config), processor


def _smolvlm(words, hidden_size, num_layers, image_size):
    """SmolVLM: Idefics3's architecture, with its own processor (which needs `num2words`) and a video processor."""
    from transformers import (  # this family's classes only: see the module docstring
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    tokens = ["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>", "<video>"]
    tokenizer = chat_word_tokenizer(words, tokens)
    config = SmolVLMConfig(
        vision_config=_vision(hidden_size, num_layers, image_size),
        text_config=dict(_text_config(tokenizer, hidden_size, num_layers), model_type="llama"),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    edge = {"longest_edge": image_size}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessorPil(do_image_splitting=False, size=edge, max_image_size=edge),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(size=edge, max_image_size=edge),
        image_seq_len=(image_size // 8) ** 2 // 4,
        chat_template=CHAT_TEMPLATE.replace("IMAGE", "<image>"),
    )
    return SmolVLMForConditionalGeneration(config), processor


def _kosmos2(words, hidden_size, num_layers, image_size):
    """Kosmos-2: the processor puts the image's 64 query tokens after the start token; its XLM-R tokenizer writes
    `<s> ... </s>` around every text (the processor keeps the start only). No chat template."""
    from transformers import (  # this family's classes only: see the module docstring
        CLIPImageProcessorPil,
        Kosmos2Config,
        Kosmos2ForConditionalGeneration,
        Kosmos2Processor,
    )

    tokenizer = chat_word_tokenizer(words, end_token=True)
    processor = Kosmos2Processor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        ),
        tokenizer=tokenizer,
    )  # adds its tag and location tokens to the tokenizer
    text = dict(
        vocab_size=len(tokenizer),
        embed_dim=hidden_size,
        ffn_dim=2 * hidden_size,
        layers=num_layers,
        attention_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        dropout=0.0,
        attention_dropout=0.0,
    )
    config = Kosmos2Config(
        text_config=text, vision_config=_vision(hidden_size, num_layers, image_size), latent_query_num=64
    )
    return Kosmos2ForConditionalGeneration(config), processor


FAMILIES = {
    "llava": _llava,
    "idefics3": _idefics3,
    "gemma3": _gemma3,
    "paligemma": _paligemma,
    "blip2": _blip2,
    "instructblip": _instructblip,
    "blip2-t5": partial(_blip2, text_model_type="t5"),
    "mllama": _mllama,
    "qwen2_vl": _qwen_vl,
    "qwen2_5_vl": partial(_qwen_vl, version="2.5"),
    "qwen3_vl": partial(_qwen_vl, version="3"),
    "llava_onevision": _llava_onevision,
    "llava_onevision1_5": partial(_qwen3_with_axial_vit, family="llava_onevision1_5"),
    "ovis2_5": partial(_qwen3_with_axial_vit, family="ovis2_5"),
    "internvl": _internvl,
    "mistral3": _pixtral,
    "pixtral_llava": partial(_pixtral, model="llava"),
    "smolvlm": _smolvlm,
    "kosmos2": _kosmos2,
}


def make_tiny_vlm(
    family: str, words: Iterable[str], hidden_size: int = 32, num_layers: int = 1, image_size: int = 32, seed: int = 0
):
    """A seeded random (model, processor) of `family` (one of `FAMILIES`), in eval mode, for captions of `words`."""
    torch.manual_seed(seed)
    model, processor = FAMILIES[family](list(words), hidden_size, num_layers, image_size)
    return model.eval(), processor


def make_tiny_siglip2(hidden_size: int = 32, seed: int = 0):
    """A seeded random SigLIP 2 dual encoder (`Siglip2Model`) and its processor, at the sizes its processor's defaults
    assume (as every SigLIP 2 checkpoint's): each image resized at its own aspect ratio to at most 256 patches of
    16 x 16 (NaFlex), padded to 256 with a mask; captions padded to 64 tokens. Its tokenizer is SigLIP 2's own class
    (the processor loads no other), over single characters: a BPE with no merges."""
    from transformers import (  # this family's classes only: see the module docstring
        Siglip2Config,
        Siglip2ImageProcessorPil,
        Siglip2Model,
        Siglip2Processor,
        Siglip2Tokenizer,
    )

    torch.manual_seed(seed)
    pieces = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "▁", *string.ascii_lowercase, *string.punctuation]
    tokenizer = Siglip2Tokenizer(
        vocab={piece: index for index, piece in enumerate(pieces)}, merges=[], model_max_length=64
    )
    tower = dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=1, num_attention_heads=4)
    text = dict(tower, vocab_size=len(tokenizer), max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    config = Siglip2Config(text_config=text, vision_config=dict(tower, patch_size=16, num_patches=256))
    image_processor = Siglip2ImageProcessorPil(patch_size=16, max_num_patches=256)
    return Siglip2Model(config).eval(), Siglip2Processor(image_processor=image_processor, tokenizer=tokenizer)
