"""Where and how a model runs: device, autocast, batching that survives out-of-memory, and sharding over processes.

The distributed state is an argument, never looked up: the driver (`aro eval`, the trainer) owns it and passes it
down, as open_clip's `ClipLoss(rank, world_size)` takes its rank. With a state of several processes, `gathered`
gives each process a contiguous share of the items (neighbours stay together: an image's pairs) and gathers the
results in input order on every process, so scores do not depend on the number of processes; every process must
call it, with the same items.

>>> runtime = Runtime(device="cpu", batch_size=2)
>>> runtime.batched(lambda batch: torch.tensor(batch) * 2, [1, 2, 3], "doubling")
tensor([2, 4, 6])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from aro.core.errors import InvalidInput

AUTOCAST_DTYPES = {None: None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(device: str | None = None) -> torch.device:
    """The named device, else CUDA, MPS or CPU, the first available; ValueError for a device this machine lacks."""
    if device:
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise InvalidInput(f"unknown device {device!r}: use cuda, cuda:N, mps or cpu") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise InvalidInput(
                f"device {device!r} asked for, but CUDA is not available here (no GPU, or a CPU build of torch)"
            )
        if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise InvalidInput(
                f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        if chosen.type == "mps" and not torch.backends.mps.is_available():
            raise InvalidInput(f"device {device!r} asked for, but MPS is not available here")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class Runtime:
    """How to run a model: `device`, autocast `dtype` (`bf16`/`fp16`, CUDA only: refused elsewhere rather than
    ignored), `batch_size`, image-decoding `num_workers`, and `distributed`: an object with `process_index` and
    `num_processes` (accelerate's `PartialState` or `Accelerator`), or None for one process. Every option is
    checked here, before any model loads."""

    device: str | torch.device | None = None
    dtype: str | None = None
    batch_size: int = 64
    num_workers: int = 0
    distributed: object | None = None

    def __post_init__(self):
        if self.dtype not in AUTOCAST_DTYPES:
            raise InvalidInput(f"dtype must be one of {[name for name in AUTOCAST_DTYPES if name]}, not {self.dtype!r}")
        if self.batch_size < 1:
            raise InvalidInput(f"batch size must be at least 1, not {self.batch_size}")
        if self.num_workers < 0:
            raise InvalidInput(f"the number of image-decoding workers cannot be negative ({self.num_workers})")
        self.device = pick_device(self.device) if not isinstance(self.device, torch.device) else self.device
        if AUTOCAST_DTYPES[self.dtype] is not None and self.device.type != "cuda":
            # CPU autocast would change the numbers, not the speed: run in fp32 and say so.
            raise InvalidInput(
                f"dtype {self.dtype} (autocast) runs on CUDA only, and this run is on {self.device.type}: "
                "leave the dtype out"
            )

    @property
    def process_index(self) -> int:
        return getattr(self.distributed, "process_index", 0)

    @property
    def num_processes(self) -> int:
        return getattr(self.distributed, "num_processes", 1)

    def autocast(self):
        """Autocast to `dtype` (on CUDA, the only device that takes one); a no-op without a dtype."""
        dtype = AUTOCAST_DTYPES[self.dtype]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def batched(self, encode, items: list, description: str) -> torch.Tensor:
        """`encode` over `items` in batches, concatenated; a CUDA out-of-memory error halves the batch and retries."""
        outputs, start, batch_size = [], 0, self.batch_size
        with tqdm(total=len(items), desc=description, leave=False) as progress:
            while start < len(items):
                try:
                    outputs.append(encode(items[start : start + batch_size]))
                except torch.cuda.OutOfMemoryError:
                    if batch_size == 1:
                        raise
                    torch.cuda.empty_cache()
                    batch_size //= 2
                    continue
                progress.update(min(batch_size, len(items) - start))
                start += batch_size
        return torch.cat(outputs)

    def gathered(self, encode, items: list) -> torch.Tensor:
        """`encode(items)`, split over the processes and gathered in input order on every process."""
        if self.num_processes == 1:
            return encode(items)
        size = -(-len(items) // self.num_processes)
        share = list(range(self.process_index * size, min(len(items), (self.process_index + 1) * size)))
        local = encode([items[index] for index in share]) if share else None
        ordered = [None] * len(items)
        for indices, features in gather_object([(share, local)]):
            for position, index in enumerate(indices):
                ordered[index] = features[position]
        return torch.stack(ordered)
