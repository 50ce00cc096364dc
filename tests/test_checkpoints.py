"""Checkpoints: a save killed at any point leaves nothing that resumes, resume from the last complete one is
bitwise exact, and checkpoints of another run or holding pickle files are refused with one line."""

import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest
from conftest import refused
from safetensors.torch import load_file
from test_training_outputs import tree
from transformers import BertConfig

from aro.cli import main
from aro.core.io import write_manifest
from aro.models.negclip.checkpointing import (
    MARKER,
    STATE_FILE,
    CheckpointError,
    latest_checkpoint,
    verify_checkpoint,
)

# Run `aro train` in a fresh process that SIGKILLs itself at one point of the save of step 4 (the second save).
KILLER = """
import os, signal, sys
point = sys.argv[1]
real_fsync, real_replace = os.fsync, os.replace

def fsync(descriptor):
    path = os.readlink(f"/proc/self/fd/{descriptor}")
    at_marker = point == "marker" and path.endswith("checkpoint.json")
    if ".step-4.partial" in path and (point == "first-sync" or at_marker):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_fsync(descriptor)

def replace(source, target):
    if point == "rename" and str(source).endswith(".step-4.partial"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(source, target)

os.fsync, os.replace = fsync, replace
from aro.cli import main
sys.exit(main(sys.argv[2:]))
"""

# Every caption row per epoch (not the recipe's one caption per image), so that one epoch holds the four steps.
RUN = dict(batch_size=8, epochs=1, save_every=2, epoch_rows="captions")


@pytest.fixture(scope="module")
def mining_cache(train_argv, tmp_path_factory):
    """The negatives, mined once for the module (a two-step run mines them on first use)."""
    folder = tmp_path_factory.mktemp("mined")
    assert (
        main(
            train_argv(folder / "run", max_steps=1, mining_cache=folder / "mining.parquet", **{**RUN, "save_every": 1})
        )
        == 0
    )
    return folder / "mining.parquet"


@pytest.fixture(scope="module")
def whole(train_argv, mining_cache, tmp_path_factory):
    """Four steps without interruption, the run that every resumed run must equal."""
    folder = tmp_path_factory.mktemp("whole") / "run"
    assert main(train_argv(folder, max_steps=4, mining_cache=mining_cache, **RUN)) == 0
    return folder


def _killed_run(point, train_argv, mining_cache, tmp_path):
    """A four-step run killed at `point` of its save of step 4; checks what it leaves and returns its folder."""
    output = tmp_path / "run"
    command = train_argv(output, max_steps=4, mining_cache=mining_cache, **RUN)
    environment = os.environ | {"HF_DATASETS_CACHE": str(tmp_path / "cache")}
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, point, *command], capture_output=True, text=True, env=environment, timeout=600
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    checkpoints = output / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == [".step-4.partial", "step-2"]
    with pytest.raises(CheckpointError, match="never finished"):
        verify_checkpoint(checkpoints / ".step-4.partial")
    assert latest_checkpoint(checkpoints) == checkpoints / "step-2"
    return output


@pytest.mark.parametrize("point", ["first-sync", "marker"])
def test_a_save_killed_before_its_rename_leaves_no_checkpoint_that_resumes(point, train_argv, mining_cache, tmp_path):
    _killed_run(point, train_argv, mining_cache, tmp_path)


def test_resuming_the_latest_complete_checkpoint_after_a_kill_is_bitwise_exact(
    train_argv, mining_cache, whole, tmp_path
):
    output = _killed_run("rename", train_argv, mining_cache, tmp_path)
    assert main(train_argv(output, max_steps=4, mining_cache=mining_cache, resume_from="latest", **RUN)) == 0
    expected, actual = load_file(whole / "model.safetensors"), load_file(output / "model.safetensors")
    assert all(actual[name].equal(expected[name]) for name in expected)
    # The killed run's rows after step 2 were flushed, then dropped on resume and written again.
    assert (output / "log.csv").read_text() == (whole / "log.csv").read_text()
    assert not (output / "checkpoints" / ".step-4.partial").exists()


def _damaged_copy(whole, tmp_path, damage) -> str:
    copy = tmp_path / "step-4"
    shutil.copytree(whole / "checkpoints" / "step-4", copy)
    damage(copy)
    return str(copy)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _recorded(damage):
    """`damage`, then the completeness record rewritten to match: what a record cannot catch, loading must."""

    def damage_and_record(folder):
        damage(folder)
        write_manifest(folder, MARKER)

    return damage_and_record


def _bert_config(folder):
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(folder)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda folder: (folder / MARKER).unlink(), f"incomplete: it has no {MARKER}"),
        (lambda folder: (folder / "rng-0.safetensors").unlink(), "rng-0.safetensors (missing)"),
        (lambda folder: _truncate(folder / "optimizer.safetensors"), "optimizer.safetensors (changed since written)"),
        (lambda folder: _truncate(folder / "model.safetensors"), "model.safetensors (changed since written)"),
        (lambda folder: _truncate(folder / MARKER), f"its {MARKER} is not a record of its files"),
        (_recorded(lambda folder: _truncate(folder / "model.safetensors")), "cannot load its weights"),
        (_recorded(lambda folder: (folder / STATE_FILE).write_text("garbage")), f"its {STATE_FILE} cannot be read"),
        (_recorded(lambda folder: (folder / STATE_FILE).write_text("[]")), f"its {STATE_FILE} is not a training state"),
        (_recorded(lambda folder: (folder / "optimizer.json").write_text("{}")), "its optimizer state cannot be"),
        (_recorded(_bert_config), "is a bert model, not a CLIP"),
    ],
)
def test_a_damaged_checkpoint_is_refused_in_one_line_naming_the_fault(
    damage, message, train_argv, mining_cache, whole, tmp_path, capfd
):
    resume_from = _damaged_copy(whole, tmp_path, damage)
    before = tree(tmp_path)
    argv = train_argv(tmp_path / "run", max_steps=4, mining_cache=mining_cache, resume_from=resume_from, **RUN)
    line = refused(capfd, [str(word) for word in argv], message)
    assert resume_from in line and tree(tmp_path) == before


class _Payload:
    def __reduce__(self):
        return (open, (os.environ["ARO_TEST_PWNED"], "w"))


def test_a_checkpoint_with_pickle_files_is_refused_without_unpickling(
    train_argv, mining_cache, whole, tmp_path, capsys, monkeypatch
):
    pwned = tmp_path / "pwned"
    monkeypatch.setenv("ARO_TEST_PWNED", str(pwned))
    resume_from = _damaged_copy(
        whole, tmp_path, lambda folder: (folder / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Payload()))
    )
    assert (
        main(train_argv(tmp_path / "run", max_steps=4, mining_cache=mining_cache, resume_from=resume_from, **RUN)) == 2
    )
    assert "holds pickle files (custom_checkpoint_0.pkl)" in capsys.readouterr().err
    assert not pwned.exists()


@pytest.mark.parametrize(
    "change, difference",
    [
        (dict(batch_size=4), "settings.batch_size: 8 -> 4"),
        (dict(split="test", mining_cache="unused.parquet"), "dataset.split: 'train' -> 'test'"),
        (dict(negatives_per_caption=2, mining_cache="unused.parquet"), "mining.negatives_per_caption: 3 -> 2"),
    ],
)
def test_resuming_another_run_is_refused_saying_what_differs(
    change, difference, train_argv, mining_cache, whole, tmp_path, capsys
):
    settings = RUN | dict(max_steps=4, mining_cache=mining_cache, resume_from=whole / "checkpoints" / "step-2") | change
    settings["mining_cache"] = (
        tmp_path / settings["mining_cache"]
        if settings["mining_cache"] == "unused.parquet"
        else settings["mining_cache"]
    )
    assert main(train_argv(tmp_path / "run", **settings)) == 2
    error = capsys.readouterr().err
    assert difference in error and "--resume-allow-changes" in error
    assert not (tmp_path / "unused.parquet").exists()  # refused before mining


def test_an_allowed_change_of_batch_size_resumes_from_the_same_row_of_the_epoch(
    train_argv, mining_cache, whole, tmp_path
):
    settings = RUN | dict(
        batch_size=4,
        max_steps=4,
        mining_cache=mining_cache,
        resume_from=whole / "checkpoints" / "step-2",
        resume_allow_changes=True,
    )
    assert main(train_argv(tmp_path / "run", **settings)) == 0
    state = json.loads((tmp_path / "run" / "training_state.json").read_text())
    # Step 2 at 8 rows a step had used 16 rows of the epoch; two more steps of 4 rows make 24, in the same epoch.
    assert (state["step"], state["epoch"], state["rows_in_epoch"]) == (4, 0, 24)


def test_the_latest_checkpoint_is_never_a_hidden_leftover(whole, tmp_path):
    """`replace_folder` moves a replaced `step-N` aside as `.step-N.previous-<pid>-<random>`; a kill can leave it,
    complete, and its random part may be all digits."""
    folder = shutil.copytree(whole / "checkpoints", tmp_path / "checkpoints")
    shutil.copytree(folder / "step-4", folder / ".step-9.previous-123-45678901")
    shutil.copytree(folder / "step-4", folder / ".step-8.partial")
    assert latest_checkpoint(folder) == folder / "step-4"
    with pytest.raises(CheckpointError, match="never finished"):
        verify_checkpoint(folder / ".step-9.previous-123-45678901")


def test_a_fresh_run_into_an_earlier_runs_folder_is_refused_and_left_as_it_was(train_argv, mining_cache, whole, capfd):
    before = tree(whole)
    argv = [str(word) for word in train_argv(whole, max_steps=4, mining_cache=mining_cache, **RUN)]
    refused(capfd, argv, f"--output-dir {whole} holds an earlier aro train run: continue it with --resume-from latest")
    assert tree(whole) == before
