"""Which model and which data a result came from, named without local paths.

A reference is a Hub id or a local folder (or an open_clip model, `hf-hub:ORG/NAME` or `open_clip:ARCH:PRETRAINED`,
whose checkpoint file is named by its file name). Results name a Hub id as it is and a folder by its name only; the
commit is the Hub's resolved revision (not only the `--revision` the user passed), or `sha256:<hex>`, a content
hash of the local files, so that two results can be told to come from the same bytes.

>>> name_of("openai/clip-vit-base-patch32"), name_of("/home/me/runs/negclip")  # doctest: +SKIP
('openai/clip-vit-base-patch32', 'negclip')
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from huggingface_hub import HfApi

from aro.core.io import sha256_of

from .loading import open_clip_reference


def is_local(reference: str) -> bool:
    return Path(reference).exists()


def hub_id(reference: str) -> str | None:
    """The Hub id of `reference`, or None where it is a local folder."""
    return None if is_local(reference) else reference


def name_of(reference: str) -> str:
    """A name fit for a report: the Hub id, or the local folder's name."""
    open_clip_model = open_clip_reference(reference)
    if open_clip_model is not None:
        return open_clip_model.name
    return Path(reference).resolve().name if is_local(reference) else reference


def content_hash(files: list[Path], root: Path) -> str:
    """`sha256:<hex>` over the relative path and the SHA-256 of each of `files`, in path order."""
    digest = hashlib.sha256()
    for name, path in sorted((path.relative_to(root).as_posix(), path) for path in files):
        digest.update(f"{name}\0{sha256_of(path)}\n".encode())
    return "sha256:" + digest.hexdigest()


def model_commit(reference: str, model) -> str | None:
    """The commit a model was loaded at: transformers' resolved Hub commit, or a hash of the folder's top-level
    files (those `from_pretrained` reads; checkpoints and logs in subfolders are left out); for an open_clip model, see
    `OpenClipReference.commit`."""
    open_clip_model = open_clip_reference(reference)
    if open_clip_model is not None:
        return open_clip_model.commit()
    if is_local(reference):
        folder = Path(reference).resolve()
        return content_hash([path for path in folder.iterdir() if path.is_file()], folder)
    return getattr(model.config, "_commit_hash", None)


def dataset_commit(reference: str, revision: str | None = None) -> str | None:
    """The commit of a dataset: the Hub's sha for `revision` (None when the Hub cannot be reached), or a hash of
    the local folder's files (hidden ones, such as caches, left out)."""
    if is_local(reference):
        folder = Path(reference).resolve()
        files = [
            path
            for path in folder.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        ]
        return content_hash(files, folder)
    try:
        return HfApi().dataset_info(reference, revision=revision).sha
    except Exception:  # noqa: BLE001 - offline or gated: the commit stays unknown, and the results say so
        return None
