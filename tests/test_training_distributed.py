"""Training and mining on two processes (CPU, gloo) give what one process gives.

Two processes with B rows each and one process with 2B rows see the same global batches, the same negatives
(mined sharded on two processes, whole on one) and, through the gathered loss, the same gradients. Mining a
dataset whose rows do not split evenly over the processes gives the cache one process writes.
"""

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import torch
from datasets import load_dataset
from safetensors.torch import load_file

from aro.cli import main

CPU_PROCESSES = {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}


def _on_two_processes(argv: list[str], tmp_path) -> None:
    """`aro argv` under `torchrun` with two CPU processes; it must succeed."""
    environment = os.environ | CPU_PROCESSES | {"HF_DATASETS_CACHE": str(tmp_path / "cache")}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run = subprocess.run(
        [*torchrun, "-m", "aro.cli", *map(str, argv)], capture_output=True, text=True, env=environment, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]


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
    _on_two_processes(command, tmp_path)
    assert main(train_argv(tmp_path / "one", batch_size=8, mining_cache=tmp_path / "one.parquet", **options)) == 0

    assert pq.read_table(tmp_path / "two.parquet").equals(pq.read_table(tmp_path / "one.parquet"))
    two, one = load_file(tmp_path / "two" / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    assert two.keys() == one.keys()
    for name in one:
        if name.endswith("k_proj.bias"):
            # Softmax ignores a bias added to every key, so its gradient is rounding noise, which AdamW scales up
            # to full-size steps: on one process or two, these take different random walks.
            continue
        # 2e-5 is a fiftieth of one step (lr 1e-3): a wrong gradient moves weights by a step. Since the crops are
        # tensors, a couple of the 24,576 patch-embedding weights differ by up to 8.4e-6 in some runs (rounding
        # noise of near-zero gradients, which AdamW scales up, as for the key bias below).
        assert torch.allclose(two[name], one[name], atol=2e-5, rtol=1e-4), name
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


def test_mining_an_uneven_dataset_on_two_processes_writes_the_cache_of_one(scenes, start_model, tmp_path):
    """Eleven rows of four images: the captions split 6 + 5 over the processes, the images in batches of 2."""
    folder = tmp_path / "eleven"
    folder.mkdir()
    load_dataset(str(scenes), "scenes", split="train").select(range(11)).to_parquet(folder / "train.parquet")
    argv = ["mine", "--dataset", folder, "--clip-model", start_model, "--batch-size", "2"]
    _on_two_processes([*argv, "--out", tmp_path / "two.parquet"], tmp_path)
    assert main([*map(str, argv), "--out", str(tmp_path / "one.parquet")]) == 0
    two, one = pq.read_table(tmp_path / "two.parquet"), pq.read_table(tmp_path / "one.parquet")
    assert two.num_rows == 11 and two.equals(one)
    assert two.schema.metadata == one.schema.metadata


def test_fsc_with_lora_on_two_processes_trains_as_one_process(train_argv, start_model, tmp_path):
    """FSC-CLIP's loss (its focal, local and smoothed terms gathered over the processes) with LoRA adapters: two
    processes of B rows give the merged weights and losses of one process of 2B rows."""
    options = dict(max_steps=2, loss="fsc", lora_rank=4, lora_alpha=8)
    _on_two_processes(
        train_argv(tmp_path / "two", batch_size=4, mining_cache=tmp_path / "two.parquet", **options), tmp_path
    )
    assert main(train_argv(tmp_path / "one", batch_size=8, mining_cache=tmp_path / "one.parquet", **options)) == 0
    two, one = load_file(tmp_path / "two" / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    start = load_file(start_model / "model.safetensors")
    adapted = [name for name in one if not torch.equal(start[name], one[name])]
    targets = {"q_proj", "k_proj", "v_proj", "out_proj"}  # LoRA's default targets: only they move, merged in
    assert adapted and all(name.split(".")[-2] in targets for name in adapted), adapted
    for name in one:
        assert torch.allclose(two[name], one[name], atol=2e-5, rtol=1e-4), name
    two_losses, one_losses = (
        [float(line.split(",")[2]) for line in (tmp_path / name / "log.csv").read_text().splitlines()[1:]]
        for name in ("two", "one")
    )
    assert len(one_losses) == 2 and all(abs(a - b) < 1e-5 for a, b in zip(two_losses, one_losses))
