"""Placeholder: this area's subcommands are registered here."""


def register(subparsers) -> None:
    """Add this area's subcommands to the `aro` parser."""
