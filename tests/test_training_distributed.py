"""Training on two processes (CPU, gloo) with every option finishes and learns what one process learns.

Two processes with B rows each and one process with 2B rows see the same global batches, the same negatives
(mined sharded on two processes, whole on one) and, through the gathered loss, the same gradients.
"""

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file

from aro.cli import main


def test_two_processes_with_every_option_train_as_one_process_with_the_same_global_batch(
    train_argv, scenes, start_model, tmp_path, capsys
):
    options = dict(
        max_steps=2,
        validation_split="test",
        eval_dataset=scenes,
        eval_configs=["relation"],
        eval_every=1,
        save_every=2,
    )
    # Two processes, mining on first use (sharded), evaluating and validating on both, TensorBoard on the main one.
    command = train_argv(
        tmp_path / "two", batch_size=4, mining_cache=tmp_path / "two.parquet", report_to="tensorboard", **options
    )
    environment = os.environ | {
        "ACCELERATE_USE_CPU": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "aro.cli",
            *command,
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert main(train_argv(tmp_path / "one", batch_size=8, mining_cache=tmp_path / "one.parquet", **options)) == 0

    assert pq.read_table(tmp_path / "two.parquet").equals(pq.read_table(tmp_path / "one.parquet"))
    two, one = load_file(tmp_path / "two" / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    assert two.keys() == one.keys()
    for name in one:
        if name.endswith("k_proj.bias"):
            # Softmax ignores a bias added to every key, so its gradient is rounding noise, which AdamW scales up
            # to full-size steps: on one process or two, these take different random walks.
            continue
        assert torch.allclose(two[name], one[name], atol=1e-6, rtol=1e-4), name
    start = load_file(start_model / "model.safetensors")
    assert any(not torch.equal(start[name], one[name]) for name in start)  # it did train
    two_results, one_results = (
        json.loads((tmp_path / name / "training_results.json").read_text()) for name in ("two", "one")
    )
    assert abs(two_results["validation_loss"] - one_results["validation_loss"]) < 1e-5
    assert (
        two_results["aro"]["configs"]["relation"]["accuracy"] == one_results["aro"]["configs"]["relation"]["accuracy"]
    )
    two_losses, one_losses = (
        [float(line.split(",")[2]) for line in (tmp_path / name / "log.csv").read_text().splitlines()[1:]]
        for name in ("two", "one")
    )
    assert len(two_losses) == 2 and all(abs(a - b) < 1e-5 for a, b in zip(two_losses, one_losses))
    assert list((tmp_path / "two" / "tensorboard").rglob("events.out.tfevents.*"))

    # The two-process checkpoint does not resume on one process unasked: the world size differs.
    code = main(
        train_argv(
            tmp_path / "two", batch_size=4, mining_cache=tmp_path / "two.parquet", resume_from="latest", **options
        )
    )
    assert code == 2 and "world_size: 2 -> 1" in capsys.readouterr().err
