"""The GPU check's steps (`gpu_check.sh` runs them in order): models of realistic size built from configs with
random weights (no Hub on the GPU machine), an ARO-shaped dataset, and the aro scorer's items/s with bf16 weights.

    python benchmarks/gpu_check.py build --work DIR [--tiny]            # model folders and a dataset in DIR
    python benchmarks/gpu_check.py measure --work DIR --part one-process [--tiny]   # batch sizes, bf16 weights
    python benchmarks/gpu_check.py measure --work DIR --part device-map [--tiny]    # spread over GPU and CPU
    python -m torch.distributed.run --nproc_per_node 2 benchmarks/gpu_check.py measure --work DIR \
        --part two-processes [--tiny]                                     # one process's scores again
    python benchmarks/gpu_check.py report --work DIR --out gpu_check.json           # one table, one JSON

Realistic sizes: a SigLIP so400m/14 at 384 px (878M parameters) and a LLaVA-1.5-7B (a CLIP ViT-L/14 at 336 px and
a Llama 7B: 7.06B parameters), each with a word-level tokenizer built offline, as the tests build theirs (speed does
not depend on the vocabulary a tokenizer knows, and the 32k-row embedding of the checkpoints is kept). `--tiny`
gives both families at test size, on the CPU when there is no GPU: the dry run that proves every step here.

Each `measure` loads a model through `load_model` with a `Runtime` as `aro eval --dtype bf16` makes it, scores the
first batch once to warm up, then times the scorer over VG-Relation-shaped items (one image and two captions each;
items per second, the loading timed apart). `device-map` gives the GPU about 40% of the model's weights
(`--max-memory`), so the rest is offloaded to the CPU and streamed in at every forward, and also runs `aro eval`
itself that way on the dual encoder. `two-processes` shards the items over the processes of a torchrun launch.
Every row also gives the largest difference of its scores from a reference (`compared_with`): the first batch size,
the whole model for a device map, the one process for two, and the bf16 weights for SigLIP's fp32 row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import transformers as tf
from common import report
from datasets import Dataset
from PIL import Image

from aro.builders.writer import configs_yaml
from aro.core.contract import config_features
from aro.metrics.scoring import Runtime, Scorer, load_model, load_split
from aro.metrics.scoring.launch import launched_processes
from aro.models.tiny_clip import word_tokenizer
from aro.models.tiny_vlm import CHAT_TEMPLATE, chat_word_tokenizer

WORDS = (
    "a the red blue green small large man woman dog cat horse table chair on under left of right above and is".split()
)
RELATIONS = ("on", "under", "to the left of", "to the right of", "above")
# Items scored, batch sizes, and the GPU's share of the weights when spread by a device map.
ITEMS = {"dual": 1024, "generative": 64}
BATCH_SIZES = {"dual": (16, 64, 256), "generative": (4, 16)}
SPREAD_ITEMS = {"dual": 256, "generative": 8}
TINY_ITEMS = 64  # every count of the dry run
GPU_SHARE = 0.4


@dataclass(frozen=True)
class Sizes:
    """How large the models and images are: realistic (the checkpoints' own configs) or tiny (the dry run)."""

    dual_vision: dict
    dual_text: dict
    dual_image: int
    llava_vision: dict
    llava_text: dict
    llava_image: int
    patch: int
    vocab_size: int | None  # None: the tokenizer's own
    image_pixels: int  # the side of the dataset's images


REALISTIC = Sizes(
    dual_vision=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16),
    dual_text=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16),
    dual_image=384,
    llava_vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
    llava_text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    llava_image=336,
    patch=14,
    vocab_size=32064,
    image_pixels=480,
)
TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
TINY = Sizes(TOWER, TOWER, 32, TOWER, TOWER, 32, 8, None, 48)


def siglip(sizes: Sizes):
    """A SigLIP so400m/14-sized dual encoder (or a tiny one) and its processor."""
    tokenizer = word_tokenizer(WORDS, max_length=64)  # SigLIP pads every caption to 64 tokens
    special = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("pad", "bos", "eos")}
    text = dict(sizes.dual_text, vocab_size=sizes.vocab_size or len(tokenizer), max_position_embeddings=64, **special)
    vision = dict(sizes.dual_vision, image_size=sizes.dual_image, patch_size=sizes.patch)
    processor = tf.SiglipProcessor(
        image_processor=tf.SiglipImageProcessorPil(size={"height": sizes.dual_image, "width": sizes.dual_image}),
        tokenizer=tokenizer,
    )
    return tf.SiglipModel(tf.SiglipConfig(text_config=text, vision_config=vision)), processor


def llava(sizes: Sizes):
    """A LLaVA-1.5-7B-sized model (or a tiny one) and its processor, with a chat template."""
    tokenizer = chat_word_tokenizer(WORDS, ["<image>"])
    vision = dict(
        sizes.llava_vision, image_size=sizes.llava_image, patch_size=sizes.patch, model_type="clip_vision_model"
    )
    text = dict(
        sizes.llava_text,
        vocab_size=sizes.vocab_size or len(tokenizer),
        max_position_embeddings=4096,
        model_type="llama",
        **{f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("pad", "bos", "eos")},
    )
    config = tf.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    size = {"shortest_edge": sizes.llava_image}
    processor = tf.LlavaProcessor(
        image_processor=tf.CLIPImageProcessorPil(
            size=size, crop_size={"height": sizes.llava_image, "width": sizes.llava_image}
        ),
        tokenizer=tokenizer,
        patch_size=sizes.patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE.replace("IMAGE", "<image>"),
    )
    return tf.LlavaForConditionalGeneration(config), processor


def build_models(work: Path, tiny: bool) -> None:
    """Both models, initialised where they will run (a 7B model initialises in seconds on a GPU, minutes on CPU
    cores) directly in bf16, saved with their processors as Hub checkpoints are."""
    sizes = TINY if tiny else REALISTIC
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name, build in (("dual", siglip), ("generative", llava)):
        torch.manual_seed(0)
        with torch.device(device):
            torch.set_default_dtype(torch.bfloat16)
            model, processor = build(sizes)
            torch.set_default_dtype(torch.float32)
        model.save_pretrained(work / name)
        processor.save_pretrained(work / name)
        parameters = sum(parameter.numel() for parameter in model.parameters())
        print(f"built {name}: {type(model).__name__}, {parameters / 1e9:.3g}B parameters")
        del model
        torch.cuda.empty_cache()


def build_dataset(work: Path, tiny: bool) -> None:
    """A VG-Relation-shaped folder: one photo-sized image per item (smooth random colour fields, JPEG), two
    captions of 6 to 10 words, a relation per item."""
    rng = np.random.default_rng(0)
    side = (TINY if tiny else REALISTIC).image_pixels
    items = TINY_ITEMS if tiny else max(ITEMS.values())
    rows = []
    for item in range(items):
        coarse = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((side, side), Image.BILINEAR)
        relation = RELATIONS[item % len(RELATIONS)]
        subject, target = (" ".join(rng.choice(WORDS[2:16], 2)) for _ in range(2))
        rows.append(
            {
                "item_id": item,
                "image": image,
                "true_caption": f"the {subject} is {relation} the {target}",
                "false_caption": f"the {target} is {relation} the {subject}",
                "image_id": str(item),
                "bbox": [0, 0, side, side],
                "relation_name": relation,
            }
        )
    folder = work / "aro"
    (folder / "relation").mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=config_features("relation")).to_parquet(
        folder / "relation" / "test-00000-of-00001.parquet"  # the shard name `aro build` writes
    )
    counts = {("relation", "test"): len(rows)}
    (folder / "README.md").write_text(configs_yaml(counts, {"relation": config_features("relation")}) + "\n")


def measure(
    work: Path,
    kind: str,
    runtime: Runtime,
    batch_sizes: tuple[int, ...],
    items: int,
    placement: str,
    reference: tuple[str, np.ndarray] | None = None,
) -> tuple[list[dict], np.ndarray]:
    """Items/s of the scorer over the first `items` items, at each batch size, with the model loaded once, and the
    largest difference of each run's scores from `reference` (a name and its scores; default: this model's run at
    the first batch size, so that batching shows whether it moves a score). Returns the rows and the scores of the
    last batch size."""
    data = load_split(str(work / "aro"), "relation").select(range(items))
    start = time.perf_counter()
    model, processor = load_model(str(work / kind), runtime=runtime)
    load_seconds = time.perf_counter() - start
    state = runtime.distributed
    rows = []
    for batch_size in batch_sizes:
        run = replace(runtime, batch_size=batch_size)
        scorer = Scorer(model, processor, run)
        scorer.score(data.select(range(min(items, batch_size))))  # warm up: kernels, allocator, cudnn choices
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if state is not None:
            state.wait_for_everyone()
        start = time.perf_counter()
        scores = scorer.score(data).scores
        if state is not None:
            state.wait_for_everyone()
        seconds = time.perf_counter() - start
        reference = reference or (f"batch {batch_size}", scores)
        rows.append(
            {
                "model": f"{type(model).__name__} ({sum(p.numel() for p in model.parameters()) / 1e9:.3g}B)",
                "placement": placement,
                "batch_size": batch_size,
                "items": items,
                "seconds": seconds,
                "items_per_second": items / seconds,
                "load_seconds": load_seconds,
                "peak_gpu_GiB": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
                "max_score_difference": float(np.nanmax(np.abs(scores - reference[1]))),
                "compared_with": reference[0],
            }
        )
        print(f"{kind} {placement} batch {batch_size}: {items / seconds:.3g} items/s, {rows[-1]['compared_with']}")
    del model
    torch.cuda.empty_cache()
    return rows, scores


def spread_memory(work: Path, kind: str) -> str:
    """`--max-memory` that leaves the first device about `GPU_SHARE` of the model's bf16 weights, the rest to the CPU
    (on a machine without a GPU, the CPU gets that share and the rest goes to the disk)."""
    weights = sum(path.stat().st_size for path in (work / kind).glob("*.safetensors"))
    share = int(weights * GPU_SHARE)
    return f"0={share},cpu={4 * weights}" if torch.cuda.is_available() else f"cpu={share}"


def measure_part(work: Path, part: str, tiny: bool) -> list[dict]:
    """The rows of one part; `one-process` also saves each model's scores at its largest batch size, which
    `two-processes` must give again."""
    items = {kind: min(count, TINY_ITEMS) if tiny else count for kind, count in ITEMS.items()}
    spread_items = {kind: min(count, TINY_ITEMS) if tiny else count for kind, count in SPREAD_ITEMS.items()}
    workers = 0 if tiny else 8
    rows = []
    if part == "one-process":
        runtime = Runtime(dtype="bf16", num_workers=workers)
        for kind in ("dual", "generative"):
            measured, scores = measure(work, kind, runtime, BATCH_SIZES[kind], items[kind], f"bf16, {runtime.device}")
            np.save(work / f"scores-{kind}.npy", scores)
            rows += measured
        # How far bf16 weights move the dual encoder's scores from fp32 (the 7B model's fp32 copy would take 28 GB).
        fp32 = replace(runtime, dtype=None)
        largest = BATCH_SIZES["dual"][-1:]
        rows += measure(
            work, "dual", fp32, largest, items["dual"], f"fp32, {fp32.device}", ("bf16", saved_scores(work, "dual"))
        )[0]
        return rows
    if part == "device-map":
        for kind in ("dual", "generative"):
            memory = spread_memory(work, kind)
            runtime = Runtime(dtype="bf16", num_workers=workers, device_map="auto", max_memory=memory)
            batch = BATCH_SIZES[kind][1 if kind == "dual" else 0]
            whole = (f"whole, batch {BATCH_SIZES[kind][-1]}", saved_scores(work, kind)[: spread_items[kind]])
            placement = f"bf16, device map ({memory})"
            rows += measure(work, kind, runtime, (batch,), spread_items[kind], placement, whole)[0]
        rows.append(aro_eval_spread(work, workers))
        return rows
    # Two processes: one GPU each where there are two, else both on the one GPU (scores, not speed, are the point).
    # On the CPU (the dry run), gpu_check.sh sets ACCELERATE_USE_CPU, as for `aro eval` launched there.
    with launched_processes() as state:
        device = f"cuda:{state.local_process_index % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
        runtime = Runtime(dtype="bf16", device=device, num_workers=workers, distributed=state)
        placement = f"bf16, {state.num_processes} processes on {torch.cuda.device_count() or 'no'} GPU(s)"
        for kind in ("dual", "generative"):
            one_process = (f"one process, batch {BATCH_SIZES[kind][-1]}", saved_scores(work, kind))
            rows += measure(work, kind, runtime, BATCH_SIZES[kind][-1:], items[kind], placement, one_process)[0]
    return rows


def saved_scores(work: Path, kind: str) -> np.ndarray:
    """The scores `one-process` saved of `kind` at its largest batch size."""
    return np.load(work / f"scores-{kind}.npy")


def aro_eval_spread(work: Path, workers: int) -> dict:
    """`aro eval` itself on the dual encoder spread by a device map, as a user runs it: the wall time, loading
    included, and where results.json says the weights went."""
    out = work / "eval-spread"
    memory = spread_memory(work, "dual")
    command = [sys.executable, "-m", "aro.cli", "eval", "--model", str(work / "dual"), "--dataset", str(work / "aro")]
    command += ["--config", "relation", "--dtype", "bf16", "--device-map", "auto", "--max-memory", memory]
    command += ["--num-workers", str(workers), "--batch-size", "64", "--limit", "256", "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    results = json.loads((out / "results.json").read_text())
    items = results["configs"]["relation"]["num_items"]
    print(f"aro eval, device map: {results['weights']['device_map']}")
    return {
        "model": "aro eval --model dual (SigLIP)",
        "placement": f"bf16, device map ({memory}): {results['weights']['device_map']}",
        "batch_size": 64,
        "items": items,
        "seconds": seconds,
        "items_per_second": items / seconds,
        "load_seconds": None,
        "peak_gpu_GiB": None,
        "max_score_difference": None,
        "compared_with": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("build", "measure", "report"))
    parser.add_argument("--work", type=Path, required=True, help="folder of the models, the dataset and the parts")
    parser.add_argument("--part", choices=("one-process", "device-map", "two-processes"))
    parser.add_argument("--tiny", action="store_true", help="test-sized models: the dry run")
    parser.add_argument("--out", help="the report's JSON (report)")
    args = parser.parse_args()
    if args.step == "build":
        args.work.mkdir(parents=True, exist_ok=True)
        build_models(args.work, args.tiny)
        build_dataset(args.work, args.tiny)
    elif args.step == "measure":
        rows = measure_part(args.work, args.part, args.tiny)
        if int(os.environ.get("RANK", "0")) == 0:
            (args.work / f"{args.part}.json").write_text(json.dumps(rows, indent=2))
    else:
        parts = ("one-process", "device-map", "two-processes")
        files = [args.work / f"{part}.json" for part in parts]
        rows = [row for path in files if path.exists() for row in json.loads(path.read_text())]
        report("GPU check: the aro scorer's items/s with bf16 weights (loading timed apart)", rows, args.out)


if __name__ == "__main__":
    main()
