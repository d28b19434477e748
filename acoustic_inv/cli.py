"""The ``acoustic-inv`` command line.

Each command lives in its own module that exposes ``register(subparsers)``; the module adds one
sub-parser and sets ``func`` (called with the parsed namespace, returning an exit code or None).
A :class:`~acoustic_inv.errors.UserError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from acoustic_inv.errors import UserError

# Modules that register commands, in the order their commands appear in --help.
_COMMAND_MODULES: tuple[str, ...] = (
    "acoustic_inv.doctor_cli",
    "acoustic_inv.field_cli",
    "acoustic_inv.simulate_cli",
    "acoustic_inv.dataset_cli",
    "acoustic_inv.train_cli",
    "acoustic_inv.ensemble_cli",
    "acoustic_inv.invert_cli",
    "acoustic_inv.evaluate_cli",
    "acoustic_inv.demo_cli",
    "acoustic_inv.plot_cli",
    "acoustic_inv.reference_cli",
)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def seed(text: str) -> int:
    """argparse type: a random seed, an integer in [0, 2^63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{value} is not a seed in [0, 2^63)")
    return value


def number(text: str) -> float:
    """argparse type: a float."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def build_parser() -> argparse.ArgumentParser:
    """Builds the top-level parser with every registered sub-command."""
    from acoustic_inv import __version__

    parser = argparse.ArgumentParser(
        prog="acoustic-inv",
        description="Amortized Bayesian ocean-acoustic inversion with invertible networks.",
    )
    parser.add_argument("--version", action="version", version=f"acoustic-inv {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"acoustic-inv {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"acoustic-inv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
