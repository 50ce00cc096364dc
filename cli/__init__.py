"""The `aro` command line: one program, a subcommand per job.

    aro build   ...   build the four ARO configs into a Hub-ready folder (and push it)
    aro eval    ...   score a vision-language model on ARO with the paper's protocol
    aro push-metric   publish the `aro_accuracy` evaluate module as a Space
    aro retrieval ... retrieval with shuffled captions (the paper's "why"), and zero-shot classification
    aro mine    ...   mine NegCLIP hard negatives (swapped captions, nearest images)
    aro train   ...   fine-tune CLIP into NegCLIP
    aro convert ...   convert an open_clip checkpoint (OpenCLIP, the released NegCLIP) into a transformers CLIPModel
    aro demo    ...   the whole pipeline offline on a synthetic world

Each area registers its own subcommands through a `register(subparsers)` function; only the module of the
command being run is imported (the others appear in `aro --help` by their summary alone), and the work itself (and
every heavy import) happens inside the command, so `aro --help` and `aro <command> --help` load no torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from aro.core.errors import AroError

# Each command: the module whose `register(subparsers)` adds it, and its summary in `aro --help`.
COMMANDS = {
    "build": ("aro.builders.cli", "build the ARO dataset folder (and push it to the Hub)"),
    "eval": ("aro.metrics.cli", "score a vision-language model on ARO"),
    "push-metric": ("aro.metrics.cli", "publish the aro_accuracy evaluate module as a Space"),
    "retrieval": (
        "aro.cli.retrieval",
        'retrieval with shuffled captions (the paper\'s "why"), and zero-shot classification',
    ),
    "mine": ("aro.models.negclip.cli", "mine NegCLIP hard negatives (swapped captions, nearest images)"),
    "train": ("aro.models.negclip.cli", "fine-tune CLIP into NegCLIP"),
    "convert": (
        "aro.models.open_clip_conversion.cli",
        "convert an open_clip checkpoint into a transformers CLIPModel folder",
    ),
    "demo": ("aro.cli.demo", "run the whole pipeline offline on a synthetic world"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `aro` parser with `command` (when it is one) fully registered, every other command by its summary."""
    parser = argparse.ArgumentParser(
        prog="aro", description="The ARO benchmark and NegCLIP on the Hugging Face ecosystem."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command][0]).register(subparsers)
    for name, (_, summary) in COMMANDS.items():
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(next((arg for arg in argv if not arg.startswith("-")), None)).parse_args(argv)
    try:
        return args.func(args) or 0
    except AroError as error:  # the user's input, named in the message; anything else is a bug: its traceback shows
        print(f"aro {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every output is written beside its target and moved in whole (aro.core.io)
        print(
            f"aro {args.command}: stopped (Ctrl-C); nothing was replaced, an earlier output is as it was",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
