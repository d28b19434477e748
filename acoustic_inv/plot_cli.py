"""``acoustic-inv plot ...``: the plot command group.

Each kind of plot is a sub-command registered by a module listed in :data:`_PLOT_MODULES`; the module
exposes ``register_plot(plot_subparsers)`` and adds one sub-parser with ``func`` set. To add
``plot posterior`` or ``plot training``, write that function in the command's module and add the
module's dotted name to the tuple.
"""

from __future__ import annotations

import argparse
import importlib

# Modules that register `plot` sub-commands, in --help order.
_PLOT_MODULES: tuple[str, ...] = (
    "acoustic_inv.dataset_cli",
    "acoustic_inv.plot_posterior_cli",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``plot`` command group."""
    parser = subparsers.add_parser("plot", help="draw figures (datasets, ...)",
                                   description="Draw figures; each sub-command writes one image file.")
    plot_subparsers = parser.add_subparsers(dest="plot_command", required=True, metavar="WHAT")
    for name in _PLOT_MODULES:
        importlib.import_module(name).register_plot(plot_subparsers)
