"""`aro mine` (hard negatives into a Parquet cache) and `aro train` (CLIP into NegCLIP).

`aro train`'s flags are the fields of `NegCLIPTrainingArguments`, one to one (`--learning-rate`, `--no-hard-negatives`,
...). For several GPUs: `accelerate launch -m aro.cli train ...` (or `torchrun -m aro.cli train ...`).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per dataclass field: booleans as --x/--no-x, lists as space-separated values."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif typing.get_origin(kind) is list:
            parser.add_argument(flag, nargs="+", default=default)
        else:
            scalar = next((option for option in typing.get_args(kind) if option is not type(None)), kind)
            parser.add_argument(flag, type=scalar, default=default)


def register(subparsers) -> None:
    from .training import NegCLIPTrainingArguments

    mine = subparsers.add_parser("mine", help="mine NegCLIP hard negatives (swapped captions, nearest images)")
    mine.add_argument("--dataset", required=True, help="Hub id or local folder of an image-caption dataset")
    mine.add_argument("--dataset-config", default=None)
    mine.add_argument("--split", default="train")
    mine.add_argument("--image-column", default="image")
    mine.add_argument("--caption-column", default="caption")
    mine.add_argument("--image-id-column", default="image_id")
    mine.add_argument("--clip-model", default="openai/clip-vit-base-patch32", help="the CLIP whose image embeddings find neighbours")
    mine.add_argument("--negatives-per-caption", type=int, default=3)
    mine.add_argument("--neighbours", type=int, default=3)
    mine.add_argument("--seed", type=int, default=0)
    mine.add_argument("--spacy-pipeline", default=None)
    mine.add_argument("--batch-size", type=int, default=256)
    mine.add_argument("--out", type=Path, default=None, help="cache path (default: next to a local dataset)")
    mine.set_defaults(func=_run_mine)

    train = subparsers.add_parser("train", help="fine-tune CLIP into NegCLIP (defaults: the paper's recipe)", description=__doc__)
    _add_dataclass_flags(train, NegCLIPTrainingArguments)
    train.set_defaults(func=_run_train)


def _run_mine(args: argparse.Namespace) -> int:
    from .mining import MiningParameters, mine

    parameters = MiningParameters(
        dataset=args.dataset, config=args.dataset_config, split=args.split, image_column=args.image_column,
        caption_column=args.caption_column, image_id_column=args.image_id_column, clip_model=args.clip_model,
        negatives_per_caption=args.negatives_per_caption, neighbours=args.neighbours, seed=args.seed, spacy_pipeline=args.spacy_pipeline,
    )
    print(f"mining cache written to {mine(parameters, args.out, batch_size=args.batch_size)}")
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from .training import NegCLIPTrainingArguments, train

    names = {field.name for field in dataclasses.fields(NegCLIPTrainingArguments)}
    output = train(NegCLIPTrainingArguments(**{name: value for name, value in vars(args).items() if name in names}))
    print(f"model, processor, logs and card in {output}")
    return 0
