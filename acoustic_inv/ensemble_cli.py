"""``acoustic-inv ensemble``: pool trained models into one deep-ensemble model file.

    acoustic-inv ensemble --out ensemble.pt seed0.pt seed1.pt seed2.pt

The members are model files trained alike (same dataset and scenario) from different seeds, e.g.
``acoustic-inv train ... --seed 1``. The ensemble file loads wherever a model file does (``invert``,
``evaluate``, the Python :class:`~acoustic_inv.posterior.Posterior`); its posterior is the
equal-weight mixture of the members' (see :class:`acoustic_inv.models.EnsembleModel`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from acoustic_inv.checkpoint import load_model, save_ensemble

    path = save_ensemble(args.out, list(args.members))
    model = load_model(path)
    size_mb = path.stat().st_size / 1e6
    print(f"ensemble: wrote {path} ({model.architecture}, {size_mb:.1f} MB) from {', '.join(map(str, args.members))}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ensemble", help="pool model files trained with different seeds into one ensemble model",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("members", nargs="+", type=Path, metavar="MODEL", help="member model files (two or more)")
    parser.add_argument("--out", required=True, type=Path, metavar="MODEL", help="ensemble model file to write")
    parser.set_defaults(func=run)
