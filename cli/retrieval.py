"""`aro retrieval`: image-text retrieval with the captions as written and with their words shuffled (the paper's
"why"), and optionally zero-shot classification, for any dual encoder.

    aro retrieval --model openai/clip-vit-base-patch32 --dataset ORG/aro --config coco_retrieval
    aro retrieval --model ./negclip --dataset ORG/aro --zero-shot uoft-cs/cifar10 --image-column img --label-column label

For several processes: `accelerate launch -m aro.cli retrieval ...` (or `torchrun -m aro.cli retrieval ...`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aro.core.command_line import HelpFormatter
from aro.core.errors import InvalidInput


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "retrieval",
        help="retrieval with shuffled captions, and zero-shot classification",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="Hub id or local path of a dual encoder (CLIP, NegCLIP, SigLIP, ...)"
    )
    parser.add_argument("--revision", help="model revision")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model's own code (NegCLIP from the Hub)"
    )
    parser.add_argument(
        "--dataset", help="Hub id or local folder of a dataset built by `aro build` (leave out for zero-shot only)"
    )
    parser.add_argument("--dataset-revision", help="dataset revision")
    parser.add_argument(
        "--config", default="coco_retrieval", help="coco_retrieval or flickr30k_retrieval (default: coco_retrieval)"
    )
    parser.add_argument("--no-perturbations", action="store_true", help="retrieve with the original captions only")
    # Left unset, these take `ZeroShotTask`'s defaults (CIFAR-10 as the Hub has it).
    zero_shot = parser.add_argument_group("zero-shot classification")
    zero_shot.add_argument("--zero-shot", metavar="DATASET", help="a labelled image dataset, e.g. uoft-cs/cifar10")
    zero_shot.add_argument("--zero-shot-config", dest="config_name")
    zero_shot.add_argument("--zero-shot-split", dest="split", help="default: test")
    zero_shot.add_argument("--image-column", help="default: img (CIFAR-10)")
    zero_shot.add_argument("--label-column", help="default: label")
    zero_shot.add_argument(
        "--templates", nargs="+", help='prompt templates with {} for the class name (default: "a photo of a {}.")'
    )
    zero_shot.add_argument(
        "--class-names", nargs="+", help="class names in label order (default: the label column's names)"
    )
    zero_shot.add_argument("--max-images", type=int, help="classify the first N images only")
    card = parser.add_argument_group("model card")
    card.add_argument(
        "--card",
        action="store_true",
        help="rewrite the card of a model trained by `aro train` (--model is its folder) with these results",
    )
    card.add_argument(
        "--base-results",
        type=Path,
        help="results.json of `aro retrieval` on the base model, for the card to compare with",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default=None, help="autocast dtype on GPU")
    parser.add_argument("--num-workers", type=int, default=4, help="DataLoader workers decoding images")
    parser.add_argument(
        "--out", type=Path, default=Path("aro-retrieval"), help="folder for results.json, results.md, retrieval.png"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from aro.metrics.scoring.checks import check_at_least_one, read_results_json
    from aro.metrics.scoring.downstream import downstream_table, evaluate_downstream
    from aro.metrics.scoring.launch import launch_state
    from aro.metrics.scoring.zero_shot import ZeroShotTask

    if args.dataset is None and args.zero_shot is None:
        raise InvalidInput("give --dataset (retrieval), --zero-shot DATASET, or both")
    check_at_least_one("--max-images", args.max_images)
    base = read_results_json(args.base_results) if args.base_results else None  # before the run, not after it
    task = None
    if args.zero_shot:
        given = {
            "config": args.config_name,
            "split": args.split,
            "image_column": args.image_column,
            "label_column": args.label_column,
            "templates": tuple(args.templates or ()) or None,
            "class_names": tuple(args.class_names or ()) or None,
            "max_images": args.max_images,
        }
        task = ZeroShotTask(args.zero_shot, **{name: value for name, value in given.items() if value is not None})
    distributed = launch_state()
    results = evaluate_downstream(
        args.model,
        args.dataset,
        args.config,
        zero_shot=task,
        output_dir=args.out,
        perturbations=not args.no_perturbations,
        revision=args.revision,
        dataset_revision=args.dataset_revision,
        trust_remote_code=args.trust_remote_code,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        num_workers=args.num_workers,
        distributed=distributed,
    )
    if getattr(distributed, "is_main_process", True):
        print(downstream_table(results))
        print(f"\nresults and the retrieval plot are in {args.out}/")
        if args.card:
            from aro.models.negclip.card import write_card_with_downstream

            print(f"card rewritten: {write_card_with_downstream(args.model, results, base)}")
    return 0
