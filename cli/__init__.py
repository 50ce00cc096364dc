"""The `aro` command line: one program, a subcommand per job.

    aro build   ...   build the four ARO configs into a Hub-ready folder (and push it)
    aro eval    ...   score a vision-language model on ARO with the paper's protocol
    aro push-metric   publish the `aro_accuracy` evaluate module as a Space
    aro mine    ...   mine NegCLIP hard negatives (swapped captions, nearest images)
    aro train   ...   fine-tune CLIP into NegCLIP
    aro demo    ...   the whole pipeline offline on a synthetic world

Each area registers its own subcommands through a `register(subparsers)` function; the work itself (and most
heavy imports) happens inside the command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# The user's mistakes, which get one clear line: the library raises ValueError for bad input and these OSErrors
# for paths. Anything else (a RuntimeError from torch, a hang turned into a timeout) is a bug or a failure of the
# machine, and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)

COMMAND_MODULES = (
    "aro.builders.cli",
    "aro.metrics.cli",
    "aro.models.negclip.cli",
    "aro.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aro", description="The ARO benchmark and NegCLIP on the Hugging Face ecosystem.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except USER_ERRORS as error:
        print(f"aro {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
