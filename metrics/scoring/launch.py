"""The drivers' side of several processes: the launch's distributed state, held for one command, and `aro eval`
scoring on every process that the launcher started while writing on the main process only.

    python -m torch.distributed.run --nproc_per_node 2 -m aro.cli eval --model MODEL ...   # or accelerate launch

Each process scores a share of every config's images and pairs, and every process gets all the scores back
(`Runtime.gathered`), so the numbers do not depend on the number of processes. One process runs without any
launcher as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

from .evaluation import EvalOptions, evaluate_models
from .results import EvalResult


@contextmanager
def launched_processes() -> Iterator[PartialState]:
    """accelerate's `PartialState` for the processes of this launch, for one driver's run; on CPU processes when
    `ACCELERATE_USE_CPU` is set, as `Accelerator` reads it (a plain `PartialState()` would not start the gloo group
    there).

    When the run ends, each process waits for the others, then closes the process group: a process that leaves
    early, with its group still open, is aborted by gloo as it exits ("terminate called without an active
    exception"), and the launcher then kills the rest. After an error nobody waits: the others may never arrive.

        with launched_processes() as state:
            ...  # every process works; the main process writes
    """
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    try:
        yield state
        state.wait_for_everyone()
    finally:
        state.destroy_process_group()


def evaluate_launched(
    models: list,
    dataset: str,
    output_dir: str | Path,
    configs: str | list[str] = "all",
    options: EvalOptions | None = None,
) -> tuple[list[EvalResult], bool]:
    """`evaluate_models` over the processes of the launch (its state goes into the options' runtime); the outputs
    are written by the main process. Returns the results (on every process) and whether this is the main process."""
    options = options or EvalOptions()
    with launched_processes() as state:
        options = replace(options, runtime=replace(options.runtime, distributed=state))
        runs = evaluate_models(models, dataset, output_dir if state.is_main_process else None, configs, options)
    return runs, state.is_main_process
