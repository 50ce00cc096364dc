"""`aro build` on annotation files in the original formats and images drawn by the tests."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from PIL import Image, ImageDraw

from aro.builders.build import AroSources, build_aro, push_to_hub
from aro.builders.text import pre_caption
from aro.cli import main

SIZE = (48, 40)
COCO_CAPTIONS = [
    "A brown dog chases a white cat.",
    "Two small birds sit on a wooden fence",
    "a man rides a red bike down the street",
]


def draw(seed: int) -> Image.Image:
    """A small RGB image with a gradient and a rectangle, different for every seed."""
    rng = np.random.default_rng(seed)
    gradient = np.add.outer(np.arange(SIZE[1]) * 3, np.arange(SIZE[0]) * 2)[..., None]
    pixels = (gradient * rng.uniform(0.5, 1.2, 3)).astype(np.uint8)
    image = Image.fromarray(pixels)
    ImageDraw.Draw(image).rectangle((5, 5, 20, 15), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return image


def save(image: Image.Image, path: Path, mode: str) -> None:
    """Save `image` in one of the modes and formats the sources come in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "L":
        image.convert("L").save(path, format="JPEG")
    elif mode == "RGBA":
        image.convert("RGBA").save(path, format="PNG")
    elif mode == "CMYK":
        image.convert("CMYK").save(path, format="JPEG")
    elif mode == "P":
        image.convert("P").save(path, format="PNG")
    elif mode == "PNG":
        image.save(path, format="PNG")
    else:
        image.save(path, format="JPEG", quality=95)


MODES = ["RGB", "L", "RGBA", "CMYK", "P", "PNG"]


@pytest.fixture()
def sources(tmp_path) -> AroSources:
    """A VG folder (12 relation and 12 attribution items) and a COCO and a Flickr30k Karpathy split (4 images each)."""
    vg = tmp_path / "vg"
    relation, attribution = [], []
    for index in range(12):
        name = f"{100 + index}.{'png' if MODES[index % 6] in ('RGBA', 'P', 'PNG') else 'jpg'}"
        save(draw(index), vg / "images" / name, MODES[index % 6])
        common = {
            "image_path": name,
            "bbox_x": 2 + index % 3,
            "bbox_y": 3,
            "bbox_w": 30,
            "bbox_h": 20,
            "image_id": str(100 + index),
        }
        relation.append(
            common
            | {
                "true_caption": "the horse is eating the grass",
                "false_caption": "the grass is eating the horse",
                "relation_name": ["eating", "on", "next to"][index % 3],
            }
        )
        attribution.append(
            common
            | {
                "true_caption": "the paved road and the white house",
                "false_caption": "the white road and the paved house",
                "attributes": ["paved", "white"],
            }
        )
    relation[5] |= {"bbox_x": 40, "bbox_w": 30}  # reaches past the right edge: clamped
    (vg / "visual_genome_relation.json").write_text(json.dumps(relation))
    (vg / "visual_genome_attribution.json").write_text(json.dumps(attribution))
    folders = {}
    for name, folder in (("coco", "val2014"), ("flickr", "flickr30k-images")):
        items = []
        for index in range(4):
            image = f"{folder}/{name}_{index}.jpg"
            save(draw(50 + index), tmp_path / name / image, "RGB" if index % 2 else "L")
            items.append(
                {
                    "image": image,
                    "caption": COCO_CAPTIONS[index % 3 :] + COCO_CAPTIONS[: index % 3],
                    "image_id": f"{name}{index}",
                }
            )
        annotations = tmp_path / name / ("coco_karpathy_test.json" if name == "coco" else "flickr30k_test.json")
        annotations.write_text(json.dumps(items))
        folders[name] = tmp_path / name
    return AroSources(vg_dir=str(vg), coco_dir=str(folders["coco"]), flickr_dir=str(folders["flickr"]))


def parquet_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.parquet"))
    }


def test_builds_all_four_configs_loadable_with_load_dataset(sources, tmp_path, spacy_nlp):
    out = tmp_path / "aro"
    counts, report = build_aro(out, sources, seed=0, workers=2)
    assert counts == {
        ("relation", "test"): 12,
        ("attribution", "test"): 12,
        ("coco_order", "test"): 12,
        ("flickr30k_order", "test"): 12,
        ("coco_retrieval", "test"): 4,
        ("flickr30k_retrieval", "test"): 4,
    }
    assert report.clamped_bboxes == {"relation": 1, "attribution": 0}

    relation = load_dataset(str(out), "relation", split="test")
    assert relation.column_names == [
        "item_id",
        "image",
        "true_caption",
        "false_caption",
        "image_id",
        "bbox",
        "relation_name",
    ]
    annotations = json.loads((Path(sources.vg_dir) / "visual_genome_relation.json").read_text())
    for row in relation:
        item = annotations[row["item_id"]]
        source = Image.open(Path(sources.vg_dir) / "images" / item["image_path"]).convert("RGB")
        x, y, w, h = row["bbox"]
        assert row["image"].mode == "RGB" and row["image"].size == (w, h)
        # The crop is the bbox region (JPEG at quality 95: equal up to compression noise).
        expected = np.asarray(source.crop((x, y, x + w, y + h)), dtype=float)
        assert np.abs(np.asarray(row["image"], dtype=float) - expected).mean() < 4, (
            row["item_id"],
            source.mode,
        )  # palette sources carry dithering noise
    assert relation[5]["bbox"] == [40, 3, SIZE[0] - 40, 20]

    attribution = load_dataset(str(out), "attribution", split="test")
    assert attribution[0]["attributes"] == ["paved", "white"] and attribution[0]["attribute_pair"] == "paved_white"

    order = load_dataset(str(out), "coco_order", split="test")
    assert order[0]["caption_id"] == "coco0#0" and order[0]["image_id"] == "coco0"
    assert order[0]["perturbations"][0] == "original"
    for row in order:
        original, *perturbed = row["caption_options"]
        tokens = sorted(token.text for token in spacy_nlp(original))
        assert original in {pre_caption(caption) for caption in COCO_CAPTIONS}
        for caption in perturbed:
            assert sorted(caption.split()) == tokens  # a permutation of the original's tokens
            assert caption != original

    card = (out / "README.md").read_text()
    assert "config_name: flickr30k_order" in card and "| relation | 12 |" in card and "seed 0" in card


def test_same_seed_builds_identical_bytes_and_another_seed_differs(sources, tmp_path):
    order_only = AroSources(coco_dir=sources.coco_dir, flickr_dir=sources.flickr_dir, vg_dir=sources.vg_dir)
    build_aro(tmp_path / "first", order_only, seed=3, workers=1)
    build_aro(tmp_path / "second", order_only, seed=3, workers=2)
    build_aro(tmp_path / "other", order_only, seed=4, workers=1)
    first, second, other = (parquet_digest(tmp_path / name) for name in ("first", "second", "other"))
    assert first == second
    assert first["coco_order/test-00000-of-00001.parquet"] != other["coco_order/test-00000-of-00001.parquet"]
    assert first["relation/test-00000-of-00001.parquet"] == other["relation/test-00000-of-00001.parquet"]


def _rewrite(path: Path, edit) -> None:
    items = json.loads(path.read_text())
    edit(items)
    path.write_text(json.dumps(items))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda items: items[3].pop("bbox_w"), "item 3 has no 'bbox_w' key"),
        (lambda items: items[4].update(true_caption="  "), "item 4 has an empty true_caption"),
        (lambda items: items[2].update(bbox_h=0), "item 2 has an empty bbox"),
    ],
)
def test_bad_annotations_name_the_item(sources, tmp_path, edit, message):
    _rewrite(Path(sources.vg_dir) / "visual_genome_relation.json", edit)
    with pytest.raises(ValueError, match=message):
        build_aro(tmp_path / "aro", AroSources(vg_dir=sources.vg_dir), configs=("relation",))
    assert not (tmp_path / "aro").exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".aro")] == []


def test_missing_and_corrupt_images_stop_the_build_unless_skipped(sources, tmp_path):
    images = Path(sources.vg_dir) / "images"
    vg_only = AroSources(vg_dir=sources.vg_dir)
    (images / "101.jpg").unlink()
    (images / "103.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"2 image file\(s\) .* missing, e\.g\. .*101\.jpg"):
        build_aro(tmp_path / "aro", vg_only, configs=("relation",))

    save(draw(1), images / "101.jpg", "L")
    save(draw(3), images / "103.jpg", "CMYK")
    (images / "106.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match=r"item 6 .*106\.jpg.*unreadable"):
        build_aro(tmp_path / "aro", vg_only, configs=("relation",))
    assert not (tmp_path / "aro").exists()

    (images / "101.jpg").unlink()
    (images / "103.jpg").write_bytes((images / "103.jpg").read_bytes()[:200])  # truncated
    counts, report = build_aro(tmp_path / "aro", vg_only, configs=("relation",), skip_missing=True)
    assert counts == {("relation", "test"): 9}
    skipped = json.loads(Path(f"{tmp_path / 'aro'}.skipped.json").read_text())
    assert [(entry["item"], entry["problem"].split(":")[0]) for entry in skipped] == [
        (1, "missing"),
        (3, "unreadable"),
        (6, "unreadable"),
    ]
    assert load_dataset(str(tmp_path / "aro"), "relation", split="test")["item_id"] == [0, 2, 4, 5, 7, 8, 9, 10, 11]


def test_an_existing_output_is_kept_unless_overwrite(sources, tmp_path):
    out = tmp_path / "aro"
    vg_only = AroSources(vg_dir=sources.vg_dir)
    build_aro(out, vg_only, configs=("attribution",))
    before = parquet_digest(out)
    with pytest.raises(FileExistsError, match="overwrite"):
        build_aro(out, vg_only, configs=("relation",))
    assert parquet_digest(out) == before
    build_aro(out, vg_only, configs=("relation",), overwrite=True)
    assert list(parquet_digest(out)) == ["relation/test-00000-of-00001.parquet"]


def test_cli_builds_and_reports_a_missing_source(sources, tmp_path, capsys):
    assert main(["build", "--vg-dir", sources.vg_dir, "--configs", "relation", "--out", str(tmp_path / "aro")]) == 0
    assert "relation/test: 12 items" in capsys.readouterr().out
    assert main(["build", "--vg-dir", sources.vg_dir, "--configs", "coco_order", "--out", str(tmp_path / "other")]) == 2
    assert "no sources given for ['coco_order']" in capsys.readouterr().err


def test_push_uploads_exactly_the_built_folder(sources, tmp_path, monkeypatch):
    """huggingface_hub is the boundary: record what it is asked to do instead of reaching the Hub."""
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(
        HfApi,
        "create_repo",
        lambda self, repo_id, **kwargs: calls.append(("create", repo_id, kwargs)) or f"https://hub/{repo_id}",
    )
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kwargs: calls.append(("upload", kwargs)))
    out = tmp_path / "aro"
    build_aro(out, AroSources(vg_dir=sources.vg_dir), configs=("relation",))
    push_to_hub(out, "org/aro", private=True)
    assert calls[0] == ("create", "org/aro", {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert calls[1][1]["folder_path"] == str(out) and calls[1][1]["repo_type"] == "dataset"
    assert calls[1][1]["ignore_patterns"] == [".aro-output.json"]  # the local output marker stays local
