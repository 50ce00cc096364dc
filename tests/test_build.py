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
    relation[5] |= {"bbox_x": 40, "bbox_w": 30}  # reaches past the right edge: black there
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


def pixels_under(source: np.ndarray, bbox) -> np.ndarray:
    """The pixels of an RGB `source` array under `bbox` [x, y, w, h], pixel by pixel, black outside the image: what
    the original loader's `image.crop((x, y, x + w, y + h))` gives, computed without PIL."""
    x, y, w, h = bbox
    height, width = source.shape[:2]
    crop = np.zeros((h, w, 3), dtype=np.uint8)
    for row in range(h):
        for column in range(w):
            if 0 <= y + row < height and 0 <= x + column < width:
                crop[row, column] = source[y + row, x + column]
    return crop


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
    assert report.outside_bboxes == {"relation": 1, "attribution": 0}

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
        source = np.asarray(Image.open(Path(sources.vg_dir) / "images" / item["image_path"]).convert("RGB"))
        assert row["bbox"] == [item[key] for key in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")]
        # Stored losslessly: exactly the pixels of the source under the bbox, whatever the source's mode.
        assert np.array_equal(np.asarray(row["image"]), pixels_under(source, row["bbox"])), row["item_id"]
    assert np.asarray(relation[5]["image"])[:, SIZE[0] - 40 :].max() == 0  # past the right edge: black

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
    skipped = json.loads((tmp_path / "aro" / "skipped.json").read_text())
    assert [(entry["item"], entry["image"], entry["problem"].split(":")[0]) for entry in skipped] == [
        (1, "101.jpg", "image missing"),
        (3, "103.jpg", "image unreadable"),
        (6, "106.jpg", "image unreadable"),
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


# Crops as the original loader makes them: `image.crop((x, y, x + w, y + h))`, black where the box reaches out.
EDGE_BOXES = {  # on a 48 x 40 image
    "inside": (2, 3, 30, 20),
    "left": (-5, 3, 20, 10),
    "top": (4, -6, 20, 10),
    "right": (40, 3, 20, 10),
    "bottom": (4, 35, 20, 10),
    "top-left corner": (-3, -4, 10, 8),
    "bottom-right corner": (41, 36, 10, 8),
    "fractional": (2.5, 3.4, 10.2, 7.5),  # corners rounded as PIL rounds them: x 2.5 -> 2, x + w 12.7 -> 13
}


def vg_folder(folder: Path, entries: list[tuple[str, tuple, str]]) -> Path:
    """A VG folder with one relation item per (image name, bbox, relation), the images already in `folder/images`."""
    items = [
        {
            "image_path": name,
            **dict(zip(("bbox_x", "bbox_y", "bbox_w", "bbox_h"), bbox)),
            "true_caption": "the horse is eating the grass",
            "false_caption": "the grass is eating the horse",
            "relation_name": relation,
        }
        for name, bbox, relation in entries
    ]
    (folder / "visual_genome_relation.json").write_text(json.dumps(items))
    return folder


def test_bboxes_reaching_past_any_edge_are_padded_black_as_the_original_loader_crops(tmp_path, capsys):
    vg = tmp_path / "vg"
    save(draw(7), vg / "images" / "photo.jpg", "RGB")
    vg_folder(vg, [("photo.jpg", bbox, edge) for edge, bbox in EDGE_BOXES.items()])
    out = tmp_path / "aro"
    assert main(["build", "--vg-dir", str(vg), "--configs", "relation", "--out", str(out)]) == 0
    assert "relation: 6 bbox(es) reaching outside their image (padded black" in capsys.readouterr().out
    assert "Bounding boxes reaching outside their image: relation: 6; padded black" in " ".join(
        (out / "README.md").read_text().split()
    )

    relation = load_dataset(str(out), "relation", split="test")
    assert relation["relation_name"] == list(EDGE_BOXES)
    assert relation["bbox"] == [
        [2, 3, 30, 20],
        [-5, 3, 20, 10],
        [4, -6, 20, 10],
        [40, 3, 20, 10],
        [4, 35, 20, 10],
        [-3, -4, 10, 8],
        [41, 36, 10, 8],
        [2, 3, 11, 8],
    ]
    source = Image.open(vg / "images" / "photo.jpg").convert("RGB")
    for row, (edge, (x, y, w, h)) in zip(relation, EDGE_BOXES.items()):
        crop = np.asarray(row["image"])
        assert np.array_equal(crop, pixels_under(np.asarray(source), row["bbox"])), edge
        assert np.array_equal(crop, np.asarray(source.crop((x, y, x + w, y + h)))), edge  # the original's own line
    # Where each box reaches out, exactly that band is black (the source has no black pixel).
    crops = {edge: np.asarray(row["image"]) for edge, row in zip(EDGE_BOXES, relation)}
    assert np.asarray(source).max(axis=2).min() > 0
    assert crops["left"][:, :5].max() == 0 and crops["left"][:, 5:].max(axis=2).min() > 0
    assert crops["top"][:6].max() == 0 and crops["top"][6:].max(axis=2).min() > 0
    assert crops["right"][:, 8:].max() == 0 and crops["right"][:, :8].max(axis=2).min() > 0
    assert crops["bottom"][5:].max() == 0 and crops["bottom"][:5].max(axis=2).min() > 0
    assert crops["top-left corner"][:4].max() == 0 and crops["top-left corner"][:, :3].max() == 0
    assert crops["top-left corner"][4:, 3:].max(axis=2).min() > 0
    assert crops["bottom-right corner"][4:].max() == 0 and crops["bottom-right corner"][:, 7:].max() == 0
    assert crops["bottom-right corner"][:4, :7].max(axis=2).min() > 0


def test_sixteen_bit_and_floating_point_sources_are_scaled_by_their_range_not_clipped(tmp_path):
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, (SIZE[1], SIZE[0]))  # the 8-bit value every source below encodes
    # 257 = 65535 / 255: each 16-bit value lies within 128 of 257 times its 8-bit level.
    sixteen = np.clip(levels * 257 + rng.integers(-128, 129, levels.shape), 0, 65535)
    images = tmp_path / "vg" / "images"
    images.mkdir(parents=True)
    Image.fromarray(sixteen.astype(np.uint16)).save(images / "sixteen.png")
    Image.fromarray(sixteen.astype(np.int32)).save(images / "int32.tif")
    Image.fromarray((levels / 255).astype(np.float32)).save(images / "float.tif")
    modes = {name: Image.open(images / name).mode for name in ("sixteen.png", "int32.tif", "float.tif")}
    assert modes == {"sixteen.png": "I;16", "int32.tif": "I", "float.tif": "F"}
    bbox = (2, 3, 30, 20)
    vg = vg_folder(tmp_path / "vg", [(name, bbox, "eating") for name in modes])
    out = tmp_path / "aro"
    assert main(["build", "--vg-dir", str(vg), "--configs", "relation", "--out", str(out)]) == 0

    expected = np.repeat(levels[3:23, 2:32, None], 3, axis=2).astype(np.uint8)
    for name, row in zip(modes, load_dataset(str(out), "relation", split="test")):
        assert np.array_equal(np.asarray(row["image"]), expected), name
    assert 120 < expected.mean() < 136  # mid-grey, as the sources (not saturated at 255, nor black)
