"""`aro eval` (score a model on ARO with the paper's protocol) and `aro push-metric` (publish the module).

    aro eval --model openai/clip-vit-base-patch32 --blind gpt2    # a Hub model, beside a text-only baseline
    aro eval --scorer my_scorer.py:score                          # your own score(images, captions) function
    python -m torch.distributed.run --nproc_per_node 2 -m aro.cli eval --model ...   # several processes
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aro.cli import HelpFormatter

METRIC_FOLDER = Path(__file__).parent / "aro_accuracy"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="score a vision-language model on ARO", description=__doc__, formatter_class=HelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="Hub id or local path of the model")
    what.add_argument(
        "--scorer", metavar="MODULE:FUNCTION",
        help="your own scorer instead of a model: a function score(images, captions) -> one number per pair, higher = "
        "better match, named as module:function or path/to/file.py:function",
    )
    parser.add_argument(
        "--blind", metavar="MODEL",
        help="also score a causal language model's text-only baseline (Hub id or path) and report it beside the model (default: none)",
    )
    parser.add_argument("--revision", help="model revision (default: the default branch)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (NegCLIP from the Hub)")
    parser.add_argument("--dataset", default="aro", help="Hub id (ORG/NAME) or local folder of the ARO dataset")
    parser.add_argument("--dataset-revision", help="dataset revision (default: the default branch)")
    parser.add_argument("--config", default="all", help="relation, attribution, coco_order, flickr30k_order, a comma-separated list, or all")
    parser.add_argument("--protocol", default="paper", choices=("paper", "none"), help="'none' keeps every group in the macro accuracy")
    parser.add_argument("--batch-size", type=int, default=64, help="images, captions or pairs per forward pass (halved on CUDA out-of-memory)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default=None, help="autocast dtype, CUDA only (default: fp32)")
    parser.add_argument("--num-workers", type=int, default=4, help="DataLoader workers decoding images")
    parser.add_argument(
        "--out", type=Path, default=Path("aro-eval"), help="folder for results.json, results.md, plots, model-index.yaml (an earlier run's is replaced)"
    )
    parser.set_defaults(func=_run_eval)

    push = subparsers.add_parser(
        "push-metric", help="publish the aro_accuracy evaluate module as a Space", formatter_class=HelpFormatter
    )
    push.add_argument("repo_id", metavar="ORG/aro_accuracy", help="the Space to create or update")
    push.add_argument("--private", action="store_true", help="make the Space private")
    push.set_defaults(func=_run_push)


def _run_eval(args: argparse.Namespace) -> int:
    from aro.metrics.scoring.adapters import load_hook
    from aro.metrics.scoring.launch import evaluate_launched
    from aro.metrics.scoring.report import blind_table, results_table

    configs = args.config if args.config == "all" else args.config.split(",")
    results, is_main = evaluate_launched(
        load_hook(args.scorer) if args.scorer else args.model, args.dataset, configs, output_dir=args.out, revision=args.revision,
        dataset_revision=args.dataset_revision, trust_remote_code=args.trust_remote_code, protocol=args.protocol,
        batch_size=args.batch_size, device=args.device, dtype=args.dtype, num_workers=args.num_workers, blind=args.blind,
    )
    if is_main:
        print(results_table(results))
        if args.blind:
            print("\n" + blind_table(results))
        print(f"\nresults, plots and a model-index snippet are in {args.out}/")
    return 0


def push_metric(repo_id: str, private: bool = False) -> str:
    """Upload the module folder as a Gradio Space, as evaluate's own metrics are published.

    The folder's `protocol.py` is a link to the scoring library's; the upload carries a copy of the file, so the
    Space is self-contained.
    """
    import shutil
    import tempfile

    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        folder = shutil.copytree(METRIC_FOLDER, Path(staging) / "aro_accuracy", ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="space")
    return str(url)


def _run_push(args: argparse.Namespace) -> int:
    print(f"pushed to {push_metric(args.repo_id, args.private)}")
    return 0
