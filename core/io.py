"""Where aro writes: the one rule for outputs, atomic writes, file fingerprints and Hub uploads.

The rule, for every command that writes:

- An existing output is replaced only when it is recognisably this command's: a folder holding the marker
  `.aro-output.json` that the same command wrote, with every file in it listed there, unchanged. A folder holding
  anything else (a notebook added beside the results, an edited table, a dataset, a model, a source tree, `.git`)
  is refused in one line that names what is in the way; an empty folder holds nothing to lose.
- An output is never one of the run's inputs, nor inside one, nor holds one: `--out .` beside the dataset it reads,
  `--out` the training Parquet, `--output-dir` the dataset folder are all refused before any work.
- Nothing is left half-written: a folder is built beside its target and moved into place when complete; a file is
  written beside its target and renamed over it. A failure or Ctrl-C leaves the previous output as it was, and the
  next run cleans what a killed one left behind.

>>> with output_folder("eval", command="aro eval", inputs=["aro"]) as staging:  # doctest: +SKIP
...     (staging / "results.json").write_text("{}")
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .errors import AroError, InvalidInput, OutputRefused

MARKER = ".aro-output.json"
SHOWN_PATHS = 3  # paths named in a refusal; the rest are counted


def sha256_of_blocks(blocks: Iterable[bytes]) -> str:
    """The SHA-256 of the bytes of `blocks` one after the other: a file read in parts, or records in memory."""
    digest = hashlib.sha256()
    for block in blocks:
        digest.update(block)
    return digest.hexdigest()


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks (checkpoints and datasets can be gigabytes)."""
    with open(path, "rb") as file:
        return sha256_of_blocks(iter(lambda: file.read(1 << 20), b""))


def fingerprint(path: str | Path) -> dict:
    """A file's size and SHA-256: what a manifest records to tell later whether the file is unchanged."""
    return {"bytes": Path(path).stat().st_size, "sha256": sha256_of(path)}


def files_below(folder: Path) -> list[Path]:
    """Every file under `folder` (links included, not followed), relative to it, in path order."""
    return sorted(path.relative_to(folder) for path in folder.rglob("*") if path.is_file() or path.is_symlink())


def write_manifest(folder: Path, marker: str, **fields) -> dict:
    """Write `marker` into `folder`: `fields` and the fingerprint of every other file below it. Written last, it
    is the folder's completeness record (`verify_manifest` checks it)."""
    files = {str(path): fingerprint(folder / path) for path in files_below(folder) if str(path) != marker}
    record = {**fields, "files": files}
    (folder / marker).write_text(json.dumps(record, indent=1))
    return record


def manifest_differences(folder: Path, marker: str) -> list[str]:
    """What in `folder` its `marker` does not account for: files added, missing or changed since it was written
    (empty when the folder is exactly as recorded)."""
    record = json.loads((folder / marker).read_text())["files"]
    present = {str(path) for path in files_below(folder)} - {marker}
    added = sorted(present - set(record))
    missing = sorted(set(record) - present)
    changed = sorted(name for name in set(record) & present if fingerprint(folder / name) != record[name])
    return (
        [f"{name} (not written by aro)" for name in added]
        + [f"{name} (missing)" for name in missing]
        + [f"{name} (changed since written)" for name in changed]
    )


def _named(paths: list[str]) -> str:
    shown = ", ".join(paths[:SHOWN_PATHS])
    return shown + (f" and {len(paths) - SHOWN_PATHS} more" if len(paths) > SHOWN_PATHS else "")


def _marker_of(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) else None


def check_not_an_input(out: str | Path, inputs: Iterable[object], option: str = "--out") -> None:
    """Refuse an output that is one of `inputs` (the paths among them that exist locally), lies inside one, or holds
    one."""
    target = Path(out).expanduser().resolve()
    for source in inputs:
        if not isinstance(source, (str, os.PathLike)) or not Path(source).expanduser().exists():
            continue  # a Hub id, an object in memory, or nothing given
        resolved = Path(source).expanduser().resolve()
        if target == resolved:
            raise OutputRefused(f"{option} {out} is an input of this run ({source}): choose another output")
        if target.is_relative_to(resolved) or resolved.is_relative_to(target):
            where = "lies inside" if target.is_relative_to(resolved) else "holds"
            raise OutputRefused(f"{option} {out} {where} the input {source}: choose an output apart from the inputs")


def check_output_parent(out: str | Path, option: str = "--out") -> None:
    """Refuse, before any work, an output that cannot be made: one under a file, or in a folder this process may not
    write to."""
    parent = Path(out).expanduser().absolute().parent
    while not parent.exists():  # the folders that are missing are made; the first one that exists must allow it
        parent = parent.parent
    if not parent.is_dir():
        raise OutputRefused(f"{option} {out} lies under {parent}, which is a file: choose an output elsewhere")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputRefused(f"{option} {out} cannot be made: {parent} is not writable by you")


def check_output_folder(
    out: str | Path, command: str, inputs: Iterable[object] = (), replace: bool = True, option: str = "--out"
) -> None:
    """Refuse, before any work, a folder output that `output_folder` would not write: a file, an input (or inside or
    around one), or an existing folder that is not exactly an earlier output of `command` (`replace=False`: any
    existing, non-empty folder)."""
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputRefused(f"{option} {out} is a file, not a folder: choose another output folder")
    check_output_parent(out, option)
    check_not_an_input(folder, inputs, option)
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    record = _marker_of(folder)
    if record is None:
        found = _named(sorted(path.name for path in folder.iterdir()))
        raise OutputRefused(
            f"{option} {out} already exists and holds other files than an earlier {command} output ({found}): "
            "choose a new or empty folder"
        )
    if record.get("written_by") != command:
        raise OutputRefused(
            f"{option} {out} is the output of {record.get('written_by')}, not of {command}: choose another folder"
        )
    if not replace:
        raise OutputRefused(
            f"{option} {out} already exists (an earlier {command} output): pass --overwrite to replace it"
        )
    differences = manifest_differences(folder, MARKER)
    if differences:
        raise OutputRefused(
            f"{option} {out} holds an earlier {command} output, but not only what it wrote ({_named(differences)}): "
            "move those files out or choose another folder; nothing was replaced"
        )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _beside(target: Path, kind: str) -> Path:
    """A new empty folder beside `target`, named after the process that owns it so that a later run can tell
    whether it was left behind."""
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-{os.getpid()}-", dir=target.parent))


def clean_leftovers(target: Path) -> None:
    """Remove what a killed run left beside `target`: its staging folder, and the previous output it had moved
    aside (put back where the new one never arrived). What runs still alive left is theirs."""
    prefix = f".{target.name}."
    for leftover in sorted(path for path in target.parent.iterdir() if path.name.startswith(prefix)):
        kind, pid, *_ = leftover.name[len(prefix) :].split("-") + ["", ""]
        if kind not in ("staging", "previous") or not pid.isdigit() or _process_alive(int(pid)):
            continue
        if kind == "previous" and not target.exists():
            leftover.rename(target)
        elif leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def sync(path: Path) -> None:
    """Force `path` (a file, or a folder's entries) to disk, so that a rename never lands before the data."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# What the disk answers when an output cannot be written: full, over quota, too large, read-only; and, for a path
# of the output itself, not permitted.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
PERMISSION_ERRORS = {errno.EACCES, errno.EPERM}


def _is_output_path(error: OSError, target: Path) -> bool:
    """Whether `error` names `target`, a path inside it, or what is staged beside it (not an input)."""
    if error.filename is None:
        return False
    path = Path(os.fsdecode(error.filename)).absolute()
    return path.is_relative_to(target) or any(part.startswith(f".{target.name}.") for part in path.parts)


@contextmanager
def write_errors_named(target: Path) -> Iterator[None]:
    """Turn the disk's refusal to write `target` (or what is staged beside it) into one line; an error reading an
    input is left as it is."""
    try:
        yield
    except AroError:
        raise  # some are OSErrors too (a missing input), already named
    except OSError as error:
        if not (error.errno in DISK_ERRORS or (error.errno in PERMISSION_ERRORS and _is_output_path(error, target))):
            raise
        raise OutputRefused(
            f"{target} could not be written ({error.strerror}): nothing was replaced, an earlier output is as it was"
        ) from None


def replace_folder(staging: Path, target: Path) -> None:
    """Move the complete folder `staging` to `target`, replacing the folder there; at every moment one of the two
    is whole at `target` or (after a kill) beside it, where `clean_leftovers` puts it back."""
    if target.exists():
        previous = _beside(target, "previous")
        try:
            os.replace(target, previous)  # onto the empty folder just made
        except OSError:
            previous.rmdir()
            raise
        os.replace(staging, target)
        shutil.rmtree(previous)
    else:
        os.replace(staging, target)
    sync(target.parent)


@contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty folder beside `target`; it replaces `target` when the block completes, and is removed, with
    `target` left as it was, when the block raises (Ctrl-C included). Checks are the caller's (`output_folder`)."""
    target = Path(target).expanduser().resolve()
    with write_errors_named(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(target)
        staging = _beside(target, "staging")
        try:
            yield staging
            os.chmod(staging, 0o755)
            replace_folder(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


@contextmanager
def output_folder(
    out: str | Path, command: str, inputs: Iterable[object] = (), replace: bool = True, option: str = "--out"
) -> Iterator[Path]:
    """Write a command's output folder by the rule above: checked first (`check_output_folder`), written into an
    empty folder beside `out`, marked as `command`'s with every file's fingerprint, then moved into place."""
    target = Path(out).expanduser().resolve()
    if target.parent.is_dir():
        clean_leftovers(target)  # first: a killed run's previous output goes back in place, then faces the check
    check_output_folder(out, command, inputs, replace, option)
    with staged_folder(out) as staging:
        yield staging
        write_manifest(staging, MARKER, written_by=command)


def is_output_of(folder: str | Path, command: str) -> bool:
    """Whether `folder` holds the marker of an output `command` wrote (whatever was added to it since)."""
    record = _marker_of(Path(folder))
    return record is not None and record.get("written_by") == command


@contextmanager
def staged_file(target: str | Path) -> Iterator[Path]:
    """Yield a path beside `target` to write one file to; it is renamed over `target` when the block completes, and
    removed when it raises. Checks are the caller's (`check_output_file`)."""
    target = Path(target).expanduser().resolve()
    with write_errors_named(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(target)
        descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.staging-{os.getpid()}-", dir=target.parent)
        os.close(descriptor)
        partial = Path(name)
        try:
            yield partial
            sync(partial)
            os.replace(partial, target)
            sync(target.parent)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


def check_output_file(out: str | Path, inputs: Iterable[object], is_ours, what: str, option: str = "--out") -> None:
    """Refuse a file output that is a folder, one of the run's `inputs`, or an existing file that `is_ours(path)`
    does not recognise as an earlier output of the same kind (`what` names that kind in the message)."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise OutputRefused(f"{option} {out} is a folder; the output is one file ({what})")
    check_output_parent(out, option)
    check_not_an_input(path, inputs, option)
    if path.exists() and not is_ours(path):
        raise OutputRefused(f"{option} {out} exists and is not {what}: choose another file name; nothing was replaced")


def repo_id_problem(repo_id: str) -> str | None:
    """What is wrong with `repo_id` as a Hub repo id (ORG/NAME), or None."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        reason = str(error).split(". ")[0]  # huggingface_hub's first sentence says what is wrong
        return f"{repo_id!r} is not a Hub repo id (ORG/NAME): {reason}"
    return None


def check_repo_id(repo_id: str, option: str) -> None:
    """Refuse a malformed `repo_id` in one line naming `option`, before any work, so that a long run does not fail
    at its upload."""
    problem = repo_id_problem(repo_id)
    if problem:
        raise InvalidInput(f"{option} {problem}")


def push_folder(
    folder: str | Path,
    repo_id: str,
    repo_type: str = "model",
    private: bool = False,
    commit_message: str | None = None,
    ignore_patterns: list[str] | None = None,
    space_sdk: str | None = None,
) -> str:
    """Create the Hub repo `repo_id` (if it does not exist) and upload `folder` to it, without the output marker
    (a local record); return the repo's URL."""
    from huggingface_hub import HfApi  # here: its HTTP stack takes 0.15 s to import, and `aro --help` imports core

    check_repo_id(repo_id, "repo")
    api = HfApi()
    sdk = {"space_sdk": space_sdk} if space_sdk else {}
    url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **sdk)
    api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type=repo_type,
        commit_message=commit_message,
        ignore_patterns=[MARKER, *(ignore_patterns or [])],
    )
    return str(url)
