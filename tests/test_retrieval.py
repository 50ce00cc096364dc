"""Retrieval with shuffled captions and zero-shot classification, built by `aro build` and run by `aro retrieval`."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_image
from datasets import ClassLabel, Dataset, Features, Value, load_dataset
from datasets import Image as ImageFeature
from PIL import Image, ImageDraw
from transformers import CLIPModel, CLIPProcessor

from aro.builders.build import AroSources, build_aro
from aro.cli import main
from aro.metrics.scoring.retrieval import dual_encoder, ranks_of_truth, recall_at
from aro.metrics.scoring.runtime import Runtime
from aro.metrics.scoring.zero_shot import class_embeddings

# Captions in the tiny CLIP's words, five per image; images 0 and 1 share a caption, so image-to-text has exact ties.
SHARED = "a red circle above a blue square"
CAPTIONS = [
    [
        SHARED,
        "the red circle is above the square",
        "a blue square below a red circle",
        "a circle and a square",
        "red and blue",
    ],
    [
        SHARED,
        "a green triangle left of a star",
        "the star is right of a green triangle",
        "a small green triangle",
        "a star",
    ],
    [
        "a large yellow star",
        "the yellow star is above a circle",
        "a circle below a large star",
        "yellow and green",
        "a green circle",
    ],
    [
        "a blue triangle to the left of a red square",
        "the red square is right of the triangle",
        "blue and red",
        "a small square",
        "a triangle",
    ],
]
COLOURS = [(220, 40, 40), (40, 170, 60), (235, 200, 30), (40, 80, 220)]


def draw(index: int) -> Image.Image:
    image = Image.new("RGB", (40, 36), (245, 245, 245))
    ImageDraw.Draw(image).ellipse((4 + 3 * index, 6, 24 + 3 * index, 26), fill=COLOURS[index])
    return image


def karpathy(root: Path, name: str, folder: str, annotations: str) -> Path:
    """A Karpathy test split in the original format: `{"image", "caption": [...], "image_id"}` per image."""
    items = []
    for index, captions in enumerate(CAPTIONS):
        path = root / name / folder / f"{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw(index).save(path, format="JPEG", quality=95)
        items.append({"image": f"{folder}/{index}.jpg", "caption": captions, "image_id": f"{name}{index}"})
    (root / name / annotations).write_text(json.dumps(items))
    return root / name


@pytest.fixture(scope="module")
def karpathy_sources(tmp_path_factory) -> AroSources:
    root = tmp_path_factory.mktemp("karpathy")
    coco = karpathy(root, "coco", "val2014", "coco_karpathy_test.json")
    flickr = karpathy(root, "flickr", "flickr30k-images", "flickr30k_test.json")
    return AroSources(coco_dir=str(coco), flickr_dir=str(flickr))


@pytest.fixture(scope="module")
def built(karpathy_sources, tmp_path_factory, spacy_nlp) -> Path:
    out = tmp_path_factory.mktemp("built") / "aro"
    counts, _ = build_aro(out, karpathy_sources, spacy_pipeline=spacy_nlp, seed=0)
    assert counts == {
        ("coco_order", "test"): 20,
        ("flickr30k_order", "test"): 20,
        ("coco_retrieval", "test"): 4,
        ("flickr30k_retrieval", "test"): 4,
    }
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(next(path.glob("*.parquet")).read_bytes()).hexdigest()


def test_retrieval_configs_hold_each_image_once_with_its_captions_shuffled_as_in_the_order_configs(built, spacy_nlp):
    retrieval = load_dataset(str(built), "coco_retrieval", split="test")
    assert retrieval.column_names == ["image_id", "image", "caption_ids", "captions", "perturbed_captions"]
    assert retrieval["image_id"] == ["coco0", "coco1", "coco2", "coco3"]
    assert retrieval["captions"] == CAPTIONS  # already normalised
    assert retrieval[2]["image"].size == (40, 36)
    order = {row["caption_id"]: row["caption_options"] for row in load_dataset(str(built), "coco_order", split="test")}
    for row in retrieval:
        perturbed = row["perturbed_captions"]
        assert list(perturbed) == [
            "shuffle_nouns_and_adjectives",
            "shuffle_all_but_nouns_and_adjectives",
            "shuffle_within_trigrams",
            "shuffle_trigrams",
        ]
        for k, (caption_id, caption) in enumerate(zip(row["caption_ids"], row["captions"])):
            tokens = sorted(token.text for token in spacy_nlp(caption))
            # The same shuffles as the Order config's, caption by caption (one seed rule).
            assert order[caption_id] == [caption] + [perturbed[name][k] for name in perturbed]
            for name in perturbed:
                assert sorted(perturbed[name][k].split()) == tokens  # a permutation of the caption's words
    assert load_dataset(str(built), "flickr30k_retrieval", split="test")["image_id"] == [
        "flickr0",
        "flickr1",
        "flickr2",
        "flickr3",
    ]
    assert "config_name: coco_retrieval" in (built / "README.md").read_text()


def test_shuffles_are_frozen_by_the_seed(built, karpathy_sources, tmp_path, spacy_nlp):
    build_aro(tmp_path / "again", karpathy_sources, configs=("coco_retrieval",), spacy_pipeline=spacy_nlp, seed=0)
    build_aro(tmp_path / "other", karpathy_sources, configs=("coco_retrieval",), spacy_pipeline=spacy_nlp, seed=1)
    assert digest(tmp_path / "again" / "coco_retrieval") == digest(built / "coco_retrieval")
    assert digest(tmp_path / "other" / "coco_retrieval") != digest(built / "coco_retrieval")


def test_a_wrong_candidate_tied_with_the_right_one_ranks_above_it():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # Query 0's right candidate (1) ties with candidate 0; query 1's right candidate (2) is strictly best.
    candidates = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ranks = ranks_of_truth(queries, candidates, torch.tensor([0, 1]), torch.tensor([5, 0, 1]))
    assert ranks.tolist() == [2, 1]
    assert recall_at(ranks, (1, 2)) == {"recall@1": 0.5, "recall@2": 1.0}


def brute_force_recalls(similarity: np.ndarray, right: np.ndarray, ks) -> dict:
    """Sort each query's candidates by score, a wrong one before a right one on a tie; recall@k from the position
    of the first right candidate."""
    positions = []
    for scores, rights in zip(similarity, right):
        order = sorted(range(len(scores)), key=lambda candidate: (-scores[candidate], bool(rights[candidate])))
        positions.append(next(rank for rank, candidate in enumerate(order, 1) if rights[candidate]))
    return {f"recall@{k}": float(np.mean([position <= k for position in positions])) for k in ks}


def test_cli_recall_equals_a_brute_force_ranking_for_every_caption_variant(built, tiny_clip_dir, tmp_path, capsys):
    out = tmp_path / "retrieval"
    assert (
        main(
            [
                "retrieval",
                "--model",
                str(tiny_clip_dir),
                "--dataset",
                str(built),
                "--config",
                "coco_retrieval",
                "--num-workers",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "shuffle_trigrams" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert (out / "results.md").exists() and Image.open(out / "retrieval.png").size[0] > 500
    retrieval = results["retrieval"]
    assert (retrieval["images"], retrieval["captions"], retrieval["ks"]) == (4, 20, [1, 5, 10])

    # Brute force: every image and every caption through the model on its own, a full similarity matrix per variant.
    model, processor = CLIPModel.from_pretrained(tiny_clip_dir).eval(), CLIPProcessor.from_pretrained(tiny_clip_dir)
    data = load_dataset(str(built), "coco_retrieval", split="test")
    with torch.no_grad():
        images = np.stack(
            [
                model.get_image_features(**processor(images=[image], return_tensors="pt")).pooler_output[0].numpy()
                for image in data["image"]
            ]
        )

    @torch.no_grad()
    def text(caption: str) -> np.ndarray:
        return model.get_text_features(**processor(text=[caption], return_tensors="pt")).pooler_output[0].numpy()

    images /= np.linalg.norm(images, axis=1, keepdims=True)
    owner = np.repeat(np.arange(4), 5)
    variants = {"original": sum(data["captions"], [])} | {
        name: sum((row[name] for row in data["perturbed_captions"]), []) for name in data[0]["perturbed_captions"]
    }
    assert list(retrieval["variants"]) == list(variants)
    for name, captions in variants.items():
        texts = np.stack([text(caption) for caption in captions])
        similarity = (texts / np.linalg.norm(texts, axis=1, keepdims=True)) @ images.T
        right = owner[:, None] == np.arange(4)[None, :]
        expected = {
            "text_to_image": brute_force_recalls(similarity, right, (1, 5, 10)),
            "image_to_text": brute_force_recalls(similarity.T, right.T, (1, 5, 10)),
        }
        assert retrieval["variants"][name] == expected, name  # shares of queries: exact
        for recalls in retrieval["variants"][name].values():
            assert recalls["recall@1"] <= recalls["recall@5"] <= recalls["recall@10"]  # monotone in k
    # The shared caption ties between images 0 and 1 for image-to-text; the brute force breaks ties the same way.
    assert variants["original"].count(SHARED) == 2


def test_retrieval_refuses_a_dataset_without_retrieval_columns(built, tiny_clip_dir, capsys):
    assert (
        main(
            [
                "retrieval",
                "--model",
                str(tiny_clip_dir),
                "--dataset",
                str(built),
                "--config",
                "coco_order",
                "--num-workers",
                "0",
            ]
        )
        == 2
    )
    assert "a retrieval config needs" in capsys.readouterr().err


def test_zero_shot_accuracy_equals_a_hand_computed_case(tiny_clip_dir, tmp_path):
    names = ["circle", "square", "triangle"]
    labels = [0, 1, 2, 0, 2, 1]
    folder = tmp_path / "shapes"
    folder.mkdir()
    features = Features({"picture": ImageFeature(), "shape": ClassLabel(names=names), "note": Value("string")})
    Dataset.from_dict(
        {"picture": [draw(index % 4) for index in range(6)], "shape": labels, "note": ["x"] * 6}, features=features
    ).to_parquet(folder / "test.parquet")
    out = tmp_path / "zero-shot"
    argv = [
        "retrieval",
        "--model",
        str(tiny_clip_dir),
        "--zero-shot",
        str(folder),
        "--image-column",
        "picture",
        "--label-column",
        "shape",
        "--templates",
        "a {}",
        "the {} is red",
        "--num-workers",
        "0",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())["zero_shot"]

    # By hand: a class is the normalised mean of its two templates' normalised features; the best class wins.
    model, processor = CLIPModel.from_pretrained(tiny_clip_dir).eval(), CLIPProcessor.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        texts = model.get_text_features(
            **processor(
                text=[f"a {name}" for name in names] + [f"the {name} is red" for name in names],
                return_tensors="pt",
                padding=True,
            )
        ).pooler_output
        images = model.get_image_features(
            **processor(images=[draw(index % 4) for index in range(6)], return_tensors="pt")
        ).pooler_output
    texts = torch.nn.functional.normalize(texts, dim=-1)
    classes = torch.nn.functional.normalize(texts[:3] + texts[3:], dim=-1)
    predicted = (torch.nn.functional.normalize(images, dim=-1) @ classes.T).argmax(dim=1).tolist()
    expected = sum(p == label for p, label in zip(predicted, labels)) / len(labels)
    assert results["accuracy"] == pytest.approx(expected)
    assert results["classes"] == names and results["images"] == 6 and results["templates"] == ["a {}", "the {} is red"]


def test_zero_shot_classes_are_renormalised_after_averaging_their_templates(tiny_clip_dir, tmp_path):
    names = ["triangle", "green triangle"]
    # The templates disagree more for one class than the other: their means differ in length, not only direction.
    templates = ("{}", "a small green triangle above a large blue square and {}")
    model, processor = CLIPModel.from_pretrained(tiny_clip_dir).eval(), CLIPProcessor.from_pretrained(tiny_clip_dir)
    classes = class_embeddings(dual_encoder(model, processor, Runtime(device="cpu")), names, templates)
    assert torch.allclose(classes.norm(dim=-1), torch.ones(2), atol=1e-6)

    # By hand: the mean of each class's normalised template features, with and without normalising it again.
    pictures = [random_image(seed) for seed in range(8)]
    with torch.no_grad():
        texts = model.get_text_features(
            **processor(text=[t.format(n) for n in names for t in templates], return_tensors="pt", padding=True)
        ).pooler_output
        images = model.get_image_features(**processor(images=pictures, return_tensors="pt")).pooler_output
    means = torch.nn.functional.normalize(texts, dim=-1).view(2, 2, -1).mean(dim=1)
    images = torch.nn.functional.normalize(images, dim=-1)
    renormalised = (images @ torch.nn.functional.normalize(means, dim=-1).T).argmax(dim=1)
    plain = (images @ means.T).argmax(dim=1)
    assert (renormalised != plain).any()  # a case where leaving out the normalisation changes predictions

    folder = tmp_path / "shapes"
    folder.mkdir()
    features = Features({"picture": ImageFeature(), "shape": ClassLabel(names=["triangle", "green_triangle"])})
    Dataset.from_dict({"picture": pictures, "shape": renormalised.tolist()}, features=features).to_parquet(
        folder / "test.parquet"
    )
    argv = ["retrieval", "--model", str(tiny_clip_dir), "--zero-shot", str(folder), "--image-column", "picture"]
    argv += ["--label-column", "shape", "--templates", *templates, "--num-workers", "0", "--out", str(tmp_path / "z")]
    assert main(argv) == 0
    results = json.loads((tmp_path / "z" / "results.json").read_text())["zero_shot"]
    assert results["classes"] == names and results["accuracy"] == 1.0


def test_no_local_path_in_anything_eval_or_retrieval_writes(built, tiny_clip_dir, tmp_path):
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    features = Features({"img": ImageFeature(), "label": ClassLabel(names=["circle", "square"])})
    Dataset.from_dict(
        {"img": [draw(index) for index in range(4)], "label": [0, 1, 0, 1]}, features=features
    ).to_parquet(shapes / "test.parquet")
    model = ["--model", str(tiny_clip_dir), "--num-workers", "0"]
    retrieval = ["retrieval", *model, "--dataset", str(built), "--zero-shot", str(shapes)]
    assert main([*retrieval, "--out", str(tmp_path / "retrieval")]) == 0
    aro = ["eval", *model, "--dataset", str(built), "--config", "coco_order", "--bootstrap", "0"]
    assert main([*aro, "--out", str(tmp_path / "eval")]) == 0
    root = str(tmp_path.parent).encode()  # holds every folder of this session: the dataset, the model, the outputs
    for out in (tmp_path / "retrieval", tmp_path / "eval"):
        for path in out.rglob("*"):
            assert not path.is_file() or root not in path.read_bytes(), f"{path} names a local path"
    results = json.loads((tmp_path / "retrieval" / "results.json").read_text())
    assert results["model"] == tiny_clip_dir.name
    assert results["retrieval"]["dataset"] == "aro" and results["zero_shot"]["dataset"] == "shapes"


def test_zero_shot_names_a_missing_column_and_a_template_without_a_slot(tiny_clip_dir, tmp_path, capsys):
    folder = tmp_path / "shapes"
    folder.mkdir()
    Dataset.from_dict(
        {"img": [draw(0)], "label": [0]},
        features=Features({"img": ImageFeature(), "label": ClassLabel(names=["circle"])}),
    ).to_parquet(folder / "test.parquet")
    assert (
        main(["retrieval", "--model", str(tiny_clip_dir), "--zero-shot", str(folder), "--label-column", "shape"]) == 2
    )
    assert "has no column 'shape'" in capsys.readouterr().err
    assert main(["retrieval", "--model", str(tiny_clip_dir), "--zero-shot", str(folder), "--templates", "a photo"]) == 2
    assert "needs a {} where the class name goes" in capsys.readouterr().err


def test_card_of_a_trained_model_reports_retrieval_beside_its_base_model(built, tiny_clip_dir, tmp_path):
    from dataclasses import asdict

    from aro.models.negclip.arguments import NegCLIPTrainingArguments

    # A folder as `aro train` leaves it: weights, processor, training arguments; here the base model's own weights.
    trained = tmp_path / "trained"
    shutil.copytree(tiny_clip_dir, trained)
    args = NegCLIPTrainingArguments(output_dir=str(trained), model_name_or_path=str(tiny_clip_dir), dataset="coco")
    (trained / "training_args.json").write_text(json.dumps(asdict(args)))
    common = ["--dataset", str(built), "--config", "coco_retrieval", "--num-workers", "0"]
    assert main(["retrieval", "--model", str(tiny_clip_dir), *common, "--out", str(tmp_path / "base")]) == 0
    assert (
        main(
            [
                "retrieval",
                "--model",
                str(trained),
                *common,
                "--out",
                str(tmp_path / "ours"),
                "--card",
                "--base-results",
                str(tmp_path / "base" / "results.json"),
            ]
        )
        == 0
    )
    card = (trained / "README.md").read_text()
    assert "## Retrieval and zero-shot" in card and "the change from the base model" in card and str(built) not in card
    ours = json.loads((tmp_path / "ours" / "results.json").read_text())["retrieval"]["variants"]["shuffle_trigrams"][
        "text_to_image"
    ]["recall@1"]
    assert f"| shuffle_trigrams | {ours:.3f} (+0.000) |" in card  # the same weights: nothing kept or lost


def test_two_processes_retrieve_and_classify_as_one(built, tiny_clip_dir, tmp_path):
    shapes = tmp_path / "shapes"
    shapes.mkdir()
    features = Features({"img": ImageFeature(), "label": ClassLabel(names=["circle", "square", "triangle"])})
    Dataset.from_dict(
        {"img": [draw(index % 4) for index in range(5)], "label": [0, 1, 2, 0, 1]}, features=features
    ).to_parquet(shapes / "test.parquet")
    argv = [
        "retrieval",
        "--model",
        str(tiny_clip_dir),
        "--dataset",
        str(built),
        "--zero-shot",
        str(shapes),
        "--num-workers",
        "0",
        "--batch-size",
        "3",
    ]
    environment = os.environ | {
        "ACCELERATE_USE_CPU": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "aro.cli",
            *argv,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("| shuffle_trigrams |") == 1, run.stdout  # the table printed once, by the main process
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    two, one = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("two", "one"))
    assert two["retrieval"]["variants"] == one["retrieval"]["variants"]
    assert two["zero_shot"]["accuracy"] == one["zero_shot"]["accuracy"] and two["zero_shot"]["images"] == 5
