"""Your own scorer: any Python function that scores a batch of (image, caption) pairs.

    def score(images: list[PIL.Image.Image], captions: list[str]) -> Sequence[float]:
        ...  # one number per pair, higher = a better match

It is scored on the same data, with the same deduplication, batching, sharding and protocol as every model:

>>> from aro.metrics.scoring import score_items
>>> result = score_items(score, None, dataset, batch_size=32)  # doctest: +SKIP

and from the command line as `aro eval --scorer my_module:score` (or `--scorer path/to/file.py:score`). Each batch
holds at most `batch_size` pairs; each unique image is decoded once per chunk of `batch_size` images and the same
PIL image object is passed for all its captions, so a hook may cache per image with `id(image)` within a call. Each
distinct (image, caption string) pair is scored once, and its score given to every item that shows it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

import numpy as np
import torch

from aro.core.errors import InvalidInput

from ..runtime import Runtime
from .pairs import PairAdapter


def pil_images(images: list) -> list:
    """Leave the decoded images as they are (picklable, for DataLoader workers)."""
    return images


def hook_name(function) -> str:
    """`module:function`, as results record a scorer."""
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', type(function).__name__)}"


class HookError(InvalidInput):
    """The hook cannot be found, failed, or returned something other than one number per pair."""


def failure(error: BaseException) -> str:
    """`TypeName: message (at file:line)`, the line of the user's code where `error` was raised: one line, as aro
    reports every error in its input."""
    if isinstance(error, SyntaxError):
        where = f"{error.filename}:{error.lineno}"
    else:
        frames = traceback.extract_tb(error.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return f"{type(error).__name__}: {error} (at {where})"


class CallableAdapter(PairAdapter):
    family = "hook"
    summary = (
        "your own scorer: a function score(images, captions) -> one number per pair (aro eval --scorer module:function)"
    )

    def __init__(self, score_fn, processor, runtime: Runtime):
        self.runtime = runtime
        self.model = score_fn
        self.processor = self.tokenizer = self.image_processor = None
        self.text_limit = None
        self.distinct_inputs = {}

    @property
    def preprocess(self):
        return pil_images

    @property
    def scorer_name(self) -> str:
        return f"the scorer {hook_name(self.model)}"

    def encode_images(self, images: list) -> list:
        return images

    def match(self, images: list, pairs: list[tuple[int, str]]) -> torch.Tensor:
        try:
            scores = self.model([images[position] for position, _ in pairs], [caption for _, caption in pairs])
        except Exception as error:  # the user's code, not aro's: where it failed, in one line
            raise HookError(f"{self.scorer_name} raised {failure(error)}") from error
        try:
            scores = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise HookError(
                f"{self.scorer_name} returned {type(scores).__name__} values that are not numbers ({error})"
            ) from None
        if scores.shape != (len(pairs),):
            raise HookError(
                f"{self.scorer_name} returned shape {scores.shape} for {len(pairs)} pairs: it must return one number "
                "per pair"
            )
        return torch.from_numpy(scores)

    def text_keys(self, captions: list[str]) -> list[str]:
        """A scoring function reads the caption as written: only the same string is the same input."""
        return captions

    def truncated_captions(self, captions: list[str]) -> int:
        return 0


def load_hook(spec: str):
    """The function named by `module:function` or `path/to/file.py:function` (a module is looked up from the
    current directory too)."""
    module_name, _, function_name = spec.rpartition(":")
    if not module_name or not function_name:
        raise HookError(f"--scorer {spec!r}: give module:function or path/to/file.py:function")
    if module_name.endswith(".py") and not Path(module_name).is_file():
        raise HookError(f"--scorer {spec!r}: no file {module_name}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except ImportError as error:
        raise HookError(f"--scorer {spec!r}: cannot import {module_name} ({error})") from None
    except Exception as error:  # the module itself fails as it loads (a syntax error, a raise at import)
        raise HookError(f"--scorer {spec!r}: {module_name} fails as it loads: {failure(error)}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise HookError(f"--scorer {spec!r}: {module_name} has no function {function_name}")
    return function
