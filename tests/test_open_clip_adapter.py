"""open_clip models scored through open_clip itself: `aro eval` and `aro retrieval --model open_clip:ARCH:FILE` or
`hf-hub:ORG/NAME` give the cosine of open_clip's own `encode_image` and `encode_text`, computed here pair by pair,
for its ViTs, a timm tower, a SigLIP-style model and CoCa. Tiny open_clip models are registered with
`open_clip.add_model_config` and saved locally; `hf-hub:` is served from a Hugging Face cache this test fills, offline,
as a machine that downloaded the model before is."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY_WORDS, random_image, refused
from datasets import Dataset, Features, List, Value
from datasets import Image as ImageFeature
from test_retrieval import brute_force_recalls

from aro.cli import main
from aro.core.contract import PERTURBATION_NAMES, config_features, retrieval_row
from aro.metrics.scoring import load_model, load_split, score_items
from aro.models.tiny_clip import BOS, EOS, PAD, UNK

open_clip = pytest.importorskip("open_clip")
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, processors  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "openclip_reference"  # made by open_clip 3.3.0 itself
TOWER = {"width": 32, "layers": 1}
SIMPLE_TEXT = {"context_length": 16, "vocab_size": 49408, "heads": 2, **TOWER}  # open_clip's own BPE tokenizer
TIMM_VIT = {"image_size": 32, "timm_model_name": "test_vit", "timm_model_pretrained": False}
CAPTIONS = [  # true, false; the first three differ only in case or in words the word tokenizer does not know
    ("a red circle above a blue square", "A RED CIRCLE ABOVE A BLUE SQUARE"),
    ("a red zebra left of a giraffe", "a red giraffe left of a zebra"),
    ("a small star!", "a small star;"),
    ("a red circle above a blue square", "a blue square above a red circle"),
    ("a large green triangle to the left of a small yellow star and a blue circle", "a small green triangle"),
    ("the star is below the circle", "the circle is below the star"),
    ("a green square", "a square green"),
    ("a yellow circle to the right of a red star", "a red circle to the right of a yellow star"),
]


def perturbed(caption: str) -> list[str]:
    """A caption and four word shuffles of it, as a retrieval row holds them."""
    words = caption.split()
    return [caption, " ".join(words[::-1]), " ".join(words[1:] + words[:1]), " ".join(sorted(words)), caption.upper()]


RELATION_FEATURES = Features(
    {"image": ImageFeature(), **dict.fromkeys(("true_caption", "false_caption", "relation_name"), Value("string"))}
)


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
    """relation (8 items over 4 images), coco_order (3 items of 5) and coco_retrieval (4 images, 2 captions each)."""
    folder = tmp_path_factory.mktemp("data")
    configs = {
        "relation": Dataset.from_dict(
            {
                "image": [random_image(item // 2) for item in range(len(CAPTIONS))],
                "true_caption": [true for true, _ in CAPTIONS],
                "false_caption": [false for _, false in CAPTIONS],
                "relation_name": ["above"] * len(CAPTIONS),
            },
            features=RELATION_FEATURES,
        ),
        "coco_order": Dataset.from_dict(
            {
                "image": [random_image(10 + item) for item in range(3)],
                "caption_options": [perturbed(CAPTIONS[3 + item][0]) for item in range(3)],
                "perturbations": [list(PERTURBATION_NAMES)] * 3,
            },
            features=Features(
                {
                    "image": ImageFeature(),
                    "caption_options": List(Value("string")),
                    "perturbations": List(Value("string")),
                }
            ),
        ),
        "coco_retrieval": Dataset.from_list(
            [
                retrieval_row(
                    str(image),
                    random_image(20 + image),
                    ["0", "1"],
                    [perturbed(CAPTIONS[2 * image][0]), perturbed(CAPTIONS[2 * image + 1][1])],
                )
                for image in range(4)
            ],
            features=config_features("coco_retrieval"),
        ),
    }
    readme = "---\nconfigs:\n"
    for name, dataset in configs.items():
        (folder / name).mkdir()
        dataset.to_parquet(folder / name / "test.parquet")
        readme += f"- config_name: {name}\n  data_files:\n  - split: test\n    path: {name}/test.parquet\n"
    (folder / "README.md").write_text(readme + "---\n")
    return folder


def end_token_last_tokenizer(vocab_size: int = 64) -> PreTrainedTokenizerFast:
    """A word tokenizer over TINY_WORDS whose start and end tokens have the two highest ids, as in open_clip's BPE:
    the fixture's text tower pools at the highest id, the end token."""
    vocab = {PAD: 0, UNK: 1} | {word: index for index, word in enumerate(sorted(set(TINY_WORDS)), 2)}
    vocab |= {BOS: vocab_size - 2, EOS: vocab_size - 1}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK)


def register(folder: Path, name: str, model_cfg: dict) -> str:
    """An open_clip architecture `name`, registered as a user registers one: a model config JSON."""
    (folder / f"{name}.json").write_text(json.dumps(model_cfg))
    open_clip.add_model_config(folder / f"{name}.json")
    return name


def random_weights(architecture: str, seed: int) -> dict:
    """The state dict of a seeded random `architecture`, every weight moved off its initial value (ones, zeros)."""
    torch.manual_seed(seed)
    model = open_clip.create_model(architecture)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.state_dict()


@pytest.fixture(scope="module")
def architectures(tmp_path_factory):
    """Tiny registered architectures and their checkpoint files: the fixture's ViT (open_clip's training checkpoint,
    DDP prefixes and all, with a word tokenizer of its 64-token vocabulary), a timm tower, a SigLIP-style
    model (bias, last-token pooling, HF tokenizer that drops punctuation) and CoCa."""
    folder = tmp_path_factory.mktemp("open-clip-models")
    tokenizer = folder / "word-tokenizer"
    end_token_last_tokenizer().save_pretrained(tokenizer)
    reference = json.loads((FIXTURE / "open_clip_config.json").read_text())["model_cfg"]
    reference["text_cfg"]["hf_tokenizer_name"] = str(tokenizer)
    configs = {
        "aro-test-reference": reference,
        "aro-test-timm": {
            "embed_dim": 16,
            "vision_cfg": dict(TIMM_VIT, timm_pool="", timm_proj="linear"),
            "text_cfg": SIMPLE_TEXT,
        },
        "aro-test-siglip": {
            "embed_dim": 64,  # the timm tower's width: SigLIP's vision tower has no projection
            "init_logit_bias": -10,
            "custom_text": True,
            "vision_cfg": dict(TIMM_VIT, timm_pool="map", timm_proj="none"),
            "text_cfg": dict(
                TOWER,
                heads=2,
                context_length=16,
                vocab_size=64,
                hf_tokenizer_name=str(tokenizer),
                tokenizer_kwargs={"clean": "canonicalize"},
                no_causal_mask=True,
                proj_bias=True,
                pool_type="last",
            ),
        },
        "aro-test-coca": {
            "embed_dim": 16,
            "custom_text": True,
            "vision_cfg": {
                "image_size": 32,
                "patch_size": 16,
                "head_width": 16,
                "attentional_pool": True,
                "attn_pooler_heads": 2,
                "output_tokens": True,
                **TOWER,
            },
            "text_cfg": dict(SIMPLE_TEXT, embed_cls=True, output_tokens=True),
            "multimodal_cfg": dict(SIMPLE_TEXT, attn_pooler_heads=2),
        },
    }
    checkpoints = {"aro-test-reference": FIXTURE / "epoch_3.pt"}
    for seed, (name, model_cfg) in enumerate(configs.items()):
        register(folder, name, model_cfg)
        if name not in checkpoints:
            checkpoints[name] = folder / f"{name}.pt"
            torch.save({"epoch": 1, "state_dict": random_weights(name, seed)}, checkpoints[name])
    return checkpoints


@torch.no_grad()
def own_cosines(model, preprocess, tokenizer, dataset) -> np.ndarray:
    """open_clip's own computation, one pair at a time: the cosine of `encode_image` and `encode_text`."""
    scores = []
    for row in dataset:
        image = model.encode_image(preprocess(row["image"].convert("RGB"))[None])
        options = row["caption_options"] if "caption_options" in row else [row["true_caption"], row["false_caption"]]
        texts = [model.encode_text(tokenizer([caption])) for caption in options]
        scores.append([torch.cosine_similarity(image, text).item() for text in texts])
    return np.array(scores)


def open_clips_own(architecture: str, checkpoint: Path):
    model, _, preprocess = open_clip.create_model_and_transforms(architecture, pretrained=str(checkpoint))
    return model.eval(), preprocess, open_clip.get_tokenizer(architecture)


def saved_scores(out: Path, config: str) -> np.ndarray:
    table = pq.read_table(out / "scores" / f"{config}.parquet")
    return np.stack([table[name].to_numpy() for name in table.column_names if name.startswith("score_")], axis=1)


def tied(tokenizer) -> np.ndarray:
    """The relation items whose two captions the tokenizer writes alike: they must tie exactly."""
    return np.array([torch.equal(*tokenizer([true, false])) for true, false in CAPTIONS])


@torch.no_grad()
def test_an_open_clip_checkpoint_is_scored_as_open_clip_computes_it(architectures, data_folder, tmp_path):
    checkpoint = architectures["aro-test-reference"]
    before = checkpoint.read_bytes()
    reference = f"open_clip:aro-test-reference:{checkpoint}"
    out = tmp_path / "eval"
    argv = ["eval", "--model", reference, "--dataset", str(data_folder), "--config", "relation,coco_order"]
    assert main(argv + ["--batch-size", "3", "--num-workers", "0", "--save-scores", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["adapter"] == "open_clip" and results["model"] == "open_clip:aro-test-reference:epoch_3.pt"
    assert results["model_commit"] == "sha256:" + hashlib.sha256(before).hexdigest()
    assert not any(str(tmp_path) in path.read_text() or str(FIXTURE) in path.read_text() for path in out.glob("*.json"))

    model, preprocess, tokenizer = open_clips_own("aro-test-reference", checkpoint)
    for config in ("relation", "coco_order"):
        own = own_cosines(model, preprocess, tokenizer, load_split(str(data_folder), config))
        np.testing.assert_allclose(saved_scores(out, config), own, atol=1e-5, err_msg=config)
    relation, scores = results["configs"]["relation"], saved_scores(out, "relation")
    ties = tied(tokenizer)
    assert ties.sum() == 2  # case is not lowered by this word tokenizer; unknown nouns and "star!"/"star;" are [UNK]
    assert (scores[ties, 0] == scores[ties, 1]).all() and relation["num_ties"] == ties.sum()
    # Longer than the 12-token context: the long true caption of item 4 (its 16 words and two special tokens).
    assert relation["truncated_captions"] == 1
    assert relation["distinct_inputs"]["texts"] == len({tuple(row) for row in tokenizer(sum(CAPTIONS, ())).tolist()})
    assert checkpoint.read_bytes() == before


@torch.no_grad()
def test_aro_retrieval_ranks_with_open_clips_own_features(architectures, data_folder, tmp_path):
    checkpoint = architectures["aro-test-timm"]
    out = tmp_path / "retrieval"
    argv = ["retrieval", "--model", f"open_clip:aro-test-timm:{checkpoint}", "--dataset", str(data_folder)]
    assert (
        main(argv + ["--config", "coco_retrieval", "--batch-size", "3", "--num-workers", "0", "--out", str(out)]) == 0
    )
    retrieval = json.loads((out / "results.json").read_text())["retrieval"]

    model, preprocess, tokenizer = open_clips_own("aro-test-timm", checkpoint)
    data = load_split(str(data_folder), "coco_retrieval")
    images = torch.cat([model.encode_image(preprocess(image.convert("RGB"))[None]) for image in data["image"]])
    images = torch.nn.functional.normalize(images, dim=-1).numpy()
    owner = np.repeat(np.arange(4), 2)
    right = owner[:, None] == np.arange(4)[None, :]
    for name in PERTURBATION_NAMES:
        captions = sum(
            data["captions"] if name == "original" else (row[name] for row in data["perturbed_captions"]), []
        )
        texts = torch.cat([model.encode_text(tokenizer([caption])) for caption in captions])
        similarity = torch.nn.functional.normalize(texts, dim=-1).numpy() @ images.T
        assert retrieval["variants"][name] == {
            "text_to_image": brute_force_recalls(similarity, right, (1, 5, 10)),
            "image_to_text": brute_force_recalls(similarity.T, right.T, (1, 5, 10)),
        }, name


@pytest.mark.parametrize("architecture", ["aro-test-timm", "aro-test-siglip", "aro-test-coca"])
@torch.no_grad()
def test_every_kind_of_open_clip_model_scores_as_open_clip_computes_it(architecture, architectures, data_folder):
    checkpoint = architectures[architecture]
    model, processor = load_model(f"open_clip:{architecture}:{checkpoint}")
    own_model, preprocess, tokenizer = open_clips_own(architecture, checkpoint)
    data = load_split(str(data_folder), "relation")
    own = own_cosines(own_model, preprocess, tokenizer, data)
    assert np.ptp(own) > 1e-3  # the captions really are told apart
    scored = score_items(model, processor, data, batch_size=3)
    np.testing.assert_allclose(scored.scores, own, atol=1e-5)
    ties = tied(tokenizer)  # SigLIP's cleaning drops punctuation; open_clip's BPE lower-cases
    assert ties.sum() == (3 if architecture == "aro-test-siglip" else 1)
    assert (scored.scores[ties, 0] == scored.scores[ties, 1]).all()
    assert (scored.scores[~ties, 0] != scored.scores[~ties, 1]).all()


def hub_cache(root: Path, repo: str, commit: str, model_cfg: dict, weights: dict) -> Path:
    """A Hugging Face cache holding `repo` at `commit`, as `hf download` leaves it: refs/main and a snapshot."""
    repo_folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = repo_folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_folder / "refs").mkdir()
    (repo_folder / "refs" / "main").write_text(commit)
    preprocess_cfg = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "interpolation": "bilinear"}
    (snapshot / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg})
    )
    save_file(weights, snapshot / "open_clip_model.safetensors")
    return snapshot


@torch.no_grad()
def test_a_hub_model_is_scored_from_the_hugging_face_cache_offline(data_folder, tmp_path):
    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "patch_size": 16, "head_width": 16, **TOWER},
        "text_cfg": SIMPLE_TEXT,
    }
    architecture = register(tmp_path, "aro-test-hub-vit", model_cfg)
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = hub_cache(
        tmp_path / "hub", "aro-test/tiny-open-clip", commit, model_cfg, random_weights(architecture, 7)
    )
    out = tmp_path / "eval"
    environment = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "aro.cli", "eval", "--model", "hf-hub:aro-test/tiny-open-clip"]
    command += ["--dataset", str(data_folder), "--config", "coco_order", "--num-workers", "0", "--save-scores"]
    done = subprocess.run([*command, "--out", str(out)], env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert (results["model"], results["model_commit"]) == ("hf-hub:aro-test/tiny-open-clip", commit)

    # open_clip's own reading of the same files: its config, its weights and its preprocessing (mean, std).
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{snapshot}")
    own = own_cosines(
        model.eval(),
        preprocess,
        open_clip.get_tokenizer(f"local-dir:{snapshot}"),
        load_split(str(data_folder), "coco_order"),
    )
    np.testing.assert_allclose(saved_scores(out, "coco_order"), own, atol=1e-5)

    not_cached = [*command[:5], "hf-hub:aro-test/not-downloaded", *command[6:], "--out", str(tmp_path / "none")]
    done = subprocess.run(not_cached, env=environment, capture_output=True, text=True)
    errors = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert errors[-1].startswith("aro eval: error: model hf-hub:aro-test/not-downloaded cannot be loaded by open_clip")


def test_open_clip_references_that_cannot_be_scored_get_one_line(architectures, data_folder, tmp_path, capfd):
    reference = architectures["aro-test-reference"]
    timm = architectures["aro-test-timm"]
    before = {path: path.read_bytes() for path in (reference, timm)}
    base = ["eval", "--dataset", str(data_folder), "--config", "relation", "--out", str(tmp_path / "out"), "--model"]
    cases = {
        "open_clip:aro-test-timm": "name an open_clip model open_clip:ARCH:PRETRAINED",
        "hf-hub:no-slash": "an open_clip Hub model is named hf-hub:ORG/NAME",
        "open_clip:No-Such-Arch:laion2b": "open_clip has no architecture No-Such-Arch",
        "open_clip:ViT-B-32:not-a-tag": "not-a-tag is neither a checkpoint file nor a pretrained tag of ViT-B-32 (its "
        "tags: openai,",
        f"open_clip:aro-test-timm:{tmp_path / 'missing.pt'}": "no checkpoint file",
        f"open_clip:aro-test-timm:{reference}": "open_clip:aro-test-timm:epoch_3.pt cannot be loaded by open_clip:",
    }
    for model, message in cases.items():
        refused(capfd, [*base, model], message)
    refused(capfd, [*base, f"open_clip:aro-test-timm:{timm}", "--revision", "v1"], "--revision does not apply")
    assert all(path.read_bytes() == content for path, content in before.items())
    assert not (tmp_path / "out").exists()


def test_without_open_clip_one_line_names_the_extra(architectures, data_folder, tmp_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # what `import open_clip` meets where it is not installed
    argv = ["eval", "--model", f"open_clip:aro-test-timm:{architectures['aro-test-timm']}", "--dataset"]
    argv += [str(data_folder), "--config", "relation", "--out", str(tmp_path / "out")]
    refused(capfd, argv, 'open_clip is not installed: pip install "aro[open_clip]"')
