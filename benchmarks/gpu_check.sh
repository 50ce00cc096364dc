#!/usr/bin/env bash
# The GPU check: the aro scorer's items/s at realistic size with bf16 weights, on one GPU at several batch sizes,
# with one model spread over the GPU and the CPU by a device map, and on two processes; and how far the scores move
# with the batch size, from fp32 (the dual encoder), and from one process to two (they should not). Random weights
# from configs: nothing is downloaded. Estimated 4-6 minutes on one H200 (most of it writing and reading the 7B
# model); not yet run on a GPU.
#
#   benchmarks/gpu_check.sh [--dry-run] [--out FOLDER]
#
# --dry-run: the same steps at test size, on the CPU where there is no GPU (two processes on the CPU too), in a
# minute or two. Writes FOLDER/gpu_check.json (rows and the machine) and prints the table; FOLDER (default
# gpu-check/) also holds the models and the dataset, removed at the end unless --keep is given.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="gpu-check"
tiny=()
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) tiny=(--tiny) ;;
        --out) out="$2"; shift ;;
        --keep) keep=1 ;;
        *) echo "gpu_check.sh: unknown option $1 (--dry-run, --out FOLDER, --keep)" >&2; exit 2 ;;
    esac
    shift
done
python -c "import aro.metrics.scoring" 2>/dev/null || {
    echo "gpu_check.sh: the aro package is not importable: pip install -e . (with its dependencies) first" >&2
    exit 2
}
gpus="$(python -c 'import torch; print(torch.cuda.device_count())')"
if [ "$gpus" = 0 ] && [ ${#tiny[@]} = 0 ]; then
    echo "gpu_check.sh: no CUDA device here: the realistic sizes need one (--dry-run runs at test size on the CPU)" >&2
    exit 2
fi
work="$out/work"
mkdir -p "$work"
step() { python "$here/gpu_check.py" "$@" --work "$work" "${tiny[@]}"; }

step build
step measure --part one-process
step measure --part device-map
# Two processes must give the one process's scores: one GPU each, or both on a single GPU. On the CPU (the dry run)
# the processes talk through gloo, as `aro eval` launched there does.
if [ "$gpus" = 0 ]; then export ACCELERATE_USE_CPU=1; fi
python -m torch.distributed.run --standalone --nproc_per_node 2 "$here/gpu_check.py" measure --part two-processes --work "$work" "${tiny[@]}"
python "$here/gpu_check.py" report --work "$work" --out "$out/gpu_check.json"
if [ "$keep" = 0 ]; then rm -rf "$work"; fi
echo "written: $out/gpu_check.json"
