"""`aro build` against hostile inputs: each case is refused with one line naming the item or file (exit 2, no
traceback), or counted, and leaves the sources and any earlier output byte-identical."""

import hashlib
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import refused
from datasets import load_dataset
from PIL import Image
from test_build import draw, save

from aro.cli import main

TRUE, FALSE = "the horse is eating the grass", "the grass is eating the horse"
LONG_CAPTION = " ".join(["a dog runs on the beach"] * 7)  # 42 words: cut to 30
COCO_CAPTIONS = [["A brown dog chases a white cat.", LONG_CAPTION], ["a a a", "two birds sit on a fence"]]


def vg_item(index: int, **changes) -> dict:
    return {
        "image_path": f"{index}.jpg",
        "bbox_x": 2,
        "bbox_y": 3,
        "bbox_w": 30,
        "bbox_h": 20,
        "image_id": str(index),
        "true_caption": TRUE,
        "false_caption": FALSE,
        "relation_name": "eating",
    } | changes


@pytest.fixture()
def vg(tmp_path) -> Path:
    """A VG folder with four relation items, one image each."""
    folder = tmp_path / "vg"
    for index in range(4):
        save(draw(index), folder / "images" / f"{index}.jpg", "RGB")
    write_items(folder / "visual_genome_relation.json", [vg_item(index) for index in range(4)])
    return folder


@pytest.fixture()
def coco(tmp_path) -> Path:
    """A COCO folder with two images (the first grayscale JPEG) and two captions each."""
    folder = tmp_path / "coco"
    for index, mode in enumerate(("L", "RGB")):
        save(draw(10 + index), folder / "val2014" / f"{index}.jpg", mode)
    items = [
        {"image": f"val2014/{index}.jpg", "caption": captions, "image_id": str(index)}
        for index, captions in enumerate(COCO_CAPTIONS)
    ]
    write_items(folder / "coco_karpathy_test.json", items)
    return folder


def write_items(path: Path, items: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items))


def edit_items(path: Path, edit) -> None:
    items = json.loads(path.read_text())
    edit(items)
    write_items(path, items)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file (and link) under `folder`, by relative path, with the hash of its bytes."""
    digest = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            digest[str(path.relative_to(folder))] = "link:" + str(path.readlink())
        elif path.is_file():
            digest[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def build_vg(vg: Path, out: Path, *extra: str) -> list[str]:
    return ["build", "--vg-dir", str(vg), "--configs", "relation", "--out", str(out), *extra]


def leftovers(parent: Path) -> list[str]:
    return sorted(path.name for path in parent.iterdir() if path.name.startswith(".aro"))


# --out against the sources --------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["equal", "inside", "containing"])
def test_an_output_overlapping_a_source_folder_is_refused_before_anything_is_written(vg, tmp_path, capfd, where):
    out = {"equal": vg, "inside": vg / "images" / "aro", "containing": tmp_path}[where]
    before = snapshot(tmp_path)
    refused(capfd, build_vg(vg, out, "--overwrite"), "overlaps the source")
    assert snapshot(tmp_path) == before


def test_an_output_that_is_a_file_is_refused_even_with_overwrite(vg, tmp_path, capfd):
    out = tmp_path / "aro"
    out.write_text("my notes")
    refused(capfd, build_vg(vg, out, "--overwrite"), "is a file, not a folder")
    assert out.read_text() == "my notes" and leftovers(tmp_path) == []


# image paths leading out of the source ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_an_image_path_leading_outside_its_source_is_refused_unless_allowed(vg, tmp_path, capfd, kind):
    secret = tmp_path / "private" / "secret.jpg"
    save(draw(99), secret, "RGB")
    path = {"dotdot": "../../private/secret.jpg", "absolute": str(secret), "symlink": "link.jpg"}[kind]
    if kind == "symlink":
        (vg / "images" / "link.jpg").symlink_to(secret)
    edit_items(vg / "visual_genome_relation.json", lambda items: items[2].update(image_path=path))
    before = snapshot(tmp_path)
    refused(capfd, build_vg(vg, tmp_path / "aro"), "item 2: image_path")
    assert snapshot(tmp_path) == before and not (tmp_path / "aro").exists()

    assert main(build_vg(vg, tmp_path / "aro", "--allow-outside-source")) == 0
    assert load_dataset(str(tmp_path / "aro"), "relation", split="test").num_rows == 4


def test_a_karpathy_image_leading_outside_its_source_is_refused(coco, tmp_path, capfd):
    save(draw(98), tmp_path / "private" / "secret.jpg", "RGB")
    edit_items(coco / "coco_karpathy_test.json", lambda items: items[1].update(image="../private/secret.jpg"))
    refused(
        capfd,
        ["build", "--coco-dir", str(coco), "--out", str(tmp_path / "aro")],
        "item 1: image '../private/secret.jpg' leads outside",
    )


# empty configs ---------------------------------------------------------------------------------------------------


def test_an_empty_annotation_list_names_the_config_and_writes_nothing(vg, tmp_path, capfd):
    write_items(vg / "visual_genome_relation.json", [])
    refused(capfd, build_vg(vg, tmp_path / "aro"), "relation: ")
    assert not (tmp_path / "aro").exists() and leftovers(tmp_path) == []


def test_skip_missing_that_empties_a_config_fails_naming_it_and_leaves_no_folder(vg, tmp_path, capfd):
    for image in (vg / "images").iterdir():
        image.write_bytes(b"not an image")
    refused(capfd, build_vg(vg, tmp_path / "aro", "--skip-missing"), "relation/test has no items left")
    assert not (tmp_path / "aro").exists() and leftovers(tmp_path) == []
    assert not Path(f"{tmp_path / 'aro'}.skipped.json").exists()


# decompression bombs ---------------------------------------------------------------------------------------------


def png_header_only(path: Path, width: int, height: int) -> None:
    """A tiny PNG file whose header claims `width` x `height` pixels (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_naming_the_item_and_skipped_with_skip_missing(vg, tmp_path, capfd):
    png_header_only(vg / "images" / "bomb.png", 50000, 50000)
    edit_items(vg / "visual_genome_relation.json", lambda items: items[1].update(image_path="bomb.png"))
    error = refused(capfd, build_vg(vg, tmp_path / "aro"), "item 1 (")
    assert "bomb.png): image too large: 50000x50000 pixels, over the limit of 100000000" in error
    assert not (tmp_path / "aro").exists()

    assert main(build_vg(vg, tmp_path / "aro", "--skip-missing")) == 0
    skipped = json.loads(Path(f"{tmp_path / 'aro'}.skipped.json").read_text())
    assert [(entry["item"], entry["problem"].split(":")[0]) for entry in skipped] == [(1, "too large")]
    assert "--max-image-pixels" in skipped[0]["problem"]


def test_the_pixel_limit_can_be_lowered_and_raised(vg, tmp_path, capfd):
    refused(capfd, build_vg(vg, tmp_path / "aro", "--max-image-pixels", "1000"), "48x40 pixels, over the limit of 1000")
    assert main(build_vg(vg, tmp_path / "aro", "--max-image-pixels", "1920")) == 0


# field types -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bbox_x": "3"}, "item 2: bbox_x should be a finite number, not str"),
        ({"bbox_w": None}, "item 2: bbox_w should be a finite number, not null"),
        ({"bbox_h": float("inf")}, "item 2: bbox_h should be a finite number, not float Infinity"),
        ({"bbox_w": True, "bbox_h": True}, "item 2: bbox_w should be a finite number, not bool true"),
        ({"image_path": None}, "item 2: image_path should be a string, not null"),
        ({"relation_name": 5}, "item 2: relation_name should be a string, not int 5"),
        ({"true_caption": 7}, "item 2: true_caption should be a string, not int 7"),
        ({"false_caption": ["the grass"]}, "item 2: false_caption should be a string, not list"),
        ({"image_id": {"id": 1}}, "item 2: image_id should be a string or an integer"),
        ({"false_caption": TRUE}, "item 2: the false caption equals the true caption"),
    ],
)
def test_every_field_is_type_checked_with_the_item_index(vg, tmp_path, capfd, changes, message):
    edit_items(vg / "visual_genome_relation.json", lambda items: items[2].update(changes))
    before = snapshot(vg)
    refused(capfd, build_vg(vg, tmp_path / "aro"), message)
    assert snapshot(vg) == before and not (tmp_path / "aro").exists() and leftovers(tmp_path) == []


def test_order_captions_that_are_not_strings_name_the_item(coco, tmp_path, capfd):
    edit_items(coco / "coco_karpathy_test.json", lambda items: items[1]["caption"].append(None))
    refused(
        capfd,
        ["build", "--coco-dir", str(coco), "--out", str(tmp_path / "aro")],
        "item 1: caption 2 should be a string, not null",
    )


def test_a_file_that_is_not_utf8_is_named(vg, tmp_path, capfd):
    annotations = vg / "visual_genome_relation.json"
    annotations.write_bytes(
        json.dumps([vg_item(0, true_caption="the caf\u00e9 is near the horse")], ensure_ascii=False).encode("latin-1")
    )
    refused(capfd, build_vg(vg, tmp_path / "aro"), f"{annotations} is not UTF-8 text")


# what is kept is counted ------------------------------------------------------------------------------------------


def test_duplicates_long_captions_and_identical_options_are_counted_and_grayscale_images_come_out_rgb(
    vg, coco, tmp_path, capfd
):
    edit_items(vg / "visual_genome_relation.json", lambda items: items.append(dict(items[0])))
    out = tmp_path / "aro"
    assert (
        main(
            [
                "build",
                "--vg-dir",
                str(vg),
                "--coco-dir",
                str(coco),
                "--configs",
                "relation,coco_order",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capfd.readouterr().out
    assert "relation: 1 item(s) repeating an earlier item (kept)" in printed
    assert "coco_order: 1 caption(s) cut to 30 words" in printed
    assert "coco_order: 1 item(s) with an option equal to the true caption" in printed
    card = " ".join((out / "README.md").read_text().split())
    assert "(kept, as in the original): relation: 1, coco_order: 0" in card
    assert "captions cut to 30 words: coco_order: 1" in card
    assert "no shuffle changes the caption: coco_order: 1" in card

    order = load_dataset(str(out), "coco_order", split="test")
    assert [row["caption_options"][0] for row in order][2] == "a a a"
    assert {image.mode for image in order["image"]} == {"RGB"}  # the grayscale JPEG too
    assert Image.open(coco / "val2014" / "0.jpg").mode == "L"


# staging, previous outputs ---------------------------------------------------------------------------------------


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_staging_left_by_a_killed_build_is_removed_and_a_stale_previous_does_not_block_overwrite(vg, tmp_path):
    out = tmp_path / "aro"
    pid = dead_pid()
    (tmp_path / f".aro.staging-{pid}-x1y2").mkdir()
    (tmp_path / f".aro.staging-{pid}-x1y2" / "relation").mkdir()
    (tmp_path / ".aro-previous").mkdir()  # what the earlier naming left behind
    (tmp_path / ".aro-previous" / "README.md").write_text("old")
    assert main(build_vg(vg, out)) == 0
    assert leftovers(tmp_path) == [".aro-previous"]
    (
        tmp_path / f".aro.previous-{pid}-a1b2"
    ).mkdir()  # a previous output whose build was killed after the new one arrived
    assert main(build_vg(vg, out, "--overwrite")) == 0
    assert leftovers(tmp_path) == [".aro-previous"]


def test_a_previous_output_moved_aside_by_a_killed_build_is_put_back(vg, tmp_path, capfd):
    out = tmp_path / "aro"
    assert main(build_vg(vg, out)) == 0
    before = snapshot(out)
    moved = tmp_path / f".aro.previous-{dead_pid()}-z9"
    out.rename(moved)  # killed between moving the old output aside and moving the new one in
    refused(capfd, build_vg(vg, out), "already exists")
    assert snapshot(out) == before and not moved.exists()


def test_a_failed_overwrite_leaves_the_previous_output_byte_identical(vg, tmp_path, capfd):
    out = tmp_path / "aro"
    assert main(build_vg(vg, out)) == 0
    before = snapshot(out)
    (vg / "images" / "3.jpg").write_bytes(b"corrupt")  # found midway, after three items were written
    refused(capfd, build_vg(vg, out, "--overwrite"), "item 3 (")
    assert snapshot(out) == before and leftovers(tmp_path) == []


def test_the_command_line_gives_one_line_and_no_traceback(vg, tmp_path):
    edit_items(vg / "visual_genome_relation.json", lambda items: items[1].update(bbox_w=True))
    command = [sys.executable, "-m", "aro.cli", *build_vg(vg, tmp_path / "aro")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        f"aro build: error: {vg / 'visual_genome_relation.json'}: item 1: bbox_w should be a finite number, not bool true"
    ]
