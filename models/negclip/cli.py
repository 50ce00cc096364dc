"""`aro mine` (hard negatives into a Parquet cache) and `aro train` (CLIP into NegCLIP).

The flags are the fields of the arguments dataclasses, written as `transformers.HfArgumentParser` writes them
(without importing transformers, so that `--help` answers at once): `aro train` takes those of
`NegCLIPTrainingArguments` (`--learning-rate`, `--no-hard-negatives`, ...), `aro mine` those of `MiningParameters`
and `MiningOutput`. `--args-file run.yaml` (or `.json`) reads the same names from a file, each value checked as its
flag would be; flags given after it override it. For several GPUs: `accelerate launch -m aro.cli train ...` (or
`torchrun`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from aro.core.errors import InvalidInput

from .arguments import MiningParameters, NegCLIPTrainingArguments


@dataclass
class MiningOutput:
    """Where and how `aro mine` runs; not part of what the cache was mined from."""

    out: str | None = field(
        default=None,
        metadata={
            "help": "the Parquet cache to write (new, or an earlier cache); "
            "unset: <dataset>-negclip-mining/<config>-<split>.parquet beside a local dataset"
        },
    )
    batch_size: int = field(default=256, metadata={"help": "images per batch when embedding"})
    device: str | None = field(default=None, metadata={"help": "cuda, mps or cpu; unset: the best available"})


def register(subparsers) -> None:
    mine = _add_dataclass_parser(
        subparsers,
        "mine",
        (MiningParameters, MiningOutput),
        "mine NegCLIP hard negatives (swapped captions, nearest images)",
    )
    mine.set_defaults(func=_run_mine)
    train = _add_dataclass_parser(
        subparsers, "train", (NegCLIPTrainingArguments,), "fine-tune CLIP into NegCLIP (defaults: the paper's recipe)"
    )
    train.set_defaults(func=_run_train)


def _add_dataclass_parser(subparsers, name: str, dataclass_types: tuple, summary: str) -> argparse.ArgumentParser:
    """A subcommand whose flags are the dataclasses' fields (help and defaults shown), plus `--args-file`."""
    parser = subparsers.add_parser(
        name, help=summary, description=f"{summary}.", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        for field_ in dataclasses.fields(cls):
            _add_field(parser, field_, hints[field_.name])
    parser.add_argument(
        "--args-file",
        action=_ArgsFile,
        metavar="FILE",
        default=None,
        help="a YAML or JSON file of these options (their names with underscores); flags after it override it",
    )
    parser.set_defaults(dataclass_types=dataclass_types, args_file_error=None)
    return parser


def _add_field(parser: argparse.ArgumentParser, field_: dataclasses.Field, hint) -> None:
    """One field as a flag, as HfArgumentParser writes it: `--name` and `--name-with-dashes`; a bool takes an
    optional value (`--augment false`) and, when on by default, `--no-name`; a Literal its choices; a list one or
    more values; a field without default is required."""
    names = dict.fromkeys([f"--{field_.name}", f"--{field_.name.replace('_', '-')}"])
    options: dict = {"dest": field_.name, "help": field_.metadata.get("help")}
    if field_.default is not dataclasses.MISSING:
        options["default"] = field_.default
    elif field_.default_factory is not dataclasses.MISSING:
        options["default"] = field_.default_factory()
    else:
        options["required"] = True
    hint = (
        next((part for part in typing.get_args(hint) if part is not type(None)), hint)
        if type(None) in typing.get_args(hint)
        else hint
    )
    if hint is bool:
        parser.add_argument(*names, type=_to_bool, nargs="?", const=True, **options)
        if options.get("default") is True:
            no = dict.fromkeys([f"--no_{field_.name}", f"--no-{field_.name.replace('_', '-')}"])
            parser.add_argument(
                *no,
                action="store_false",
                dest=field_.name,
                default=argparse.SUPPRESS,
                help=f"turn {list(names)[-1]} off",
            )
    elif typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        parser.add_argument(*names, type=type(choices[0]), choices=choices, **options)
    elif typing.get_origin(hint) is list:
        parser.add_argument(*names, type=typing.get_args(hint)[0], nargs="+", **options)
    else:
        parser.add_argument(*names, type=hint, **options)


def _to_bool(value: str) -> bool:
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {value!r}")


class _ArgsFile(argparse.Action):
    """Sets the options named in a YAML/JSON file when met on the command line, so later flags override them.

    Each value is converted and checked as its flag's text would be; the first problem (an unreadable file, an
    unknown option, a value its flag would refuse) is kept and reported in one line when the command runs.
    """

    def __call__(self, parser, namespace, path, option_string=None):
        flags = {}
        for action in parser._actions:
            flags.setdefault(action.dest, action)  # a `--no-x` switch comes after the flag that takes a value
        known = {option.name for cls in namespace.dataclass_types for option in dataclasses.fields(cls)}
        try:
            text = Path(path).read_text()
            values = yaml.safe_load(text) if Path(path).suffix in (".yaml", ".yml") else json.loads(text)
            if not isinstance(values, dict):
                raise ValueError(f"holds a {type(values).__name__}, not a mapping of option names to values")
            unknown = sorted(str(name) for name in values if name not in known)
            if unknown:
                raise ValueError(f"unknown options {', '.join(unknown)}")
            for name, value in values.items():
                setattr(namespace, name, _file_value(flags[name], value, name))
        except (OSError, ValueError, yaml.YAMLError) as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            namespace.args_file_error = namespace.args_file_error or f"{option_string} {path}: {reason}"


def _file_value(flag: argparse.Action, value, name: str):
    """`value` from an options file as the flag `flag` would take it: text converted by the flag's type (YAML reads
    "1e-5" as a string, as the command line would), a list item by item, the choices checked; a ValueError naming
    the option otherwise."""
    kind = "true or false" if flag.type is _to_bool else f"{flag.type.__name__} value"

    def convert(item):
        if isinstance(item, bool) and flag.type is _to_bool:
            return item
        if item is None or isinstance(item, (list, dict)):
            raise ValueError(f"{name}: expected one {kind}, not {item!r}")
        try:
            converted = flag.type(str(item))
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            raise ValueError(f"{name}: {item!r} is not a valid {kind}") from None
        if flag.choices and converted not in flag.choices:
            raise ValueError(f"{name}: {converted!r} is not one of {', '.join(map(repr, flag.choices))}")
        return converted

    if value is None and flag.default is None:
        return None
    if flag.nargs == "+":
        if not isinstance(value, list) or not value:
            raise ValueError(f"{name}: expected a list of values, not {value!r}")
        return [convert(item) for item in value]
    return convert(value)


def _instances(args: argparse.Namespace) -> list:
    """The dataclasses filled from the parsed flags (a problem of `--args-file` is refused here, in one line)."""
    if args.args_file_error:
        raise InvalidInput(args.args_file_error)
    return [
        cls(**{option.name: getattr(args, option.name) for option in dataclasses.fields(cls)})
        for cls in args.dataclass_types
    ]


def _run_mine(args: argparse.Namespace) -> int:
    parameters, output = _instances(args)
    # Here: accelerate, torch and the miner would make `--help` take seconds.
    from aro.metrics.scoring.launch import launched_processes

    from .mining import NegativeShare, load_cache, mine

    with launched_processes() as processes:  # one process, or each of `accelerate launch`'s: they share the work
        device = output.device or (str(processes.device) if processes.num_processes > 1 else None)
        path = mine(parameters, output.out, batch_size=output.batch_size, device=device, distributed=processes)
    if processes.is_main_process:
        share = NegativeShare.of(load_cache(path, "--out")[0])
        print(f"mining cache written to {path}: {share} have a swapped-word negative")
    return 0


def _run_train(args: argparse.Namespace) -> int:
    (arguments,) = _instances(args)
    from .training import train  # here: torch, transformers and datasets would make `--help` take seconds

    print(f"model, processor, logs and card in {train(arguments)}")
    return 0
