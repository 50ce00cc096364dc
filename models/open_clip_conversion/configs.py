"""open_clip model configurations, read strictly, and the `CLIPConfig` that computes the same function.

An open_clip model is described by a JSON config (`src/open_clip/model_configs/<name>.json` in open_clip, or the
`model_cfg` of a Hub `open_clip_config.json`). The names below are carried here with open_clip's values, so a
conversion needs no open_clip install:

>>> config = OpenCLIPConfig.load("ViT-B-32-quickgelu")
>>> config.vision_heads, config.text_heads, config.activation
(12, 8, 'quick_gelu')

Every option open_clip knows either maps onto `CLIPModel`, has no effect on the features, or must keep the value
under which open_clip's model is a plain CLIP; anything else (layer scale, attentional pooling, a timm or HF tower,
an unknown key) is an error naming the option, never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aro.core.errors import InvalidInput, MissingInput

if TYPE_CHECKING:  # transformers only where a config is built, so that `aro convert --help` loads no torch
    from transformers import CLIPConfig


# open_clip's model_configs/<name>.json for the plain ViT CLIPs. Each also exists as "<name>-quickgelu", identical but
# for `"quick_gelu": true` (the activation of OpenAI's CLIP and of models fine-tuned from it, NegCLIP among them).
_TEXT_B = {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}
_TEXT_L = {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}
_TEXT_H = {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24}
_MODELS = {
    "ViT-B-32": {
        "embed_dim": 512,
        "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
        "text_cfg": _TEXT_B,
    },
    "ViT-B-16": {
        "embed_dim": 512,
        "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16},
        "text_cfg": _TEXT_B,
    },
    "ViT-L-14": {
        "embed_dim": 768,
        "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14},
        "text_cfg": _TEXT_L,
    },
    "ViT-L-14-336": {
        "embed_dim": 768,
        "vision_cfg": {"image_size": 336, "layers": 24, "width": 1024, "patch_size": 14},
        "text_cfg": _TEXT_L,
    },
    "ViT-H-14": {
        "embed_dim": 1024,
        "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14},
        "text_cfg": _TEXT_H,
    },
}
OPEN_CLIP_MODELS: dict[str, dict] = {
    **_MODELS,
    **{f"{name}-quickgelu": {**config, "quick_gelu": True} for name, config in _MODELS.items()},
    "ViT-g-14": {
        "embed_dim": 1024,
        "text_cfg": _TEXT_H,
        "vision_cfg": {
            "image_size": 224,
            "layers": 40,
            "width": 1408,
            "head_width": 88,
            "mlp_ratio": 4.3637,
            "patch_size": 14,
        },
    },
    "ViT-bigG-14": {
        "embed_dim": 1280,
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1280, "heads": 20, "layers": 32},
        "vision_cfg": {
            "image_size": 224,
            "layers": 48,
            "width": 1664,
            "head_width": 104,
            "mlp_ratio": 4.9231,
            "patch_size": 14,
        },
    },
}

# open_clip's image normalisation unless a Hub open_clip_config.json says otherwise (its OPENAI_DATASET_MEAN / _STD).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# open_clip's defaults for the options a config may leave out (its CLIPVisionCfg / CLIPTextCfg).
_VISION_DEFAULTS = {"width": 768, "layers": 12, "head_width": 64, "mlp_ratio": 4.0, "patch_size": 16, "image_size": 224}
_TEXT_DEFAULTS = {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12, "mlp_ratio": 4.0}

# Options that do not change the features: training-time only, tokenizer choice, or equivalent here
# (a per-token LayerNorm gives the same result before or after picking the pooled token).
_NO_EFFECT = {
    "top": {"cast_dtype", "init_logit_scale"},
    "vision_cfg": {
        "patch_dropout",
        "output_tokens",
        "final_ln_after_pool",
        "timm_model_pretrained",
        "timm_pool",
        "timm_proj",
        "timm_proj_bias",
        "timm_drop",
        "timm_drop_path",
        "timm_model_kwargs",
        "attn_pooler_queries",
        "attn_pooler_heads",
    },
    "text_cfg": {
        "output_tokens",
        "final_ln_after_pool",
        "hf_tokenizer_name",
        "tokenizer_mode",
        "tokenizer_kwargs",
        "tokenizer_type",
        "tiktoken_name",
        "pad_id",
        "bos_id",
        "eos_id",
        "hf_model_pretrained",
        "hf_proj_type",
        "hf_pooler_type",
        "hf_model_config",
    },
}
# Options that `CLIPModel` can only match at these values (open_clip's defaults for a plain CLIP; a tuple: any of them).
_PLAIN_CLIP = {
    "top": {"init_logit_bias": None, "multimodal_cfg": None},
    "vision_cfg": {
        "ls_init_value": None,
        "attentional_pool": False,
        "no_ln_pre": False,
        "pos_embed_type": "learnable",
        "pool_type": "tok",
        "act_kwargs": None,
        "norm_kwargs": None,
        "block_type": (None, "default"),
        "qk_norm": False,
        "scaled_cosine_attn": False,
        "scale_heads": False,
        "scale_attn_inner": False,
        "scale_attn": False,
        "scale_fc": False,
        "timm_model_name": None,
        "image_seq_len": None,
    },
    "text_cfg": {
        "text_arch": "clip",
        "variable_text": False,
        "ls_init_value": None,
        "embed_cls": False,
        "no_causal_mask": False,
        "pool_type": "argmax",
        "proj_bias": False,
        "proj_type": "linear",
        "act_kwargs": None,
        "norm_kwargs": None,
        "block_type": (None, "default"),
        "qk_norm": False,
        "scaled_cosine_attn": False,
        "scale_heads": False,
        "scale_attn_inner": False,
        "scale_attn": False,
        "scale_fc": False,
        "hf_model_name": None,
    },
}
_MAPPED = {
    "top": {"embed_dim", "quick_gelu", "custom_text", "vision_cfg", "text_cfg"},
    "vision_cfg": set(_VISION_DEFAULTS),
    "text_cfg": set(_TEXT_DEFAULTS),
}


def _check_options(section: str, options: dict, source: str) -> None:
    """Raise naming the first option of `section` that `CLIPModel` cannot reproduce."""
    where = "" if section == "top" else f"{section}."
    for key, value in options.items():
        if key in _MAPPED[section] or key in _NO_EFFECT[section]:
            continue
        if key not in _PLAIN_CLIP[section]:
            raise InvalidInput(
                f"{source}: unknown open_clip option {where}{key}; the converter handles plain ViT CLIPs only"
            )
        plain = _PLAIN_CLIP[section][key]
        if value not in (plain if isinstance(plain, tuple) else (plain,)):
            raise InvalidInput(
                f"{source}: open_clip option {where}{key}={value!r} has no CLIPModel counterpart "
                f"(a plain CLIP has {plain!r})"
            )


@dataclass(frozen=True)
class OpenCLIPConfig:
    """The shape of an open_clip ViT CLIP, as its config gives it (head counts included, never inferred)."""

    source: str  # the open_clip model name, or the config file's name
    embed_dim: int
    quick_gelu: bool
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_mlp_width: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int
    text_mlp_width: int
    text_prefix: str  # where the text tower's weights live: "" (open_clip's CLIP) or "text." (its CustomTextCLIP)
    image_mean: tuple[float, ...] = OPENAI_MEAN
    image_std: tuple[float, ...] = OPENAI_STD

    @property
    def activation(self) -> str:
        """The MLP activation, as transformers names it: QuickGELU x*sigmoid(1.702x), or the exact (erf) GELU."""
        return "quick_gelu" if self.quick_gelu else "gelu"

    @property
    def end_token_id(self) -> int:
        """open_clip pools the text at the highest token id: in its tokenizers the end token (vocab_size - 1)."""
        return self.vocab_size - 1

    @classmethod
    def load(cls, name_or_path: str | Path) -> OpenCLIPConfig:
        """A carried open_clip model name (`OPEN_CLIP_MODELS`) or a JSON file: a model config, or an
        `open_clip_config.json` (its `model_cfg`, and the image normalisation of its `preprocess_cfg`)."""
        if str(name_or_path) in OPEN_CLIP_MODELS:
            return cls.from_dict(OPEN_CLIP_MODELS[str(name_or_path)], str(name_or_path))
        path = Path(name_or_path)
        if not path.is_file():
            raise MissingInput(
                f"{name_or_path} is neither an open_clip model name we carry ({', '.join(OPEN_CLIP_MODELS)}) "
                "nor a JSON file"
            )
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{path}: not valid JSON ({error})") from None
        preprocess = config.get("preprocess_cfg", {})
        normalisation = {key: tuple(preprocess[key]) for key in ("mean", "std") if key in preprocess}
        return cls.from_dict(config.get("model_cfg", config), path.name, **normalisation)

    @classmethod
    def from_dict(cls, config: dict, source: str, mean: tuple = OPENAI_MEAN, std: tuple = OPENAI_STD) -> OpenCLIPConfig:
        """Read an open_clip model config (`embed_dim`, `vision_cfg`, `text_cfg`, ...), refusing what CLIP cannot do;
        `mean` and `std` are the image normalisation the model was trained with."""
        for key in ("embed_dim", "vision_cfg", "text_cfg"):
            if key not in config:
                raise InvalidInput(f"{source}: an open_clip model config needs {key!r}; it has {sorted(config)}")
        _check_options("top", config, source)
        vision = _VISION_DEFAULTS | config["vision_cfg"]
        text = _TEXT_DEFAULTS | config["text_cfg"]
        _check_options("vision_cfg", config["vision_cfg"], source)
        _check_options("text_cfg", config["text_cfg"], source)
        if not isinstance(vision["layers"], int):
            raise InvalidInput(
                f"{source}: vision_cfg.layers={vision['layers']!r} is a ResNet tower; the converter handles ViTs only"
            )
        image_size = vision["image_size"]
        if isinstance(image_size, (list, tuple)):
            if len(set(image_size)) != 1:
                raise InvalidInput(
                    f"{source}: vision_cfg.image_size={image_size} is not square, which CLIPModel requires"
                )
            image_size = image_size[0]
        if vision["width"] % vision["head_width"] or text["width"] % text["heads"]:
            raise InvalidInput(f"{source}: the widths ({vision['width']}, {text['width']}) must divide into heads")
        return cls(
            source=source,
            embed_dim=config["embed_dim"],
            quick_gelu=bool(config.get("quick_gelu", False)),
            image_size=image_size,
            patch_size=vision["patch_size"],
            vision_width=vision["width"],
            vision_layers=vision["layers"],
            vision_heads=vision["width"] // vision["head_width"],  # as open_clip counts them
            vision_mlp_width=int(vision["width"] * vision["mlp_ratio"]),
            context_length=text["context_length"],
            vocab_size=text["vocab_size"],
            text_width=text["width"],
            text_layers=text["layers"],
            text_heads=text["heads"],
            text_mlp_width=int(text["width"] * text["mlp_ratio"]),
            text_prefix="text." if config.get("custom_text") else "",
            image_mean=mean,
            image_std=std,
        )

    def clip_config(self) -> CLIPConfig:
        """The `CLIPConfig` of the same network: sizes, head counts, activation, and pooling at the end token."""
        from transformers import CLIPConfig  # here: `aro convert --help` reads this module's model names, not torch

        shared = dict(
            hidden_act=self.activation, layer_norm_eps=1e-5, projection_dim=self.embed_dim
        )  # torch's LayerNorm eps, as open_clip
        return CLIPConfig(
            text_config=dict(
                shared,
                hidden_size=self.text_width,
                intermediate_size=self.text_mlp_width,
                num_hidden_layers=self.text_layers,
                num_attention_heads=self.text_heads,
                vocab_size=self.vocab_size,
                max_position_embeddings=self.context_length,
                # transformers pools at the first end token: open_clip's argmax pooling whenever the end token closes
                # the text.
                eos_token_id=self.end_token_id,
                bos_token_id=self.end_token_id - 1,
                pad_token_id=0,
            ),
            vision_config=dict(
                shared,
                hidden_size=self.vision_width,
                intermediate_size=self.vision_mlp_width,
                num_hidden_layers=self.vision_layers,
                num_attention_heads=self.vision_heads,
                image_size=self.image_size,
                patch_size=self.patch_size,
            ),
            projection_dim=self.embed_dim,
        )
