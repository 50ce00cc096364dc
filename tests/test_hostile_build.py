"""`aro build` against hostile inputs: each case is refused with one line naming the item or file (exit 2, no
traceback), or counted, and leaves the sources and any earlier output byte-identical."""

import errno
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
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


@pytest.mark.parametrize(
    ("where", "message"),
    [("equal", "is an input of this run"), ("inside", "lies inside the input"), ("containing", "holds the input")],
)
def test_an_output_overlapping_a_source_folder_is_refused_before_anything_is_written(
    vg, tmp_path, capfd, where, message
):
    out = {"equal": vg, "inside": vg / "images" / "aro", "containing": tmp_path}[where]
    before = snapshot(tmp_path)
    refused(capfd, build_vg(vg, out, "--overwrite"), message)
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
    skipped = json.loads((tmp_path / "aro" / "skipped.json").read_text())
    assert [(entry["item"], entry["image"], entry["problem"].split(":")[0]) for entry in skipped] == [
        (1, "bomb.png", "image too large")
    ]
    assert "--max-image-pixels" in skipped[0]["problem"]


def test_the_pixel_limit_can_be_lowered_and_raised(vg, tmp_path, capfd):
    refused(capfd, build_vg(vg, tmp_path / "aro", "--max-image-pixels", "1000"), "48x40 pixels, over the limit of 1000")
    assert main(build_vg(vg, tmp_path / "aro", "--max-image-pixels", "1920")) == 0


# images that cannot be used faithfully ------------------------------------------------------------------------------


def float_image(path: Path) -> str:
    Image.fromarray(np.linspace(0, 2, 48 * 40, dtype=np.float32).reshape(40, 48)).save(path)
    return path.name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda vg: {"image_path": float_image(vg / "images" / "float.tif")},
            "float.tif): image is floating point with values from 0 to 2, outside 0 to 1",
        ),
        (lambda vg: {"bbox_x": 48}, "1.jpg): bbox [48, 3, 30, 20] covers no pixel of the 48x40 image"),
        (lambda vg: {"bbox_y": -20}, "1.jpg): bbox [2, -20, 30, 20] covers no pixel of the 48x40 image"),
    ],
)
def test_an_image_out_of_range_or_a_bbox_off_its_image_is_named_and_skippable(vg, tmp_path, capfd, change, message):
    edit_items(vg / "visual_genome_relation.json", lambda items: items[1].update(change(vg)))
    before = snapshot(tmp_path)
    line = refused(capfd, build_vg(vg, tmp_path / "aro"), message)
    assert f"{vg / 'visual_genome_relation.json'}: item 1 ({vg / 'images'}/" in line
    assert snapshot(tmp_path) == before

    assert main(build_vg(vg, tmp_path / "aro", "--skip-missing")) == 0
    skipped = json.loads((tmp_path / "aro" / "skipped.json").read_text())
    assert [entry["item"] for entry in skipped] == [1] and message.split("): ")[1] in skipped[0]["problem"]


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
    annotations = vg / "visual_genome_relation.json"
    assert finished.stderr.strip().splitlines() == [
        f"aro build: error: {annotations}: item 1: bbox_w should be a finite number, not bool true"
    ]


# the user's files are never replaced -------------------------------------------------------------------------------


def test_overwrite_never_replaces_a_folder_of_the_users_files(vg, tmp_path, capfd):
    mine = tmp_path / "project"
    (mine / "src").mkdir(parents=True)
    (mine / "src" / "model.py").write_text("print('mine')\n")
    (mine / ".git").mkdir()
    (mine / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (mine / "notes.md").write_text("results so far\n")
    before = snapshot(tmp_path)
    refused(capfd, build_vg(vg, mine, "--overwrite"), "holds other files than an earlier aro build output")
    assert snapshot(tmp_path) == before


def test_out_dot_holding_a_source_is_refused(vg, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    refused(capfd, build_vg(vg, Path("."), "--overwrite"), "--out . holds the input")
    assert snapshot(tmp_path) == before


def test_a_file_added_to_an_earlier_build_keeps_it_from_being_replaced(vg, tmp_path, capfd):
    out = tmp_path / "aro"
    assert main(build_vg(vg, out)) == 0
    (out / "analysis.ipynb").write_text("{}")
    before = snapshot(tmp_path)
    refused(capfd, build_vg(vg, out, "--overwrite"), "analysis.ipynb (not written by aro)")
    assert snapshot(tmp_path) == before


def test_an_earlier_build_is_replaced_with_overwrite(vg, tmp_path):
    out = tmp_path / "aro"
    assert main(build_vg(vg, out)) == 0
    edit_items(vg / "visual_genome_relation.json", lambda items: items[0].update(relation_name="grazing"))
    assert main(build_vg(vg, out, "--overwrite")) == 0
    assert load_dataset(str(out), "relation", split="test")["relation_name"] == ["grazing"] + ["eating"] * 3
    assert leftovers(tmp_path) == []


def test_the_skipped_list_lies_inside_the_output_and_never_replaces_a_users_file(vg, tmp_path):
    out = tmp_path / "aro"
    beside = tmp_path / "aro.skipped.json"  # where earlier versions wrote it: now the user's own file
    beside.write_text("my list")
    (vg / "images" / "2.jpg").write_bytes(b"not an image")
    assert main(build_vg(vg, out, "--skip-missing")) == 0
    skipped = json.loads((out / "skipped.json").read_text())
    assert skipped == [
        {
            "config": "relation",
            "item": 2,
            "image": "2.jpg",
            "problem": "image unreadable: not an image file Pillow can read",
        }
    ]
    card = " ".join((out / "README.md").read_text().split())
    assert "not under their bbox: 1 (listed in `skipped.json`)" in card
    save(draw(2), vg / "images" / "2.jpg", "RGB")
    assert main(build_vg(vg, out, "--overwrite")) == 0
    assert not (out / "skipped.json").exists()  # the earlier list described another dataset
    assert beside.read_text() == "my list"


# what used to end in a traceback ----------------------------------------------------------------------------------


def test_json_nested_too_deeply_is_named(vg, tmp_path, capfd):
    annotations = vg / "visual_genome_relation.json"
    annotations.write_text("[" * 100_000 + "]" * 100_000)
    before = snapshot(tmp_path)
    refused(capfd, build_vg(vg, tmp_path / "aro"), f"{annotations} nests JSON arrays or objects too deeply")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("allow", [False, True])
def test_an_image_path_with_a_nul_byte_is_named(vg, tmp_path, capfd, allow):
    edit_items(vg / "visual_genome_relation.json", lambda items: items[1].update(image_path="1\u0000.jpg"))
    before = snapshot(tmp_path)
    extra = ["--allow-outside-source"] if allow else []
    refused(capfd, build_vg(vg, tmp_path / "aro", *extra), "item 1: image_path '1\\x00.jpg' holds a NUL byte")
    assert snapshot(tmp_path) == before


def test_an_output_under_a_file_is_refused(vg, tmp_path, capfd):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    before = snapshot(tmp_path)
    refused(capfd, build_vg(vg, notes / "aro"), f"--out {notes / 'aro'} lies under {notes}, which is a file")
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_an_output_in_a_read_only_folder_is_refused_before_any_work(vg, tmp_path, capfd):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        refused(capfd, build_vg(vg, locked / "aro"), f"{locked} is not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def _raising(error: BaseException):
    def raise_it(*args, **kwargs):
        raise error

    return raise_it


@pytest.mark.parametrize(
    ("boundary", "error", "message"),
    [
        ((pq.ParquetWriter, "write_table"), OSError(errno.ENOSPC, "No space left on device"), "No space left"),
        ((tempfile, "mkdtemp"), OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
    ],
)
def test_a_full_or_read_only_disk_is_one_line_and_the_earlier_build_stays(
    vg, tmp_path, capfd, monkeypatch, boundary, error, message
):
    """The disk is the library's boundary (pyarrow writing a shard, the staging folder being made)."""
    out = tmp_path / "aro"
    assert main(build_vg(vg, out)) == 0
    before = snapshot(tmp_path)
    monkeypatch.setattr(*boundary, _raising(error))
    refused(capfd, build_vg(vg, out, "--overwrite"), f"{out} could not be written ({message}")
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


def test_ctrl_c_during_a_build_is_one_line_and_the_earlier_build_stays(vg, tmp_path, capfd, monkeypatch):
    out = tmp_path / "aro"
    assert main(build_vg(vg, out)) == 0
    before = snapshot(tmp_path)
    capfd.readouterr()
    monkeypatch.setattr(pq.ParquetWriter, "write_table", _raising(KeyboardInterrupt()))
    assert main(build_vg(vg, out, "--overwrite")) == 130
    err = capfd.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("aro build:")] == [
        "aro build: stopped (Ctrl-C); nothing was replaced, an earlier output is as it was"
    ]
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


def test_ctrl_c_in_a_terminal_stops_the_build_and_its_workers_quietly(vg, tmp_path):
    """SIGINT to the whole process group, as a terminal sends it: the workers too receive it."""
    out = tmp_path / "aro"
    assert main(build_vg(vg, out)) == 0
    edit_items(vg / "visual_genome_relation.json", lambda items: items.extend(items * 5000))  # 20,004 crops
    before = snapshot(tmp_path)
    command = [sys.executable, "-m", "aro.cli", *build_vg(vg, out, "--overwrite", "--num-workers", "2")]
    with tempfile.TemporaryFile("w+") as stderr:

        def err() -> str:
            stderr.seek(0)
            return stderr.read()

        # A terminal's shell starts the command with Ctrl-C on; pytest-xdist's workers ignore SIGINT, which a child
        # would inherit.
        build = subprocess.Popen(
            command,
            stderr=stderr,
            text=True,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            deadline = time.monotonic() + 120
            while "relation crops:" not in err() and build.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            os.killpg(build.pid, signal.SIGINT)  # the workers are cropping
            build.wait(timeout=60)  # workers that caught Ctrl-C themselves can leave the pool hanging
        finally:
            if build.poll() is None:
                os.killpg(build.pid, signal.SIGKILL)
        err = err()
    assert build.returncode == 130, err
    assert [line for line in err.splitlines() if line.startswith("aro build:")] == [
        "aro build: stopped (Ctrl-C); nothing was replaced, an earlier output is as it was"
    ]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []
