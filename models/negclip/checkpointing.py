"""Checkpoints that a kill cannot leave half-written, and that resume only into the run they were made by.

A checkpoint is a folder (`<output_dir>/checkpoints/step-N`) holding, in safetensors and JSON only:

- the model and processor, as `save_pretrained` writes them (`model.safetensors`, `config.json`, ...); with LoRA the
  merged weights, and the adapters with the base weights under them in `lora.json` / `lora.safetensors` (`lora.py`);
- `optimizer`, `scheduler` and (fp16) `scaler`: each state dict as `<name>.json`, its tensors in `<name>.safetensors`;
- `rng-<process>`: each process's torch, CUDA, Python and NumPy generator states, stored the same way;
- `training_state.json`: where the run stands (`step`, `epoch`, `rows_in_epoch`) and what run it is (`identity`:
  settings, world size, dataset fingerprint, mining parameters), which `--resume-from` compares with the new run;
- `checkpoint.json`, written last: the size and SHA-256 of every other file. It is the completeness marker.

Every file is written into `.step-N.partial` beside the target (one name every process knows), synced to disk, and
the folder is moved into place by `aro.core.io.replace_folder`, so a kill at any moment leaves either no `step-N` or
a complete one (a replaced `step-N` is moved aside as a hidden folder and put back by the next save). Loading reads
JSON and safetensors alone: nothing is unpickled, so a crafted checkpoint cannot run code (accelerate's
`load_state` unpickles custom objects).

>>> save_checkpoint(directory, accelerator, model, processor, optimizer, scheduler, state)  # doctest: +SKIP
>>> state = load_checkpoint(latest_checkpoint(directory.parent), accelerator, optimizer, scheduler)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aro.core.errors import InvalidInput, MissingInput
from aro.core.io import clean_leftovers, files_below, manifest_differences, replace_folder, sync, write_manifest

from .loading import reason_of
from .lora import has_lora, merged_model, save_lora

MARKER = "checkpoint.json"
STATE_FILE = "training_state.json"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth")


class CheckpointError(InvalidInput):
    """A checkpoint that must not be resumed from: incomplete, altered, pickled, or from another run."""


def save_checkpoint(directory: Path, accelerator, model, processor, optimizer, scheduler, state: dict) -> Path:
    """Write a checkpoint of the run to `directory` atomically. Every process must call it (it waits for all)."""
    staging = directory.with_name(f".{directory.name}.partial")
    if accelerator.is_main_process:
        staging.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(directory)  # a `step-N` a killed save had moved aside goes back first
        shutil.rmtree(staging, ignore_errors=True)  # left by a save that was killed
        staging.mkdir()
        unwrapped = accelerator.unwrap_model(model)
        if has_lora(unwrapped):  # the merged weights for use, the adapters and base weights for resuming
            merged_model(unwrapped).save_pretrained(staging, safe_serialization=True)
            save_lora(unwrapped, staging)
        else:
            unwrapped.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
        _write_state(staging, "optimizer", optimizer.state_dict())
        _write_state(staging, "scheduler", scheduler.state_dict())
        if accelerator.scaler is not None:
            _write_state(staging, "scaler", accelerator.scaler.state_dict())
        (staging / STATE_FILE).write_text(json.dumps(state, indent=2))
    accelerator.wait_for_everyone()
    _write_state(staging, f"rng-{accelerator.process_index}", _rng_state())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for path in files_below(staging):
            sync(staging / path)
        write_manifest(staging, MARKER)
        sync(staging / MARKER)
        replace_folder(staging, directory)
    accelerator.wait_for_everyone()
    return directory


def verify_checkpoint(directory: Path) -> dict:
    """The training state of a complete, unaltered, pickle-free checkpoint; a `CheckpointError` naming the fault
    otherwise."""
    if not directory.is_dir():
        raise MissingInput(f"checkpoint {directory} does not exist")
    if directory.name.startswith("."):
        raise CheckpointError(
            f"{directory} is a save that never finished (or a replaced one), not a checkpoint; resume from 'latest'"
        )
    pickled = sorted(path.name for path in directory.iterdir() if path.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise CheckpointError(
            f"checkpoint {directory} holds pickle files ({', '.join(pickled)}), "
            "which aro never loads: they can run code"
        )
    if not (directory / MARKER).is_file():
        raise CheckpointError(
            f"checkpoint {directory} is incomplete: it has no {MARKER} (its save was interrupted); "
            "resume from an earlier one or 'latest'"
        )
    try:
        differences = manifest_differences(directory, MARKER)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"checkpoint {directory}: its {MARKER} is not a record of its files") from None
    if differences:
        raise CheckpointError(f"checkpoint {directory} is incomplete or altered: {', '.join(differences)}")
    return _training_state(directory)


def _training_state(directory: Path) -> dict:
    """`training_state.json`: where the run stood (`step`, `epoch`, `rows_in_epoch`) and what run it is."""
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {directory}: its {STATE_FILE} cannot be read ({reason_of(error)})") from None
    expected = {"step": int, "epoch": int, "rows_in_epoch": int, "identity": dict}
    wrong = [
        name for name, kind in expected.items() if not isinstance(state, dict) or not isinstance(state.get(name), kind)
    ]
    if wrong:
        raise CheckpointError(
            f"checkpoint {directory}: its {STATE_FILE} is not a training state (no valid {', '.join(wrong)})"
        )
    return state


def latest_checkpoint(folder: Path) -> Path:
    """The complete checkpoint of `folder` with the highest step (`step-N`, `interrupted-step-N`); incomplete ones,
    and the hidden folders of saves under way or killed (`.step-N.partial`, `.step-N.previous-...`), are skipped."""
    named = (
        [
            path
            for path in folder.iterdir()
            if path.is_dir() and not path.name.startswith(".") and path.name.rsplit("-", 1)[-1].isdigit()
        ]
        if folder.is_dir()
        else []
    )
    for directory in sorted(named, key=lambda path: int(path.name.rsplit("-", 1)[-1]), reverse=True):
        try:
            verify_checkpoint(directory)
            return directory
        except CheckpointError:
            continue
    raise MissingInput(f"no complete checkpoint in {folder} to resume from")


def load_checkpoint(directory: Path, accelerator, optimizer, scheduler) -> dict:
    """Restore the optimizer, scheduler, scaler and this process's random generators; return the training state.

    The model's weights are loaded by the caller (`from_pretrained` of the same folder), before `prepare`.
    """
    state = verify_checkpoint(directory)
    name = "optimizer"
    try:
        optimizer.load_state_dict(_read_state(directory, name))
        name = "scheduler"
        scheduler.load_state_dict(_read_state(directory, name))
        name = "scaler"
        if accelerator.scaler is not None and (directory / "scaler.json").exists():
            accelerator.scaler.load_state_dict(_read_state(directory, name))
        name = f"rng-{accelerator.process_index}"
        if (directory / f"{name}.json").exists():  # absent for a process that the saving run did not have
            _set_rng_state(_read_state(directory, name))
    except (OSError, ValueError, KeyError, IndexError, TypeError, SafetensorError) as error:
        raise CheckpointError(
            f"checkpoint {directory}: its {name} state cannot be restored ({reason_of(error)})"
        ) from None
    return state


def check_same_run(directory: Path, identity: dict) -> None:
    """Refuse to resume from a checkpoint of another run, naming every setting that differs."""
    differences = _differences(verify_checkpoint(directory)["identity"], identity)
    if differences:
        raise CheckpointError(
            f"checkpoint {directory} is from another run ({'; '.join(differences)}); "
            "pass --resume-allow-changes to resume anyway"
        )


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Each entry of two (nested) identities that differs, as 'name: saved -> current'."""
    differences = []
    for name in sorted(set(saved) | set(current)):
        before, after = saved.get(name), current.get(name)
        if isinstance(before, dict) and isinstance(after, dict):
            differences += _differences(before, after, f"{prefix}{name}.")
        elif before != after:
            differences.append(f"{prefix}{name}: {before!r} -> {after!r}")
    return differences


def _write_state(folder: Path, name: str, value) -> None:
    """A state dict as JSON, its tensors (and arrays) in a safetensors file beside it."""
    tensors: dict[str, torch.Tensor] = {}
    (folder / f"{name}.json").write_text(json.dumps(_encode(value, tensors, name)))
    if tensors:
        save_file(tensors, str(folder / f"{name}.safetensors"))


def _read_state(folder: Path, name: str):
    tensor_file = folder / f"{name}.safetensors"
    tensors = load_file(str(tensor_file)) if tensor_file.exists() else {}
    return _decode(json.loads((folder / f"{name}.json").read_text()), tensors)


def _encode(value, tensors: dict, path: str):
    """JSON for `value`, keeping what JSON would lose: tensors (moved to `tensors`), tuples, non-string keys."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous().clone()
        return {"tensor": path}
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, dict):
        return {"dict": [[key, _encode(item, tensors, f"{path}.{key}")] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):
        return {type(value).__name__: [_encode(item, tensors, f"{path}.{index}") for index, item in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"{path} is a {type(value).__name__}, which a checkpoint cannot store without pickle")


def _decode(encoded: dict, tensors: dict):
    (kind, value), *extra = encoded.items()
    if kind == "tensor":
        return tensors[value]
    if kind == "ndarray":
        return np.array(value, dtype=extra[0][1])
    if kind == "dict":
        return {key: _decode(item, tensors) for key, item in value}
    if kind in ("list", "tuple"):
        items = [_decode(item, tensors) for item in value]
        return items if kind == "list" else tuple(items)
    return value


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
