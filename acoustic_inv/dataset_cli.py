"""``acoustic-inv dataset info|split`` and ``acoustic-inv plot dataset``.

Examples::

    acoustic-inv dataset info datasets/vina-gi
    acoustic-inv dataset split datasets/vina-gi --fractions 0.8 0.1 0.1      # -> datasets/vina-gi-{train,val,test}
    acoustic-inv plot dataset datasets/vina-gi --out figures/vina-gi.png
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

import numpy as np

from acoustic_inv.errors import ConfigError

if TYPE_CHECKING:
    from acoustic_inv.plots import DatasetPlotData


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``dataset`` command group (``info``, ``split``)."""
    parser = subparsers.add_parser("dataset", help="inspect and split simulated datasets",
                                   description="Inspect and split dataset directories made by `simulate`.")
    sub = parser.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")

    info = sub.add_parser("info", help="size, parameters and their ranges, failures",
                          description="Summarise a dataset: size, parameters and their ranges, failures.")
    info.add_argument("path", metavar="PATH", help="dataset directory")
    info.set_defaults(func=run_info)

    split = sub.add_parser("split", help="random train/val/test split into new dataset directories",
                           description="Split a finished dataset at random into new dataset directories "
                                       "named PATH-<name> (beside PATH unless --out-dir).")
    split.add_argument("path", metavar="PATH", help="dataset directory")
    split.add_argument("--fractions", type=float, nargs="+", required=True, metavar="F",
                       help="fraction of samples per part, summing to 1 (e.g. 0.8 0.1 0.1)")
    split.add_argument("--names", nargs="+", default=None, metavar="NAME",
                       help="part names (default: train test, or train val test)")
    split.add_argument("--seed", type=int, default=0, help="seed of the random assignment (default 0)")
    split.add_argument("--out-dir", default=None, metavar="DIR", help="where the parts go (default: beside PATH)")
    split.add_argument("--force", action="store_true", help="overwrite existing part directories")
    split.set_defaults(func=run_split)


def register_plot(plot_subparsers: argparse._SubParsersAction) -> None:
    """Adds ``plot dataset``."""
    parser = plot_subparsers.add_parser(
        "dataset", help="parameter histograms and example observations of a dataset",
        description="Histograms of the parameters and SNR, and the level across the array of a few "
                    "example samples.")
    parser.add_argument("path", metavar="PATH", help="dataset directory")
    parser.add_argument("--out", "-o", required=True, metavar="FILE.png", help="image file to write")
    parser.add_argument("--examples", type=int, default=4, help="example observations to draw (default 4)")
    parser.add_argument("--max-samples", type=int, default=100_000,
                        help="samples used for the histograms at most (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="seed that picks the examples (default 0)")
    parser.set_defaults(func=run_plot)


def run_info(args: argparse.Namespace) -> int:
    """Runs ``dataset info``."""
    from acoustic_inv.datasets import dataset_info

    print(dataset_info(args.path).format())
    return 0


def run_split(args: argparse.Namespace) -> int:
    """Runs ``dataset split``."""
    from acoustic_inv.datasets import read_meta, split_dataset

    targets = split_dataset(args.path, args.fractions, names=args.names, seed=args.seed,
                            out_dir=args.out_dir, force=args.force)
    for target in targets:
        meta = read_meta(target)
        print(f"{target}: {meta['n_samples']} samples ({meta['split']['name']})")
    return 0


def dataset_plot_data(path: str | os.PathLike[str], n_examples: int = 4, max_samples: int = 100_000,
                      seed: int = 0) -> "DatasetPlotData":
    """Computes what :func:`acoustic_inv.plots.plot_dataset` draws for a dataset.

    Returns:
        A :class:`acoustic_inv.plots.DatasetPlotData`.
    """
    from acoustic_inv.datasets import open_dataset, read_meta
    from acoustic_inv.plots import DatasetPlotData

    if n_examples < 0:
        raise ConfigError(f"--examples {n_examples}: expected a number >= 0")
    if max_samples < 1:
        raise ConfigError(f"--max-samples {max_samples}: expected a positive number")
    meta = read_meta(path)
    ds = open_dataset(path, allow_incomplete=True)
    n = ds.sizes["sample"]
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, max_samples), replace=False))
    picks = np.sort(rng.choice(n, size=min(n, n_examples), replace=False))
    theta = ds["theta"].values[rows]
    snr = ds["snr_db"].values[rows]
    pressure = ds["pressure"].isel(sample=picks).values
    magnitude = np.abs(pressure)
    peak = np.max(magnitude, axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        level = 20.0 * np.log10(magnitude / np.where(peak > 0, peak, 1.0))
    params = meta["params"]
    return DatasetPlotData(
        title=f"{meta['scenario']}: {n} samples ({os.fspath(path)})",
        param_names=tuple(p["name"] for p in params), param_units=tuple(p["units"] for p in params),
        param_low=np.array([p["low"] for p in params]), param_high=np.array([p["high"] for p in params]),
        theta=theta, snr_db=snr, freqs_hz=ds["freq"].values, receiver_depths_m=ds["receiver"].values,
        example_theta=ds["theta"].values[picks], example_level_db=level)


def run_plot(args: argparse.Namespace) -> int:
    """Runs ``plot dataset``."""
    from acoustic_inv.plots import plot_dataset

    data = dataset_plot_data(args.path, n_examples=args.examples, max_samples=args.max_samples,
                             seed=args.seed)
    path = plot_dataset(data, args.out)
    print(f"wrote {path}")
    return 0
