"""The `aro eval` driver: score on every process that the launcher started, write on the main process only.

    python -m torch.distributed.run --nproc_per_node 2 -m aro.cli eval --model MODEL ...   # or accelerate launch

Each process scores a share of every config's images and pairs, and every process gets all the scores back
(`Runtime.gathered`), so the numbers do not depend on the number of processes. One process runs without any
launcher as well.
"""

from __future__ import annotations

from pathlib import Path

from .evaluation import evaluate_model


def evaluate_launched(model, dataset: str, configs, output_dir: str | Path | None = None, **options) -> tuple[dict, bool]:
    """`evaluate_model` over the processes of the launch (accelerate's `PartialState`); the outputs are written
    by the main process. Returns the results (on every process) and whether this is the main process."""
    from accelerate import PartialState

    state = PartialState()
    results = evaluate_model(model, dataset, configs, output_dir=output_dir if state.is_main_process else None, distributed=state, **options)
    state.wait_for_everyone()
    return results, state.is_main_process
