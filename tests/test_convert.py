"""`aro convert`: open_clip checkpoints into transformers, held against features computed by real open_clip.

The reference (tests/fixtures/openclip_reference, made by tests/fixtures/make_openclip_reference.py with open_clip
3.3.0) is a tiny QuickGELU ViT CLIP with 3 heads per tower, saved as open_clip's training checkpoint (`{"epoch",
"name", "state_dict"}` with DDP's `module.` prefixes), with fixed inputs and open_clip's `encode_image` and
`encode_text` outputs on them.
"""

import json
import pickle
from pathlib import Path

import pytest
import torch
from conftest import refused
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModel,
    AutoProcessor,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    PreTrainedTokenizerFast,
    pipeline,
)

from aro.cli import main
from aro.models.open_clip_conversion import OPEN_CLIP_MODELS, OpenCLIPConfig, read_checkpoint

REFERENCE = Path(__file__).parent / "fixtures" / "openclip_reference"
CHECKPOINT = REFERENCE / "epoch_3.pt"
CONFIG = REFERENCE / "open_clip_config.json"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE / "reference.pt", weights_only=True)


def convert(tmp_path, *arguments, checkpoint=CHECKPOINT, config=CONFIG, name="converted"):
    """`aro convert` as a user runs it; returns (exit code, output folder)."""
    out = tmp_path / name
    code = main(["convert", str(checkpoint), "--open-clip-config", str(config), "--out", str(out), *arguments])
    return code, out


@torch.no_grad()
def differences(model, reference) -> tuple[float, float]:
    """Largest absolute difference of the image and text features from open_clip's."""
    image = model.get_image_features(pixel_values=reference["pixel_values"]).pooler_output
    text = model.get_text_features(input_ids=reference["input_ids"]).pooler_output
    return float((image - reference["image_features"]).abs().max()), float(
        (text - reference["text_features"]).abs().max()
    )


def config_file(tmp_path, **changes) -> Path:
    """The reference's open_clip_config.json with `changes` to its model_cfg (`vision_cfg`/`text_cfg` merged)."""
    model_cfg = json.loads(CONFIG.read_text())["model_cfg"]
    for key, value in changes.items():
        model_cfg[key] = model_cfg[key] | value if isinstance(value, dict) else value
    path = tmp_path / "changed_config.json"
    path.write_text(json.dumps({"model_cfg": model_cfg}))
    return path


def test_the_converted_model_computes_open_clips_features(tmp_path, reference):
    code, out = convert(tmp_path)
    assert code == 0
    model = CLIPModel.from_pretrained(out).eval()
    assert model.config.vision_config.hidden_act == model.config.text_config.hidden_act == "quick_gelu"
    assert model.config.vision_config.num_attention_heads == model.config.text_config.num_attention_heads == 3
    assert max(differences(model, reference)) <= TOLERANCE
    assert torch.equal(model.logit_scale.detach(), reference["logit_scale"])
    # The card and the check file record what was converted and the features the folder gives.
    card = (out / "README.md").read_text()
    assert (
        "`epoch_3.pt`" in card and "QuickGELU" in card and "3 (image), 3 (text)" in card and str(tmp_path) not in card
    )
    check = json.loads((out / "open_clip_conversion.json").read_text())
    assert f"{check['image_features'][0]:.6f}" in card and f"{check['text_features'][0]:.6f}" in card
    pixel_values = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(check["seed"]))
    input_ids = torch.zeros(1, 12, dtype=torch.long)
    input_ids[0, : len(check["token_ids"])] = torch.tensor(check["token_ids"])
    with torch.no_grad():
        assert torch.allclose(
            model.get_image_features(pixel_values=pixel_values).pooler_output[0],
            torch.tensor(check["image_features"]),
            atol=1e-6,
        )
        assert torch.allclose(
            model.get_text_features(input_ids=input_ids).pooler_output[0],
            torch.tensor(check["text_features"]),
            atol=1e-6,
        )


def test_a_gelu_conversion_does_not_match_open_clip(tmp_path, reference):
    """The mistake of the original NegCLIP evaluation (GELU for a QuickGELU model) is visible in the features."""
    code, out = convert(tmp_path, config=config_file(tmp_path, quick_gelu=False))
    assert code == 0
    model = CLIPModel.from_pretrained(out).eval()
    assert model.config.vision_config.hidden_act == "gelu" and "GELU (the exact" in (out / "README.md").read_text()
    assert min(differences(model, reference)) > 10 * TOLERANCE


def _variants(tmp_path):
    """The reference weights saved in every layout a user may bring."""
    weights = read_checkpoint(CHECKPOINT)
    prefixed = {"module." + key: value for key, value in weights.items()}
    torch.save(weights, tmp_path / "plain.pth")
    torch.save(prefixed, tmp_path / "prefixed.bin")
    torch.save(
        {"epoch": 1, "state_dict": weights, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-6}]}},
        tmp_path / "training.pt",
    )
    save_file({key: value.contiguous() for key, value in weights.items()}, tmp_path / "open_clip_model.safetensors")
    return ["plain.pth", "prefixed.bin", "training.pt", "open_clip_model.safetensors"]


def test_state_dicts_wrappers_and_ddp_prefixes_all_convert(tmp_path, reference):
    for name in _variants(tmp_path):
        code, out = convert(tmp_path, checkpoint=tmp_path / name, name=f"from-{name}")
        assert code == 0, name
        assert max(differences(CLIPModel.from_pretrained(out).eval(), reference)) <= TOLERANCE, name


def test_the_custom_text_layout_converts(tmp_path, reference):
    """open_clip's CustomTextCLIP keeps the text tower under `text.`."""
    weights = {
        (key if key.startswith("visual.") or key == "logit_scale" else "text." + key): value
        for key, value in read_checkpoint(CHECKPOINT).items()
    }
    torch.save(weights, tmp_path / "custom_text.pt")
    code, out = convert(
        tmp_path, checkpoint=tmp_path / "custom_text.pt", config=config_file(tmp_path, custom_text=True)
    )
    assert code == 0
    assert max(differences(CLIPModel.from_pretrained(out).eval(), reference)) <= TOLERANCE


class _Payload:
    """Unpickling this calls `Path.touch(marker)`: what a malicious checkpoint would do with worse code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_with_code_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    with open(tmp_path / "evil.pt", "wb") as file:
        pickle.dump({"state_dict": {"logit_scale": torch.tensor(1.0)}, "payload": _Payload(marker)}, file)
    code, out = convert(tmp_path, checkpoint=tmp_path / "evil.pt")
    assert code == 2 and not marker.exists() and not out.exists()
    assert "without executing pickled code" in capsys.readouterr().err


def test_missing_and_unexpected_keys_are_errors_naming_them(tmp_path, capsys):
    weights = read_checkpoint(CHECKPOINT)
    torch.save({key: value for key, value in weights.items() if key != "visual.ln_post.bias"}, tmp_path / "missing.pt")
    torch.save(weights | {"logit_bias": torch.tensor(-10.0)}, tmp_path / "unexpected.pt")
    for name, expected in (
        ("missing.pt", "missing key 'visual.ln_post.bias'"),
        ("unexpected.pt", "unexpected key 'logit_bias'"),
    ):
        code, out = convert(tmp_path, checkpoint=tmp_path / name, name=f"from-{name}")
        error = capsys.readouterr().err
        assert code == 2 and expected in error and len(error.strip().splitlines()) == 1, error
        assert not out.exists() and not list(tmp_path.glob(f".from-{name}.*"))  # nothing half-written
    # The reference under another config: its 3 layers are too few for ViT-B-32.
    code, _ = convert(tmp_path, config="ViT-B-32-quickgelu", name="wrong-config")
    assert code == 2 and "missing key 'visual.transformer.resblocks.3." in capsys.readouterr().err


def test_carried_configs_give_open_clips_head_counts_and_activation():
    b32, b32_quick = OpenCLIPConfig.load("ViT-B-32"), OpenCLIPConfig.load("ViT-B-32-quickgelu")
    assert (b32.vision_heads, b32.text_heads, b32.activation, b32_quick.activation) == (12, 8, "gelu", "quick_gelu")
    assert (OpenCLIPConfig.load("ViT-L-14").vision_heads, OpenCLIPConfig.load("ViT-L-14").text_heads) == (16, 12)
    assert OpenCLIPConfig.load("ViT-H-14").vision_heads == 16  # width 1280 over head_width 80, not 1280 / 64
    assert OpenCLIPConfig.load("ViT-bigG-14").vision_mlp_width == 8192
    for name in ("ViT-B-32", "ViT-B-16", "ViT-L-14"):
        assert name in OPEN_CLIP_MODELS and f"{name}-quickgelu" in OPEN_CLIP_MODELS
    clip = b32_quick.clip_config()
    assert (clip.vision_config.patch_size, clip.text_config.eos_token_id, clip.projection_dim) == (32, 49407, 512)


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"vision_cfg": {"ls_init_value": 1e-5}}, "vision_cfg.ls_init_value=1e-05 has no CLIPModel counterpart"),
        ({"text_cfg": {"hf_model_name": "xlm-roberta-base"}}, "text_cfg.hf_model_name='xlm-roberta-base'"),
        ({"vision_cfg": {"layers": [3, 4, 6, 3]}}, "ResNet"),
        ({"text_cfg": {"rotary": True}}, "unknown open_clip option text_cfg.rotary"),
    ],
)
def test_options_clip_cannot_reproduce_are_refused(tmp_path, changes, expected):
    with pytest.raises(ValueError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        OpenCLIPConfig.load(config_file(tmp_path, **changes))


def reference_processor(folder: Path) -> Path:
    """A processor for the reference's vocabulary: words w1..w60, start token 62, end token 63, padding 0."""
    vocab = {
        "<pad>": 0,
        **{f"w{index}": index for index in range(1, 61)},
        "<unk>": 61,
        "<|startoftext|>": 62,
        "<|endoftext|>": 63,
    }
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 62), ("<|endoftext|>", 63)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        model_max_length=12,
    )
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_the_processor_is_copied_and_feeds_the_model_open_clips_tokens(tmp_path, reference):
    code, out = convert(tmp_path, "--processor", str(reference_processor(tmp_path / "processor")))
    assert code == 0
    processor = AutoProcessor.from_pretrained(out)
    texts = ["w3 w4", "w5 w6 w7 w8 w9", "w10", "w11 w12 w13 w14 w15 w16 w17 w18"]  # the reference's token ids
    batch = processor(text=texts, return_tensors="pt", padding="max_length")
    assert torch.equal(batch["input_ids"], reference["input_ids"])
    model = CLIPModel.from_pretrained(out).eval()
    with torch.no_grad():
        text = model.get_text_features(**batch).pooler_output
    assert float((text - reference["text_features"]).abs().max()) <= TOLERANCE
    scores = pipeline("zero-shot-image-classification", model=str(out))(
        Image.new("RGB", (64, 64), "red"), candidate_labels=["w1", "w2"]
    )
    assert sorted(score["label"] for score in scores) == ["w1", "w2"]


def test_a_converted_negclip_is_scored_by_aro_eval(tmp_path, capsys):
    from aro.builders.synthetic import SyntheticSizes, build_synthetic_aro

    code, out = convert(tmp_path, "--negclip", "--processor", str(reference_processor(tmp_path / "processor")))
    assert code == 0
    build_synthetic_aro(
        tmp_path / "aro",
        seed=0,
        sizes=SyntheticSizes(
            train_scenes=4, test_scenes=2, relation_per_relation=2, attribution_per_pair=1, order_captions=2
        ),
    )
    code = main(
        [
            "eval",
            "--model",
            str(out),
            "--dataset",
            str(tmp_path / "aro"),
            "--config",
            "relation",
            "--num-workers",
            "0",
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["configs"]["relation"]["num_items"] > 0


def test_a_processor_that_would_feed_other_inputs_is_refused(tmp_path, tiny_clip_dir, capsys):
    code, out = convert(tmp_path, "--processor", str(tiny_clip_dir))  # its end token has id 3
    assert code == 2 and "pools at the highest id, 63" in capsys.readouterr().err and not out.exists()
    # A Hub open_clip_config.json names the normalisation the model was trained with.
    config = json.loads(CONFIG.read_text()) | {"preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    code, out = convert(
        tmp_path,
        "--processor",
        str(reference_processor(tmp_path / "processor")),
        config=tmp_path / "open_clip_config.json",
    )
    assert code == 2 and "normalises with (0.5, 0.5, 0.5)" in capsys.readouterr().err and not out.exists()


def test_negclip_conversion_loads_as_negclip_and_as_clip(tmp_path, reference):
    from aro.models.negclip import NegCLIPModel

    code, out = convert(tmp_path, "--negclip")
    assert code == 0
    assert json.loads((out / "config.json").read_text())["auto_map"] == {"AutoModel": "modeling_negclip.NegCLIPModel"}
    negclip = AutoModel.from_pretrained(out).eval()
    assert isinstance(negclip, NegCLIPModel) and "issue #35" in (out / "README.md").read_text()
    assert max(differences(negclip, reference)) <= TOLERANCE
    assert max(differences(CLIPModel.from_pretrained(out).eval(), reference)) <= TOLERANCE


def test_an_existing_output_folder_is_left_alone(tmp_path, capsys):
    (tmp_path / "converted").mkdir()
    (tmp_path / "converted" / "keep.txt").write_text("mine")
    code, out = convert(tmp_path)
    assert code == 2 and "already exists" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"


def _image_processor_only(folder: Path) -> Path:
    CLIPImageProcessorPil(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48}).save_pretrained(folder)
    return folder


def _tokenizer_only(folder: Path) -> Path:
    AutoProcessor.from_pretrained(reference_processor(folder.parent / "full")).tokenizer.save_pretrained(folder)
    return folder


def _unreadable_processor(folder: Path) -> Path:
    folder.mkdir()
    (folder / "processor_config.json").write_text("{not json")
    return folder


@pytest.mark.parametrize(
    "checkpoint, processor, message",
    [
        (lambda tmp: _written(tmp / "notes.pt", b"hello, this is text"), None, "not a PyTorch checkpoint"),
        (lambda tmp: _written(tmp / "empty.pt", b""), None, "the file is empty"),
        (lambda tmp: _written(tmp / "garbage.safetensors", b"\x00" * 64), None, "not a readable safetensors file"),
        (lambda tmp: CHECKPOINT, lambda tmp: _image_processor_only(tmp / "images"), "is not a CLIP processor"),
        (lambda tmp: CHECKPOINT, lambda tmp: _tokenizer_only(tmp / "tokenizer"), "cannot load its processor"),
        (lambda tmp: CHECKPOINT, lambda tmp: _unreadable_processor(tmp / "broken"), "cannot load its processor"),
        (lambda tmp: CHECKPOINT, lambda tmp: "./no-such-processor", "--processor ./no-such-processor: no such folder"),
    ],
)
def test_a_file_or_processor_that_cannot_be_read_is_one_line(checkpoint, processor, message, tmp_path, capfd):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    checkpoint = checkpoint(inputs)
    extra = ["--processor", str(processor(inputs))] if processor else []
    before = {path: path.read_bytes() for path in inputs.rglob("*") if path.is_file()}
    argv = ["convert", str(checkpoint), "--open-clip-config", str(CONFIG), "--out", str(tmp_path / "out"), *extra]
    refused(capfd, argv, message)
    assert {path: path.read_bytes() for path in inputs.rglob("*") if path.is_file()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["inputs"]


def _written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path
