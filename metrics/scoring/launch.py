"""The drivers' side of several processes: the launch's distributed state, and `aro eval` scoring on every process
that the launcher started while writing on the main process only.

    python -m torch.distributed.run --nproc_per_node 2 -m aro.cli eval --model MODEL ...   # or accelerate launch

Each process scores a share of every config's images and pairs, and every process gets all the scores back
(`Runtime.gathered`), so the numbers do not depend on the number of processes. One process runs without any
launcher as well.
"""

from __future__ import annotations

from pathlib import Path

from .evaluation import evaluate_models


def launch_state():
    """accelerate's `PartialState` for the processes of this launch; on CPU processes when `ACCELERATE_USE_CPU` is
    set, as `Accelerator` reads it (a plain `PartialState()` would not start the gloo group there)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def evaluate_launched(models: list, dataset: str, output_dir: str | Path, **options) -> tuple[list[dict], bool]:
    """`evaluate_models` over the processes of the launch; the outputs are written by the main process. Returns the
    results (on every process) and whether this is the main process."""
    state = launch_state()
    runs = evaluate_models(models, dataset, output_dir if state.is_main_process else None, distributed=state, **options)
    state.wait_for_everyone()
    return runs, state.is_main_process
