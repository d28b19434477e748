"""``acoustic-inv evaluate``: calibration and accuracy of a trained model on held-out simulations.

    acoustic-inv evaluate --model model.pt --data DATASET_TEST [--n-obs 1000] [--draws 1000] --out DIR

Writes DIR/evaluation.json (per-parameter expected coverage at levels 0.05-0.95, calibration error,
SBC rank uniformity, TARP, contraction, z-scores, RMSE of the posterior mean) and DIR/calibration.png,
and prints a table. The test dataset must be held out from training (``acoustic-inv dataset split``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from acoustic_inv.evaluate import evaluate
    from acoustic_inv.plots import plot_calibration
    from acoustic_inv.summary import write_json

    result = evaluate(args.model, args.data, n_obs=args.n_obs, n_draws=args.draws, seed=args.seed)
    out = Path(args.out)
    write_json(out / "evaluation.json", result.to_json())
    plot_calibration(result, out / "calibration.png")
    print(result.table())
    print(f"wrote {out / 'evaluation.json'} and {out / 'calibration.png'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="calibration and accuracy on held-out simulations",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="model file")
    parser.add_argument("--data", required=True, type=Path, help="held-out dataset directory")
    parser.add_argument("--n-obs", type=int, default=1000, help="test simulations used (default 1000)")
    parser.add_argument("--draws", type=int, default=1000, help="posterior draws per simulation (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    parser.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default ./evaluation)")
    parser.set_defaults(func=run)
