"""What every `aro` subcommand's parser shares (each area's `cli.py` registers its own subcommands)."""

from __future__ import annotations

import argparse
import os

from .io import repo_id_problem


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and every option's default after its help, unless the help states it in words
    ("(default: the best available)") or the option is required."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def hub_repo_id(value: str) -> str:
    """An argparse `type` for options naming a Hub repo: a malformed id is refused as the command starts."""
    problem = repo_id_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def available_cores() -> int:
    """The CPU cores this process may run on (DataLoader workers beyond them only wait; runs side by side need two)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
