"""The output rule of `aro.core.io`, on real folders: what is replaced, what is refused, what survives a failure."""

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from aro.core.errors import AroError, OutputRefused
from aro.core.io import (
    MARKER,
    check_output_file,
    check_output_folder,
    fingerprint,
    output_folder,
    replace_folder,
    sha256_of,
    staged_file,
)


def tree(folder):
    """Every file below `folder` with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def write_eval(out, text="first", inputs=()):
    with output_folder(out, "aro eval", inputs=inputs) as staging:
        (staging / "results.json").write_text(text)
        (staging / "plots").mkdir()
        (staging / "plots" / "relation.png").write_bytes(b"png " + text.encode())


def test_a_new_folder_is_written_with_a_marker_listing_every_file(tmp_path):
    write_eval(tmp_path / "eval")
    record = json.loads((tmp_path / "eval" / MARKER).read_text())
    assert record["written_by"] == "aro eval"
    assert record["files"] == {
        "plots/relation.png": {"bytes": 9, "sha256": hashlib.sha256(b"png first").hexdigest()},
        "results.json": {"bytes": 5, "sha256": hashlib.sha256(b"first").hexdigest()},
    }
    assert sorted(path.name for path in tmp_path.iterdir()) == ["eval"]  # nothing left beside it


def test_an_earlier_output_of_the_same_command_is_replaced_whole(tmp_path):
    write_eval(tmp_path / "eval", "first")
    with output_folder(tmp_path / "eval", "aro eval") as staging:
        (staging / "results.json").write_text("second")
    assert tree(tmp_path / "eval").keys() == {"results.json", MARKER}  # the old plot is gone, not merged
    assert (tmp_path / "eval" / "results.json").read_text() == "second"


@pytest.mark.parametrize(
    "spoil, named",
    [
        (lambda out: (out / "notebook.ipynb").write_text("{}"), "notebook.ipynb (not written by aro)"),
        (lambda out: (out / "results.json").write_text("edited"), "results.json (changed since written)"),
        (lambda out: (out / "plots" / "relation.png").unlink(), "plots/relation.png (missing)"),
    ],
)
def test_an_earlier_output_that_is_not_only_ours_is_refused_and_kept(tmp_path, spoil, named):
    write_eval(tmp_path / "eval")
    spoil(tmp_path / "eval")
    before = tree(tmp_path / "eval")
    with pytest.raises(OutputRefused, match=named.replace("(", r"\(").replace(")", r"\)")):
        write_eval(tmp_path / "eval", "second")
    assert tree(tmp_path / "eval") == before


def test_a_folder_without_the_marker_is_refused_before_the_block_runs(tmp_path):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "results.json").write_text("mine")
    (project / ".git").mkdir()
    ran = []
    with pytest.raises(OutputRefused, match="holds other files than an earlier aro eval output"):
        with output_folder(project, "aro eval"):
            ran.append(True)
    assert not ran and tree(project) == {"results.json": b"mine"} and (project / ".git").is_dir()


def test_another_commands_output_and_a_replace_not_asked_for_are_refused(tmp_path):
    write_eval(tmp_path / "eval")
    with pytest.raises(OutputRefused, match="output of aro eval, not of aro build"):
        with output_folder(tmp_path / "eval", "aro build", replace=True):
            pass
    with pytest.raises(OutputRefused, match="--overwrite"):
        with output_folder(tmp_path / "eval", "aro eval", replace=False):
            pass


def test_an_empty_folder_is_used(tmp_path):
    (tmp_path / "eval").mkdir()
    write_eval(tmp_path / "eval")
    assert (tmp_path / "eval" / "results.json").read_text() == "first"


@pytest.mark.parametrize("out", [".", "data", "data/inner"])
def test_an_output_that_is_holds_or_lies_in_an_input_is_refused(tmp_path, monkeypatch, out):
    (tmp_path / "data" / "inner").mkdir(parents=True)
    (tmp_path / "data" / "inner" / "x.parquet").write_bytes(b"rows")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputRefused, match="input"):
        write_eval(tmp_path / out, inputs=["data", "ORG/not-a-local-path"])
    assert tree(tmp_path / "data") == {"inner/x.parquet": b"rows"}


def test_a_failure_leaves_the_earlier_output_and_nothing_beside_it(tmp_path):
    write_eval(tmp_path / "eval", "first")
    before = tree(tmp_path / "eval")
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with output_folder(tmp_path / "eval", "aro eval") as staging:
                (staging / "results.json").write_text("half")
                raise error
    assert tree(tmp_path / "eval") == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["eval"]


def test_what_a_killed_run_left_is_cleaned_and_a_moved_aside_output_put_back(tmp_path):
    dead = 2**22 + 12345  # above the kernel's default pid_max: no such process
    (tmp_path / f".eval.staging-{dead}-abc").mkdir()
    write_eval(tmp_path / "earlier", "kept")
    (tmp_path / "earlier").rename(tmp_path / f".eval.previous-{dead}-def")  # moved aside, never replaced
    alive = tmp_path / f".eval.staging-{os.getpid()}-ghi"
    alive.mkdir()
    with pytest.raises(OutputRefused, match="--overwrite"):  # the earlier output is back, and protected as ever
        with output_folder(tmp_path / "eval", "aro eval", replace=False):
            pass
    assert (tmp_path / "eval" / "results.json").read_text() == "kept"
    assert sorted(path.name for path in tmp_path.iterdir()) == [alive.name, "eval"]


def test_replace_folder_swaps_whole_folders(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "old").write_text("old")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "fresh").write_text("fresh")
    replace_folder(tmp_path / "new", tmp_path / "target")
    assert tree(tmp_path / "target") == {"fresh": b"fresh"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["target"]


def test_a_folder_that_cannot_be_moved_aside_is_left_in_place_with_nothing_beside_it(tmp_path, monkeypatch):
    write_eval(tmp_path / "eval", "first")
    before = tree(tmp_path / "eval")

    def cross_device(source, destination):  # what os.replace says when the two lie on different filesystems
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(source))

    monkeypatch.setattr(os, "replace", cross_device)
    with pytest.raises(OSError, match="cross-device"):
        write_eval(tmp_path / "eval", "second")
    assert tree(tmp_path / "eval") == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["eval"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device that is always full")
def test_a_full_disk_is_one_line_and_the_earlier_output_stays(tmp_path):
    write_eval(tmp_path / "eval", "first")
    before = tree(tmp_path / "eval")
    for stage in (output_folder(tmp_path / "eval", "aro eval"), staged_file(tmp_path / "eval" / "results.json")):
        with pytest.raises(OutputRefused, match=r"could not be written \(No space left on device\)"):
            with stage, open("/dev/full", "w") as full:
                full.write("x" * 10_000)
                full.flush()  # ENOSPC, as a write to a full disk
    assert tree(tmp_path / "eval") == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["eval"]


def test_an_input_that_cannot_be_read_is_not_reported_as_an_output_error(tmp_path):
    with pytest.raises(PermissionError):
        with output_folder(tmp_path / "eval", "aro eval"):
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "sources" / "image.jpg"))
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_an_output_under_a_file_is_refused_before_any_work(tmp_path, kind):
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "notes.txt" / "deeper" / "out"
    with pytest.raises(OutputRefused, match="lies under .*notes.txt, which is a file"):
        if kind == "folder":
            check_output_folder(out, "aro eval")
        else:
            check_output_file(out, [], lambda path: True, "a table")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_file_outputs_replace_only_their_own_kind_and_never_an_input(tmp_path):
    ours = tmp_path / "mined.parquet"
    ours.write_bytes(b"OURS")
    training = tmp_path / "train.parquet"
    training.write_bytes(b"training rows")

    def is_ours(path):
        return path.read_bytes().startswith(b"OURS")

    check_output_file(ours, [training], is_ours, "a mining cache")
    with pytest.raises(OutputRefused, match="is an input"):
        check_output_file(training, [training], is_ours, "a mining cache")
    with pytest.raises(OutputRefused, match="is not a mining cache"):
        check_output_file(training, [], is_ours, "a mining cache")
    with pytest.raises(OutputRefused, match="is a folder"):
        check_output_file(tmp_path, [], is_ours, "a mining cache")
    assert training.read_bytes() == b"training rows"

    with pytest.raises(KeyboardInterrupt):
        with staged_file(ours) as partial:
            partial.write_bytes(b"OURS half")
            raise KeyboardInterrupt
    assert ours.read_bytes() == b"OURS" and sorted(path.name for path in tmp_path.iterdir()) == [
        "mined.parquet",
        "train.parquet",
    ]
    with staged_file(ours) as partial:
        partial.write_bytes(b"OURS new")
    assert ours.read_bytes() == b"OURS new"


def test_hashes_read_files_in_blocks_and_equal_hashlib(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # spans several blocks and a partial one
    (tmp_path / "big").write_bytes(data)
    assert sha256_of(tmp_path / "big") == hashlib.sha256(data).hexdigest()
    assert fingerprint(tmp_path / "big") == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_refusals_are_user_errors():
    assert issubclass(OutputRefused, AroError) and issubclass(OutputRefused, FileExistsError)
