"""`aro eval` (score models on ARO with the paper's protocol, or another harness's) and `aro push-metric` (publish
the module).

    aro eval --model openai/clip-vit-base-patch32 --blind gpt2    # a Hub model, beside a text-only baseline
    aro eval --model MODEL_A --model MODEL_B                      # several models, with a combined table and plot
    aro eval --scorer my_scorer.py:score                          # your own score(images, captions) function
    python -m torch.distributed.run --nproc_per_node 2 -m aro.cli eval --model ...   # several processes
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from aro.core.command_line import HelpFormatter, available_cores, hub_repo_id
from aro.core.errors import InvalidInput
from aro.core.io import push_folder
from aro.core.protocol import PROTOCOLS
from aro.metrics.scoring.bootstrap import DEFAULT_DRAWS

METRIC_FOLDER = Path(__file__).parent / "aro_accuracy"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="score vision-language models on ARO", description=__doc__, formatter_class=HelpFormatter
    )
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument(
        "--model",
        action="append",
        help="Hub id or local path of a model, or an open_clip model (hf-hub:ORG/NAME, open_clip:ARCH:PRETRAINED); "
        "repeat to compare several",
    )
    models.add_argument("--models-file", type=Path, help="a text file listing models, one per line")
    models.add_argument(
        "--scorer",
        metavar="MODULE:FUNCTION",
        help="your own scorer instead of a model: a function score(images, captions) -> one number per pair, higher = "
        "better match, named as module:function or path/to/file.py:function",
    )
    parser.add_argument(
        "--blind",
        metavar="MODEL",
        help="also score a causal language model's text-only baseline (Hub id or path) and report it beside the "
        "model, loaded and run as the model is (--dtype, --device-map, ...) (default: none)",
    )
    parser.add_argument("--revision", help="model revision (default: the default branch)")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model's own code (NegCLIP from the Hub)"
    )
    parser.add_argument("--dataset", default="aro", help="Hub id (ORG/NAME) or local folder of the ARO dataset")
    parser.add_argument("--dataset-revision", help="dataset revision (default: the default branch)")
    parser.add_argument(
        "--config",
        default="all",
        help="relation, attribution, coco_order, flickr30k_order, a comma-separated list, or all",
    )
    parser.add_argument(
        "--dataset-id",
        type=hub_repo_id,
        metavar="ORG/NAME",
        help="the Hub repo a local --dataset is published as, for model-index and .eval_results",
    )
    parser.add_argument(
        "--protocol",
        default="paper",
        choices=tuple(PROTOCOLS),
        help="paper (default); none: every group in the macro accuracy; clip_benchmark: CLIP_benchmark's rule (ties "
        "wrong, nothing excluded, micro accuracy first); mteb: mteb's rule (ties with the true caption right, nothing "
        "excluded, micro accuracy first)",
    )
    parser.add_argument(
        "--limit", type=int, help="score a seeded random subsample of N items per config (a sanity run)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --limit and of the bootstrap")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_DRAWS,
        metavar="DRAWS",
        help=f"bootstrap resamples for the 95%% intervals (default {DEFAULT_DRAWS}; 0: none)",
    )
    parser.add_argument(
        "--save-scores",
        action="store_true",
        help="also write every item's scores and prediction (and the --blind model's beside them) to "
        "scores/<config>.parquet",
    )
    parser.add_argument(
        "--push-results",
        type=hub_repo_id,
        metavar="ORG/MODEL",
        help="open a pull request adding .eval_results/aro.yaml to this model repo",
    )
    add_runtime_arguments(parser)
    generative = parser.add_argument_group(
        "generative models (LLaVA, Qwen2-VL, Idefics3, Gemma 3, PaliGemma, BLIP-2...)"
    )
    generative.add_argument(
        "--score",
        choices=("vqa", "likelihood"),
        help="vqa: VQAScore, P(Yes) to a yes/no question about the caption; likelihood: the caption's mean "
        "log-probability (default: vqa)",
    )
    generative.add_argument(
        "--prompt-template",
        help="a format string around {prompt} that places the image token (default: the processor's chat template)",
    )
    generative.add_argument(
        "--question",
        help='the VQAScore question around {caption} (default: \'Does this figure show "{caption}"? Please answer '
        "yes or no.')",
    )
    generative.add_argument(
        "--caption-prompt",
        help="the request that the caption answers for --score likelihood (default: 'Write a short caption for "
        "this image.')",
    )
    generative.add_argument(
        "--answer", help="the answer whose probability is VQAScore, one token at the answer position (default: 'Yes')"
    )
    generative.add_argument(
        "--negative-answer", help="the answer it is weighed against in the recorded yes-rates (default: 'No')"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("aro-eval"),
        help="folder for results.json, results.md, plots, model-index.yaml, .eval_results/ (an earlier run's is "
        "replaced)",
    )
    parser.set_defaults(func=_run_eval)

    push = subparsers.add_parser(
        "push-metric", help="publish the aro_accuracy evaluate module as a Space", formatter_class=HelpFormatter
    )
    push.add_argument("repo_id", type=hub_repo_id, metavar="ORG/aro_accuracy", help="the Space to create or update")
    push.add_argument("--private", action="store_true", help="make the Space private")
    push.set_defaults(func=_run_push)


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of where and how a model runs (`Runtime`'s), as `aro eval` and `aro retrieval` take them."""
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="images, captions or pairs per forward pass; items for generative models (halved on CUDA out-of-memory)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=min(4, available_cores()),
        help="DataLoader workers decoding images (default: 4, or the cores this process may use where fewer)",
    )
    placement = parser.add_argument_group("weights and devices")
    placement.add_argument("--device", help="cuda, cuda:N, mps or cpu (default: the best available)")
    placement.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "fp16"),
        default=None,
        help="the dtype the weights are loaded in, whatever the checkpoint was saved in; on CUDA the forward also "
        "autocasts to it, elsewhere every operation runs in it (default: fp32)",
    )
    placement.add_argument(
        "--device-map",
        metavar="auto",
        help="spread one model over the GPUs, then the CPU, then the disk (accelerate's big-model loading: auto, "
        "balanced, balanced_low_0 or sequential), for a model larger than one GPU; its inputs go to its first GPU. "
        "One process; not with --device (default: none, the whole model on --device)",
    )
    placement.add_argument(
        "--max-memory",
        metavar="DEVICE=SIZE,...",
        help="with --device-map: the most each device holds, e.g. 0=70GiB,1=70GiB,cpu=200GiB; what does not fit goes "
        "to the disk (default: what each device has free)",
    )
    placement.add_argument(
        "--offload-folder",
        metavar="FOLDER",
        help="with --device-map: where weights go to the disk when transformers must re-save them (a checkpoint that "
        "is not safetensors); safetensors weights are read in place. A new folder is made inside it and removed "
        "after the run (default: none)",
    )
    placement.add_argument(
        "--attn-implementation",
        metavar="NAME",
        help="eager, sdpa, flash_attention_2, flash_attention_3, flex_attention, or a Hub kernel, passed to "
        "from_pretrained; refused where the model class has no such implementation (default: the model's own)",
    )


def runtime_from(args: argparse.Namespace, distributed=None):
    """The `Runtime` of the options `add_runtime_arguments` added (checked here, before any model loads)."""
    from aro.metrics.scoring.runtime import Runtime  # here: `aro eval --help` must not import torch

    return Runtime(
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        distributed=distributed,
        device_map=args.device_map,
        max_memory=args.max_memory,
        offload_folder=args.offload_folder,
        attn_implementation=args.attn_implementation,
    )


def _run_eval(args: argparse.Namespace) -> int:
    # Here, not at the top: `aro eval --help` must not import torch, transformers or datasets.
    from aro.metrics.scoring.adapters import load_hook
    from aro.metrics.scoring.adapters.prompts import GenerativePrompts
    from aro.metrics.scoring.evaluation import EvalOptions, read_models_file
    from aro.metrics.scoring.hub_files import push_eval_results
    from aro.metrics.scoring.launch import evaluate_launched
    from aro.metrics.scoring.tables import artifact_tables, blind_table, results_table

    models = read_models_file(args.models_file) if args.models_file else args.model or []
    if args.push_results and len(models) > 1:
        raise InvalidInput("--push-results takes one model: its results go to that model's repo")
    prompt_options = {
        "template": args.prompt_template,
        "question": args.question,
        "caption_prompt": args.caption_prompt,
        "answer": args.answer,
        "negative_answer": args.negative_answer,
    }
    prompt_options = {name: value for name, value in prompt_options.items() if value is not None}
    options = EvalOptions(
        runtime=runtime_from(args),
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
        dataset_revision=args.dataset_revision,
        dataset_id=args.dataset_id,
        protocol=args.protocol,
        limit=args.limit,
        seed=args.seed,
        bootstrap_draws=args.bootstrap,
        save_scores=args.save_scores,
        blind=args.blind,
        score=args.score,
        prompts=GenerativePrompts(**prompt_options) if prompt_options else None,
    )
    configs = args.config if args.config == "all" else args.config.split(",")
    models = [load_hook(args.scorer)] if args.scorer else models
    runs, is_main = evaluate_launched(models, args.dataset, args.out, configs, options)
    if not is_main:
        return 0
    for result in runs:
        print(f"## {result.model}\n\n{results_table(result)}\n")
        if args.blind:
            print(blind_table(result) + "\n")
        for table in artifact_tables(result):
            print(table + "\n")
        for line in result.not_written:
            print(f"note: {line}")
    if len(runs) > 1:
        print((args.out / "comparison.md").read_text())
    print(f"results, plots and the Hub files are in {args.out}/")
    if args.push_results:
        print(f"opened {push_eval_results(args.out, args.push_results)}")
    return 0


def push_metric(repo_id: str, private: bool = False) -> str:
    """Upload the module folder as a Gradio Space, as evaluate's own metrics are published.

    The folder's `protocol.py` and `contract.py` are links to `aro.core`'s; the upload carries copies of the files, so
    the Space is self-contained.
    """
    with tempfile.TemporaryDirectory() as staging:
        folder = shutil.copytree(
            METRIC_FOLDER, Path(staging) / "aro_accuracy", ignore=shutil.ignore_patterns("__pycache__", "__init__.py")
        )
        return push_folder(folder, repo_id, repo_type="space", private=private, space_sdk="gradio")


def _run_push(args: argparse.Namespace) -> int:
    print(f"pushed to {push_metric(args.repo_id, args.private)}")
    return 0
