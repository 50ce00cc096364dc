"""`aro convert`: an open_clip checkpoint into a transformers CLIPModel (or NegCLIPModel) folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from aro.core.command_line import HelpFormatter, hub_repo_id

from .configs import OPEN_CLIP_MODELS


def register(subparsers) -> None:
    convert = subparsers.add_parser(
        "convert",
        help="convert an open_clip checkpoint into a transformers CLIPModel folder",
        description="Convert an open_clip ViT CLIP checkpoint (a state dict or a training checkpoint, read without "
        "executing pickled code) into a CLIPModel folder with a model card recording the converted model's features on "
        "fixed inputs.",
        formatter_class=HelpFormatter,
    )
    convert.add_argument("checkpoint", type=Path, help="open_clip checkpoint: .pt, .pth, .bin or .safetensors")
    convert.add_argument(
        "--open-clip-config",
        required=True,
        help=f"open_clip model name ({', '.join(OPEN_CLIP_MODELS)}) or JSON file "
        "(a model config or an open_clip_config.json)",
    )
    convert.add_argument("--out", type=Path, required=True, help="new folder for the converted model")
    convert.add_argument(
        "--negclip", action="store_true", help="save as NegCLIPModel (a CLIPModel that also computes the NegCLIP loss)"
    )
    convert.add_argument(
        "--processor", default=None, help="Hub id or folder whose processor to copy, e.g. openai/clip-vit-base-patch32"
    )
    convert.add_argument(
        "--push-to-hub",
        default=None,
        type=hub_repo_id,
        metavar="ORG/NAME",
        help="upload the folder to this Hub model repo",
    )
    convert.add_argument("--private", action="store_true", help="create the Hub repo private")
    convert.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .convert import convert_open_clip  # here: torch and transformers would make `--help` take seconds

    out = convert_open_clip(
        args.checkpoint,
        args.open_clip_config,
        args.out,
        negclip=args.negclip,
        processor=args.processor,
        push_to_hub=args.push_to_hub,
        private=args.private,
    )
    print(f"converted model, card and check in {out}" + (f"; pushed to {args.push_to_hub}" if args.push_to_hub else ""))
    return 0
