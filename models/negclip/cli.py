"""`aro mine` (hard negatives into a Parquet cache) and `aro train` (CLIP into NegCLIP).

The flags are the fields of the arguments dataclasses, through `transformers.HfArgumentParser`: `aro train` takes
those of `NegCLIPTrainingArguments` (`--learning-rate`, `--no-hard-negatives`, ...), `aro mine` those of
`MiningParameters` and `MiningOutput`. `--args-file run.yaml` (or `.json`) reads the same names from a file;
flags given after it override it. For several GPUs: `accelerate launch -m aro.cli train ...` (or `torchrun`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class MiningOutput:
    """Where and how `aro mine` runs; not part of what the cache was mined from."""

    out: str | None = field(default=None, metadata={"help": "the Parquet cache to write; unset: <dataset>/negclip-mining/<config>-<split>.parquet for a local dataset"})
    batch_size: int = field(default=256, metadata={"help": "images per batch when embedding"})
    device: str | None = field(default=None, metadata={"help": "cuda, mps or cpu; unset: the best available"})


def register(subparsers) -> None:
    from .arguments import MiningParameters, NegCLIPTrainingArguments

    mine = _add_dataclass_parser(subparsers, "mine", (MiningParameters, MiningOutput), "mine NegCLIP hard negatives (swapped captions, nearest images)")
    mine.set_defaults(func=_run_mine)
    train = _add_dataclass_parser(subparsers, "train", (NegCLIPTrainingArguments,), "fine-tune CLIP into NegCLIP (defaults: the paper's recipe)")
    train.set_defaults(func=_run_train)


def _add_dataclass_parser(subparsers, name: str, dataclass_types: tuple, summary: str) -> argparse.ArgumentParser:
    """A subcommand whose flags are the dataclasses' fields (help and defaults shown), plus `--args-file`."""
    from transformers import HfArgumentParser

    fields = HfArgumentParser(dataclass_types, add_help=False)
    parser = subparsers.add_parser(
        name, help=summary, description=f"{summary}.", parents=[fields], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--args-file", action=_ArgsFile, metavar="FILE", default=None,
        help="a YAML or JSON file of these options (their names with underscores); flags after it override it",
    )
    parser.set_defaults(dataclass_types=dataclass_types)
    return parser


class _ArgsFile(argparse.Action):
    """Sets the options named in a YAML/JSON file when met on the command line, so later flags override them."""

    def __call__(self, parser, namespace, path, option_string=None):
        import yaml

        try:
            values = yaml.safe_load(Path(path).read_text()) if Path(path).suffix in (".yaml", ".yml") else json.loads(Path(path).read_text())
        except (OSError, ValueError, yaml.YAMLError) as error:
            parser.error(f"{option_string} {path}: {error}")
        names = {field.name for cls in namespace.dataclass_types for field in dataclasses.fields(cls)}
        unknown = sorted(set(values or {}) - names) if isinstance(values, dict) else ["(not a mapping)"]
        if unknown:
            parser.error(f"{option_string} {path}: unknown options {', '.join(unknown)}")
        converters = {action.dest: action.type for action in parser._actions}
        for name, value in values.items():
            # YAML reads "1e-5" as a string, as the command line would: convert it as the flag's own type does.
            setattr(namespace, name, converters[name](value) if isinstance(value, str) and converters.get(name) else value)


def _instances(args: argparse.Namespace) -> list:
    """The dataclasses filled from the parsed flags."""
    return [cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)}) for cls in args.dataclass_types]


def _run_mine(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from .mining import mine

    parameters, output = _instances(args)
    processes = PartialState()  # one process, or each of `accelerate launch`'s: they share the work
    device = output.device or (str(processes.device) if processes.num_processes > 1 else None)
    path = mine(parameters, output.out, batch_size=output.batch_size, device=device, distributed=processes)
    if processes.is_main_process:
        print(f"mining cache written to {path}")
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from .training import train

    (arguments,) = _instances(args)
    print(f"model, processor, logs and card in {train(arguments)}")
    return 0
