"""``acoustic-inv simulate``: make a training dataset from a scenario (resumable, local pool or Dask).

Example::

    acoustic-inv simulate --scenario vina-gi -n 100000 --out datasets/vina-gi --workers 2 --seed 0

Killed at any moment, the same command continues where it stopped; a finished dataset is never
overwritten without ``--force``.
"""

from __future__ import annotations

import argparse
import sys

from acoustic_inv.errors import ConfigError
from acoustic_inv.cli import positive_int, seed


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``simulate`` command."""
    parser = subparsers.add_parser(
        "simulate", help="simulate a dataset of (theta, x) pairs from a scenario",
        description="Draws parameters from the scenario's prior, runs the propagation engine, adds noise "
                    "and writes the dataset directory PATH (chunks/chunk-NNNNNN.nc, meta.json, "
                    "scenario.toml, failures.nc). Deterministic for a seed whatever --workers; resumable.")
    parser.add_argument("--scenario", "-s", required=True, metavar="S",
                        help="scenario name (in data/scenarios/) or path to a scenario TOML file")
    parser.add_argument("-n", "--n-samples", type=positive_int, required=True, metavar="N",
                        help="number of samples")
    parser.add_argument("--out", "-o", required=True, metavar="PATH", help="dataset directory")
    parser.add_argument("--workers", "-j", type=positive_int, default=1, metavar="K",
                        help="local worker processes (default 1: simulate in this process)")
    parser.add_argument("--seed", type=seed, default=0, help="dataset seed (default 0)")
    parser.add_argument("--chunk-size", type=positive_int, default=None, metavar="C",
                        help="samples per chunk file (default: the scenario's [simulation] chunk_size)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                        help="run on this Dask distributed scheduler instead of the local pool")
    parser.add_argument("--force", action="store_true", help="overwrite an existing dataset at PATH")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``simulate``."""
    from acoustic_inv.datasets import generate
    from acoustic_inv.scenario import load_scenario

    if args.scheduler is not None and args.workers != 1:
        raise ConfigError("--workers and --scheduler exclude each other (the cluster sets the workers)")
    scenario = load_scenario(args.scenario)
    report = generate(scenario, args.out, args.n_samples, seed=args.seed, workers=args.workers,
                      chunk_size=args.chunk_size, scheduler=args.scheduler, force=args.force,
                      progress=not args.no_progress)
    rate = report.samples_per_second
    resumed = f", {report.chunks_skipped} chunk(s) kept from an earlier run" if report.chunks_skipped else ""
    print(f"{report.path}: {report.n_ok} samples of {scenario.name} ({report.n_failed} failed){resumed}; "
          f"simulated {report.samples_computed} in {report.elapsed_s:.1f} s ({rate:.3g} samples/s)")
    if report.n_failed:
        print(f"acoustic-inv simulate: warning: {report.n_failed} engine failure(s) recorded in "
              f"{report.path / 'failures.nc'} (see `acoustic-inv dataset info {report.path}`)",
              file=sys.stderr)
    return 0
