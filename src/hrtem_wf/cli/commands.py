"""How a subcommand is declared and run: a `Command` names its entry, a function of the library
("module:function"), and its arguments; `hrtem-wf` parses them and calls the entry with them
as keyword arguments, named as the options (--dataset-zarr -> dataset_zarr)."""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass


def arg(*flags: str, **options) -> tuple[tuple[str, ...], dict]:
    """One argument of a command: `argparse.ArgumentParser.add_argument(*flags, **options)`."""
    return flags, options


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, the function it calls, its help and its arguments; `imports`:
    modules imported before the clock starts, so that the log's "done in" is the work alone."""

    name: str
    entry: str
    help: str
    arguments: tuple = ()
    imports: tuple[str, ...] = ()


def add_command(subparsers: argparse._SubParsersAction, command: Command) -> None:
    """Add `command` to the `hrtem-wf` parser."""
    parser = subparsers.add_parser(command.name, help=command.help)
    options = tuple(
        parser.add_argument(*flags, **kwargs).dest for flags, kwargs in command.arguments
    )
    parser.set_defaults(entry=command.entry, options=options, imports=command.imports)


def call(args: argparse.Namespace):
    """Call the parsed command's entry with its options (its module imported now)."""
    module, _, function = args.entry.partition(":")
    entry = getattr(importlib.import_module(module), function)
    return entry(**{option: getattr(args, option) for option in args.options})
