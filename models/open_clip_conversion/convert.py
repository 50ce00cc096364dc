"""Convert an open_clip ViT CLIP checkpoint (OpenCLIP/LAION models, the released NegCLIP) into a transformers folder.

>>> from aro.models.open_clip_conversion import convert_open_clip
>>> convert_open_clip("negclip.pt", "ViT-B-32-quickgelu", "negclip", negclip=True,
...                   processor="openai/clip-vit-base-patch32")  # doctest: +SKIP

The folder holds a `CLIPModel` (a `NegCLIPModel` with `negclip=True`) computing what open_clip computes (same
activation, heads, pooling and `logit_scale`), the processor when one is given, a model card and
`open_clip_conversion.json`: the converted model's features on fixed inputs, so that anyone with open_clip can
compare (the card shows how). Nothing is written unless the conversion and the check succeed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from transformers import CLIPModel

from aro.cards import render
from aro.core.errors import InvalidInput
from aro.core.io import check_output_folder, output_folder, push_folder, sha256_of
from aro.models.negclip import NegCLIPModel
from aro.models.negclip.loading import load_processor

from .configs import OPEN_CLIP_MODELS, OpenCLIPConfig
from .weights import read_checkpoint, to_clip_state_dict

CONVERT_COMMAND = "aro convert"
CHECK_FILE = "open_clip_conversion.json"
CHECK_SEED = 0
CHECK_WORDS = [1, 2, 3, 4, 5]  # token ids between the start and end tokens: any ids exist in every vocabulary
SHOWN_VALUES = 6  # feature values the card prints (the JSON file holds them all)


@dataclass
class FeatureCheck:
    """Features of a model on fixed inputs, in open_clip's terms (`encode_image`, `encode_text`, unnormalised).

    The image is `torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))`; the text is
    `token_ids`, padded with zeros to the context length, as open_clip's tokenizer pads.
    """

    seed: int
    image_size: int
    token_ids: list[int]
    image_features: list[float]
    text_features: list[float]
    logit: float  # logit_scale.exp() * cosine(image, text)

    @classmethod
    def inputs(cls, config: OpenCLIPConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """(pixel_values, input_ids) of the check for a model of `config`."""
        pixel_values = torch.randn(
            1, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(CHECK_SEED)
        )
        token_ids = [config.end_token_id - 1, *CHECK_WORDS, config.end_token_id]
        input_ids = torch.zeros(1, config.context_length, dtype=torch.long)
        input_ids[0, : len(token_ids)] = torch.tensor(token_ids)
        return pixel_values, input_ids

    @classmethod
    @torch.no_grad()
    def of(cls, model: CLIPModel, config: OpenCLIPConfig) -> FeatureCheck:
        pixel_values, input_ids = cls.inputs(config)
        image = model.get_image_features(pixel_values=pixel_values).pooler_output[0]
        text = model.get_text_features(input_ids=input_ids).pooler_output[0]
        logit = model.logit_scale.exp() * torch.nn.functional.cosine_similarity(image, text, dim=0)
        return cls(
            seed=CHECK_SEED,
            image_size=config.image_size,
            token_ids=input_ids[0][input_ids[0] != 0].tolist(),
            image_features=image.tolist(),
            text_features=text.tolist(),
            logit=float(logit),
        )

    def max_difference(self, other: FeatureCheck) -> float:
        mine, theirs = (
            torch.tensor(self.image_features + self.text_features),
            torch.tensor(other.image_features + other.text_features),
        )
        return float((mine - theirs).abs().max())


def build_model(checkpoint: str | Path, config: OpenCLIPConfig, negclip: bool = False) -> CLIPModel:
    """The open_clip weights in `checkpoint`, loaded into a `CLIPModel` (`NegCLIPModel`) shaped by `config`."""
    model_class = NegCLIPModel if negclip else CLIPModel
    model = model_class(config.clip_config())
    weights = to_clip_state_dict(read_checkpoint(checkpoint), config)
    shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
    for name, tensor in weights.items():
        if tensor.shape != shapes[name]:
            raise InvalidInput(
                f"{Path(checkpoint).name}: {name} has shape {tuple(tensor.shape)}, "
                f"open_clip {config.source} needs {tuple(shapes[name])}"
            )
    model.load_state_dict(weights, strict=True)
    return model.eval()


def checked_processor(name_or_path: str, config: OpenCLIPConfig):
    """The processor to ship with the model (a Hub id or folder, `--processor`), refused if it is not a CLIP's or
    would feed the model other inputs than open_clip's."""
    processor = load_processor(name_or_path, "--processor")
    tokenizer, image_processor = processor.tokenizer, processor.image_processor
    end_token_id = tokenizer.convert_tokens_to_ids(tokenizer.eos_token) if tokenizer.eos_token else None
    if end_token_id != config.end_token_id:
        raise InvalidInput(
            f"{name_or_path}: its end token has id {end_token_id}; open_clip {config.source} "
            f"pools at the highest id, {config.end_token_id}"
        )
    if len(tokenizer) > config.vocab_size:
        raise InvalidInput(f"{name_or_path}: its vocabulary has {len(tokenizer)} tokens, the model {config.vocab_size}")
    for name, expected in (("image_mean", config.image_mean), ("image_std", config.image_std)):
        given = getattr(image_processor, name, None)
        values = torch.tensor(given if given is not None else [], dtype=torch.float64).flatten()
        if values.shape != (len(expected),) or not torch.allclose(
            values, torch.tensor(expected, dtype=torch.float64), atol=1e-6
        ):
            raise InvalidInput(
                f"{name_or_path}: its {name} is {given}, open_clip {config.source} normalises with {expected}"
            )
    crop = getattr(image_processor, "crop_size", None) or {}
    if (crop.get("height"), crop.get("width")) != (config.image_size, config.image_size):
        raise InvalidInput(
            f"{name_or_path}: it crops images to {crop}, the model takes {config.image_size}x{config.image_size}"
        )
    return processor


def _first_values(values: list[float]) -> str:
    return ", ".join(f"{value:.6f}" for value in values[:SHOWN_VALUES])


def _card(
    checkpoint: Path,
    config: OpenCLIPConfig,
    model: CLIPModel,
    check: FeatureCheck,
    negclip: bool,
    processor: str | None,
    repo_id: str,
) -> str:
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": "zero-shot-image-classification",
        "tags": ["clip", "open_clip", *(["negclip", "aro"] if negclip else [])],
    }
    activation = (
        "QuickGELU (`x * sigmoid(1.702 x)`, `hidden_act: quick_gelu`), as in the source model. Loading these weights "
        "with GELU instead changes every feature"
        if config.quick_gelu
        else "GELU (the exact, erf-based one; `hidden_act: gelu`), as in the source model. Loading these weights with "
        "QuickGELU instead changes every feature"
    )
    if negclip:
        activation += (
            ": the ARO authors' own evaluation code loaded NegCLIP as open_clip's `ViT-B-32` (GELU) rather than "
            "`ViT-B-32-quickgelu`, its issue #35; this conversion keeps the activation NegCLIP was trained with."
        )
    else:
        activation += "."
    return render(
        "converted_model_card.md",
        yaml=yaml.safe_dump(metadata, sort_keys=False).strip(),
        title="NegCLIP" if negclip else f"open_clip {config.source}",
        model_class="NegCLIPModel" if negclip else "CLIPModel",
        checkpoint=checkpoint.name,
        sha256=sha256_of(checkpoint),
        config=config.source,
        activation=activation,
        heads=f"{config.vision_heads} (image), {config.text_heads} (text)",
        logit_scale=(
            f"{model.logit_scale.item():.4f} (a temperature of 1/{model.logit_scale.exp().item():.2f}), "
            "kept from the checkpoint"
        ),
        build_model=(
            f'open_clip.create_model("{config.source}", pretrained="{checkpoint.name}").eval()'
            if config.source in OPEN_CLIP_MODELS
            else f"...  # open_clip's model for {config.source!r}, weights from {checkpoint.name!r}, in eval mode"
        ),
        processor=f"copied from `{processor}`"
        if processor
        else "none given: pass your own (open_clip's preprocessing and tokenizer)",
        repo_id=repo_id,
        check_file=CHECK_FILE,
        seed=check.seed,
        image_size=check.image_size,
        token_ids=check.token_ids,
        context_length=config.context_length,
        image_features=_first_values(check.image_features),
        text_features=_first_values(check.text_features),
        logit=f"{check.logit:.6f}",
    )


def convert_open_clip(
    checkpoint: str | Path,
    open_clip_config: str | Path,
    out: str | Path,
    negclip: bool = False,
    processor: str | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
) -> Path:
    """Convert `checkpoint` (an open_clip state dict or training checkpoint) of the open_clip model `open_clip_config`
    (a carried name such as "ViT-B-32-quickgelu", or a JSON config) into the new folder `out`; return `out`."""
    checkpoint, out = Path(checkpoint), Path(out)
    check_output_folder(out, CONVERT_COMMAND, inputs=[checkpoint, processor], replace=False)
    config = OpenCLIPConfig.load(open_clip_config)
    model = build_model(checkpoint, config, negclip)
    loaded_processor = checked_processor(processor, config) if processor else None
    check = FeatureCheck.of(model, config)

    with output_folder(out, CONVERT_COMMAND, inputs=[checkpoint, processor], replace=False) as staging:
        model.save_pretrained(staging)
        if loaded_processor is not None:
            loaded_processor.save_pretrained(staging)
        # The check proper: the saved folder, loaded back, gives the features just computed.
        reloaded = FeatureCheck.of(type(model).from_pretrained(staging).eval(), config)
        if check.max_difference(reloaded) > 1e-6:
            raise RuntimeError(
                f"the saved model's features differ from the converted model's by {check.max_difference(reloaded):.2e}"
            )
        (staging / CHECK_FILE).write_text(
            json.dumps({"source": checkpoint.name, "open_clip_config": config.source, **asdict(check)}, indent=1)
        )
        (staging / "README.md").write_text(
            _card(checkpoint, config, model, check, negclip, processor, push_to_hub or out.name)
        )
    if push_to_hub:
        push_folder(
            out,
            push_to_hub,
            private=private,
            commit_message=f"Convert {checkpoint.name} from open_clip {config.source}",
        )
    return out
