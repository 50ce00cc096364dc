"""Where and how a model runs: the dtype of its weights, its device (or a device map spreading it over several),
its attention implementation, autocast, batching that survives out-of-memory, and sharding over processes.

The distributed state is an argument, never looked up: the driver (`aro eval`, the trainer) owns it and passes it
down, as open_clip's `ClipLoss(rank, world_size)` takes its rank. With a state of several processes, `gathered`
gives each process a contiguous share of the items (neighbours stay together: an image's pairs) and gathers the
results in input order on every process, so scores do not depend on the number of processes; every process must
call it, with the same items.

A model too large for one device is loaded with a `device_map` (accelerate's big-model loading): its layers are
spread over the GPUs, then the CPU, then the disk, within `max_memory` per device; it stays where it was loaded,
and its inputs go to its first device (`Runtime.place`).

>>> runtime = Runtime(device="cpu", batch_size=2)
>>> runtime.batched(lambda batch: torch.tensor(batch) * 2, [1, 2, 3], "doubling")
tensor([2, 4, 6])
>>> Runtime(dtype="bf16", device_map="auto", max_memory="0=70GiB,cpu=200GiB")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import convert_file_size_to_int, gather_object
from tqdm.auto import tqdm

from aro.core.errors import InvalidInput

# The dtype the weights are loaded in and the forward autocasts to.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# accelerate's strategies for spreading one model over the devices (`infer_auto_device_map`).
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
# transformers' attention implementations; a Hub kernel ("ORG/NAME") passes through as well.
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


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


def parse_max_memory(max_memory: str | dict) -> dict[int | str, int]:
    """`0=70GiB,1=70GiB,cpu=200GiB` (or such a dict) as accelerate's `max_memory`: a GPU index, `cpu` or `mps` to a
    number of bytes; one line naming `--max-memory` for anything else."""
    if isinstance(max_memory, str):
        entries = [entry.partition("=") for entry in max_memory.split(",") if entry.strip()]
        if not entries or any(not equals for _, equals, _ in entries):
            raise InvalidInput(
                f"max memory (--max-memory) {max_memory!r} is not DEVICE=SIZE,...: e.g. 0=70GiB,cpu=200GiB"
            )
        max_memory = {key.strip(): size.strip() for key, _, size in entries}
    parsed = {}
    for key, size in max_memory.items():
        device = int(key) if str(key).isdigit() else key
        if device not in ("cpu", "mps") and not isinstance(device, int):
            raise InvalidInput(
                f"max memory (--max-memory): {key!r} is no device: use a GPU index (0, 1, ...), cpu or mps"
            )
        if isinstance(device, int) and device >= torch.cuda.device_count():
            raise InvalidInput(
                f"max memory (--max-memory) names GPU {device}, but this machine has {torch.cuda.device_count()} "
                "CUDA device(s)"
            )
        try:
            parsed[device] = convert_file_size_to_int(int(size) if str(size).isdigit() else size)
        except ValueError:
            raise InvalidInput(
                f"max memory (--max-memory) of {key}: {size!r} is no size: give bytes or a unit (70GiB, 500MB)"
            ) from None
    return parsed


@dataclass
class Runtime:
    """How to run a model. Every option is checked here, before any model loads.

    - `dtype` (`fp32`, the default, `bf16` or `fp16`): the dtype aro loads the weights in, on any device (CPU
      kernels run both bf16 and fp16), and the forward autocasts to it (the inputs, and a model passed in memory in
      another dtype); the operations that autocast keeps in fp32 run in fp32, and scores are read in fp32.
    - `device` (cuda, cuda:N, mps, cpu; default the best available), or `device_map` (one of `DEVICE_MAPS`) to
      spread one model over the GPUs, the CPU and the disk, within `max_memory` per device (`0=70GiB,cpu=200GiB`,
      or a dict); disk-offloaded weights are read from the checkpoint's safetensors files, or from a copy that
      transformers writes into a new folder inside `offload_folder` where it must convert them.
    - `attn_implementation` (one of `ATTENTION_IMPLEMENTATIONS`, default the model's own choice), passed to
      `from_pretrained`.
    - `batch_size`, image-decoding `num_workers`, and `distributed`: an object with `process_index` and
      `num_processes` (accelerate's `PartialState` or `Accelerator`), or None for one process.
    - `progress`: a bar per pass over the images or captions (`aro demo` turns them off: it shows one per phase).
    """

    device: str | torch.device | None = None
    dtype: str | None = None
    batch_size: int = 64
    num_workers: int = 0
    distributed: object | None = None
    device_map: str | None = None
    max_memory: str | dict | None = None
    offload_folder: str | Path | None = None
    attn_implementation: str | None = None
    progress: bool = True

    def __post_init__(self):
        if self.dtype is not None and self.dtype not in DTYPES:
            raise InvalidInput(f"dtype (--dtype) must be one of {list(DTYPES)}, not {self.dtype!r}")
        if self.batch_size < 1:
            raise InvalidInput(f"batch size must be at least 1, not {self.batch_size}")
        if self.num_workers < 0:
            raise InvalidInput(f"the number of image-decoding workers cannot be negative ({self.num_workers})")
        if self.attn_implementation is not None and not (
            self.attn_implementation in ATTENTION_IMPLEMENTATIONS or "/" in self.attn_implementation
        ):
            raise InvalidInput(
                f"attention implementation (--attn-implementation) {self.attn_implementation!r} is none of "
                f"{', '.join(ATTENTION_IMPLEMENTATIONS)} (or a Hub kernel, ORG/NAME)"
            )
        self.check_device_map()
        if self.max_memory is not None:
            self.max_memory = parse_max_memory(self.max_memory)
        if self.device_map is None and not isinstance(self.device, torch.device):
            self.device = pick_device(self.device)  # with a device map, `place` sets it: the model's first device

    def check_device_map(self) -> None:
        """A device map places the model itself, in one process; its memory and offload options need one."""
        if self.device_map is None:
            given = [option for option in ("max_memory", "offload_folder") if getattr(self, option) is not None]
            if given:
                flags = ", ".join("--" + option.replace("_", "-") for option in given)
                verb = "applies" if len(given) == 1 else "apply"
                raise InvalidInput(f"{flags} {verb} to a model spread by a device map: add --device-map auto")
            return
        if self.offload_folder is not None and Path(self.offload_folder).expanduser().is_file():
            raise InvalidInput(f"offload folder (--offload-folder) {self.offload_folder} is a file, not a folder")
        if self.device_map not in DEVICE_MAPS:
            raise InvalidInput(f"device map (--device-map) must be one of {list(DEVICE_MAPS)}, not {self.device_map!r}")
        if self.device is not None:
            raise InvalidInput(
                f"--device {self.device} and --device-map {self.device_map}: the device map places the model "
                "itself (its inputs go to its first device); give one of them"
            )
        if self.num_processes > 1:
            raise InvalidInput(
                f"--device-map spreads one model over every device of this machine, and {self.num_processes} "
                "processes would each claim them all: run one process"
            )

    @property
    def weights_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype or "fp32"]

    def place(self, model) -> Runtime:
        """Put `model` where it runs, and return the runtime it runs with: a model spread by a device map stays
        where it was loaded and takes its inputs on its first device (accelerate's hooks move them on from there),
        as does one that a device map loaded whole onto one device (transformers gives it no `hf_device_map`); any
        other model is moved to `device`."""
        device_map = getattr(model, "hf_device_map", None)
        if device_map is None and self.device_map is None:
            model.to(self.device)
            return self
        placed = copy.copy(self)  # not `replace`: the checks of the options, done, would refuse a device beside a map
        placed.device = first_device(device_map) if device_map else next(model.parameters()).device
        return placed

    def with_batch_size(self, batch_size: int) -> Runtime:
        """This runtime with another batch size: a copy, not `replace`, for the same reason as in `place`."""
        resized = copy.copy(self)
        resized.batch_size = batch_size
        return resized

    @property
    def process_index(self) -> int:
        return getattr(self.distributed, "process_index", 0)

    @property
    def num_processes(self) -> int:
        return getattr(self.distributed, "num_processes", 1)

    def autocast(self):
        """Autocast to `dtype`, for the inputs and the operations the weights do not fix (a no-op in fp32)."""
        enabled = self.weights_dtype != torch.float32 and torch.amp.is_autocast_available(self.device.type)
        return torch.autocast(self.device.type, dtype=self.weights_dtype, enabled=enabled)

    def batched(self, encode, items: list, description: str) -> torch.Tensor:
        """`encode` over `items` in batches, concatenated; a CUDA out-of-memory error halves the batch and retries."""
        outputs, start, batch_size = [], 0, self.batch_size
        with tqdm(total=len(items), desc=description, leave=False, disable=not self.progress) as progress:
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


def first_device(device_map: dict) -> torch.device:
    """Where a model spread by `device_map` takes its inputs: its first GPU (or MPS), where weights offloaded to the
    CPU or the disk run too (accelerate's main device), else the CPU."""
    accelerators = [device for device in device_map.values() if device not in ("cpu", "disk")]
    if not accelerators:
        return torch.device("cpu")
    first = accelerators[0]
    return torch.device("cuda", first) if isinstance(first, int) else torch.device(first)
