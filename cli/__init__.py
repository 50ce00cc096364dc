"""The `aro` command line: one program, a subcommand per job.

    aro build   ...   build the four ARO configs into a Hub-ready folder (and push it)
    aro eval    ...   score a vision-language model on ARO with the paper's protocol
    aro push-metric   publish the `aro_accuracy` evaluate module as a Space
    aro mine    ...   mine NegCLIP hard negatives (swapped captions, nearest images)
    aro train   ...   fine-tune CLIP into NegCLIP
    aro convert ...   convert an open_clip checkpoint (OpenCLIP, the released NegCLIP) into a transformers CLIPModel
    aro demo    ...   the whole pipeline offline on a synthetic world

Each area registers its own subcommands through a `register(subparsers)` function; the work itself (and most
heavy imports) happens inside the command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# The user's mistakes get one clear line: aro's own code raises ValueError for bad input and these OSErrors for
# paths, naming what and where. The same errors raised inside torch, transformers or datasets, and every other
# error, are failures we did not foresee: they keep their traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)

COMMAND_MODULES = (
    "aro.builders.cli",
    "aro.metrics.cli",
    "aro.models.negclip.cli",
    "aro.models.open_clip_conversion.cli",
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
        if not _raised_by_aro(error):
            raise
        print(f"aro {args.command}: error: {error}", file=sys.stderr)
        return 2


def _raised_by_aro(error: BaseException) -> bool:
    """Whether `error` was raised on purpose by aro's code (the innermost frame of its traceback is an aro module)."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_globals.get("__name__", "").startswith("aro.")


if __name__ == "__main__":
    sys.exit(main())
