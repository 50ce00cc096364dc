"""`aro retrieval`: image-text retrieval with the captions as written and with their words shuffled (the paper's
"why"), and optionally zero-shot classification, for any dual encoder.

    aro retrieval --model openai/clip-vit-base-patch32 --dataset ORG/aro --config coco_retrieval
    aro retrieval --model ./negclip --dataset ORG/aro --zero-shot uoft-cs/cifar10 --image-column img \
        --label-column label

For several processes: `accelerate launch -m aro.cli retrieval ...` (or `torchrun -m aro.cli retrieval ...`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aro.core.command_line import HelpFormatter
from aro.core.errors import InvalidInput
from aro.metrics.cli import add_runtime_arguments, runtime_from


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "retrieval",
        help="retrieval with shuffled captions, and zero-shot classification",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        help="Hub id or local path of a dual encoder (CLIP, NegCLIP, SigLIP, ...), or an open_clip model "
        "(hf-hub:ORG/NAME, open_clip:ARCH:PRETRAINED)",
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
    add_runtime_arguments(parser)
    parser.add_argument(
        "--out", type=Path, default=Path("aro-retrieval"), help="folder for results.json, results.md, retrieval.png"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # Here, not at the top: `aro retrieval --help` must not import torch, transformers or datasets.
    from aro.metrics.scoring.downstream import DownstreamResult, evaluate_downstream
    from aro.metrics.scoring.evaluation import EvalOptions
    from aro.metrics.scoring.launch import launched_processes
    from aro.metrics.scoring.tables import downstream_table
    from aro.metrics.scoring.zero_shot import ZeroShotTask
    from aro.models.negclip.card import write_card_with_downstream

    if args.dataset is None and args.zero_shot is None:
        raise InvalidInput("give --dataset (retrieval), --zero-shot DATASET, or both")
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
    base = (
        DownstreamResult.read(args.base_results, "--base-results") if args.base_results else None
    )  # checked before the run
    with launched_processes() as distributed:
        options = EvalOptions(
            runtime=runtime_from(args, distributed),
            revision=args.revision,
            trust_remote_code=args.trust_remote_code,
            dataset_revision=args.dataset_revision,
        )
        result = evaluate_downstream(
            args.model,
            args.dataset,
            args.config,
            zero_shot=task,
            output_dir=args.out,
            perturbations=not args.no_perturbations,
            options=options,
        )
    if distributed.is_main_process:
        print(downstream_table(result))
        print(f"\nresults and the retrieval plot are in {args.out}/")
        if args.card:
            print(f"card rewritten: {write_card_with_downstream(args.model, result, base)}")
    return 0
