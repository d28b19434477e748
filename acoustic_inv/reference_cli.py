"""``acoustic-inv reference grid``: simulate the grid behind exact reference posteriors.

Example::

    acoustic-inv reference grid --scenario vina-gi --out reference/vina-gi-grid.nc --n-per-axis 41

Runs the scenario's engine (with its ``[engine.options]``) at every cell centre of a regular grid over
the prior box and stores the noise-free pressure (see :mod:`acoustic_inv.reference`). Killed at any
moment, the same command continues where it stopped.
"""

from __future__ import annotations

import argparse
import sys

from acoustic_inv.cli import number, positive_int

#: Default cells per axis of ``reference grid``. On vina-gi no affordable grid resolves the posteriors
#: (centimetres of water depth), so the grid only has to lead the per-observation refinement to the mode:
#: at 41 x 41 the truth's cell was within 30 nats of the best in 23 of 23 test observations.
DEFAULT_N_PER_AXIS = 41


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``reference`` command group (``grid``)."""
    parser = subparsers.add_parser(
        "reference", help="exact reference posteriors on a parameter grid",
        description="Reference posteriors with the exact likelihood, for scenarios with two environment "
                    "parameters.")
    sub = parser.add_subparsers(dest="reference_command", required=True, metavar="ACTION")
    grid = sub.add_parser(
        "grid", help="run the engine on a grid over the prior box (resumable)",
        description="Runs the propagation engine at the cell centres of a regular grid over the prior box "
                    "and writes the noise-free pressure to the netCDF file PATH (finished blocks are kept "
                    "in PATH.parts/ while it runs; the same command resumes). The scenario needs exactly "
                    "two prior parameters, neither the source range nor depth.")
    grid.add_argument("--scenario", "-s", required=True, metavar="S",
                      help="scenario name (in data/scenarios/) or path to a scenario TOML file")
    grid.add_argument("--out", "-o", required=True, metavar="PATH", help="grid file to write (netCDF)")
    size = grid.add_mutually_exclusive_group()
    size.add_argument("--n-per-axis", type=positive_int, default=None, metavar="K",
                      help=f"cells per parameter axis (default {DEFAULT_N_PER_AXIS})")
    size.add_argument("--spacing", type=number, nargs="+", default=None, metavar="W",
                      help="largest cell width, one for all parameters or one per parameter, in the "
                           "parameters' units")
    grid.add_argument("--workers", "-j", type=positive_int, default=1, metavar="W",
                      help="worker processes (default 1: run in this process)")
    grid.add_argument("--force", action="store_true",
                      help="overwrite a grid or unfinished run made with other settings")
    grid.add_argument("--no-progress", action="store_true", help="no progress bar")
    grid.set_defaults(func=run_grid)


def run_grid(args: argparse.Namespace) -> int:
    """Runs ``reference grid``."""
    from acoustic_inv.reference import simulate_grid
    from acoustic_inv.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    n_per_axis = args.n_per_axis
    spacing = args.spacing
    if spacing is not None and len(spacing) == 1:
        spacing = spacing[0]
    if n_per_axis is None and spacing is None:
        n_per_axis = DEFAULT_N_PER_AXIS
    report = simulate_grid(scenario, args.out, n_per_axis, spacing=spacing, workers=args.workers,
                           progress=not args.no_progress, force=args.force)
    if report.points_computed:
        per_point = report.engine_cpu_s / report.points_computed
        done = (f"computed {report.points_computed} point(s) in {report.elapsed_s:.1f} s "
                f"({per_point:.3g} CPU s per point)")
        if report.points_resumed:
            done += f", {report.points_resumed} kept from an earlier run"
    else:
        done = "already complete"
    print(f"{report.path}: {report.n_points} grid points of {scenario.name} ({report.n_failed} failed); {done}")
    if report.n_failed:
        print(f"acoustic-inv reference grid: warning: the engine failed at {report.n_failed} point(s); "
              "their cells get zero posterior mass (see the 'error' variable of the file)", file=sys.stderr)
    return 0
