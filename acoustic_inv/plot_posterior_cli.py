"""``acoustic-inv plot posterior`` (corner plot of an inversion) and ``acoustic-inv plot training`` (loss curves).

Examples::

    acoustic-inv plot posterior post.nc --out marginals.png --truth source_range_m=3000 water_depth_m=216.5
    acoustic-inv plot training model.pt --out loss.png
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from acoustic_inv.errors import ConfigError, DataError

if TYPE_CHECKING:
    from acoustic_inv.plots import CornerPlotData, TrainingPlotData
    from acoustic_inv.posterior import PosteriorFile


def register_plot(plot_subparsers: argparse._SubParsersAction) -> None:
    """Adds ``plot posterior`` and ``plot training``."""
    posterior = plot_subparsers.add_parser(
        "posterior", help="corner plot of a posterior file from `acoustic-inv invert`",
        description="Corner plot of the draws in a posterior file (post.nc): 1-D marginals with the median "
                    "and credible interval, 2-D pair densities with credible-region contours, and the true "
                    "values when given.")
    posterior.add_argument("path", metavar="POST.nc", help="posterior file written by `acoustic-inv invert`")
    posterior.add_argument("--out", "-o", required=True, metavar="FILE.png", help="image file to write")
    posterior.add_argument("--truth", nargs="+", default=[], metavar="NAME=VALUE",
                           help="true parameter values to mark, in the parameters' units")
    posterior.add_argument("--level", type=float, default=0.9,
                           help="credible level of the marked intervals (default 0.9)")
    posterior.add_argument("--bins", type=int, default=40, help="histogram bins per parameter (default 40)")
    posterior.set_defaults(func=run_posterior)

    training = plot_subparsers.add_parser(
        "training", help="loss curves of a trained model",
        description="Training and validation loss per epoch, the validation score and the learning rate, "
                    "from the history stored in a model file (or a training state, <model>.resume).")
    training.add_argument("model", metavar="MODEL", help="model file from `acoustic-inv train`")
    training.add_argument("--out", "-o", required=True, metavar="FILE.png", help="image file to write")
    training.set_defaults(func=run_training)


def parse_truth(items: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """``["name=value", ...]`` to a dict, checking the names.

    Raises:
        ConfigError: for an item that is not ``name=value``, an unknown name or a non-number.
    """
    truth: dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--truth {item!r}: expected NAME=VALUE")
        if name not in names:
            raise ConfigError(f"--truth {item!r}: unknown parameter {name!r}; the posterior has {list(names)}")
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"--truth {item!r}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"--truth {item!r}: expected a finite number")
        truth[name] = value
    return truth


def _short(name: str) -> str:
    from acoustic_inv.plots import _short as short

    return short(name)


def _hpd_levels(density: np.ndarray, cell_area: float, masses: Sequence[float]) -> np.ndarray:
    """Density thresholds whose super-level sets hold the given masses, increasing."""
    flat = np.sort(density.ravel())[::-1]
    cumulative = np.cumsum(flat) * cell_area
    total = cumulative[-1] if cumulative.size else 0.0
    levels = []
    for mass in masses:
        if total <= 0:
            continue
        k = int(np.searchsorted(cumulative, mass * total))
        levels.append(flat[min(k, flat.size - 1)])
    return np.sort(np.asarray(levels, dtype=float))


def corner_plot_data(posterior: "PosteriorFile", truth: Mapping[str, float] | None = None, *, level: float = 0.9,
                     bins: int = 40, masses: Sequence[float] = (0.9, 0.5)) -> "CornerPlotData":
    """Computes what :func:`acoustic_inv.plots.plot_corner` draws.

    Args:
        posterior: A posterior file (:func:`acoustic_inv.posterior.read_posterior`).
        truth: True values by parameter name (any subset), in the parameters' units.
        level: Credible level of the marked equal-tailed intervals, in (0, 1).
        bins: Histogram bins per parameter (>= 5).
        masses: Credible masses of the pair contours.

    Raises:
        ConfigError: for a bad level or bin count.
    """
    from scipy.ndimage import gaussian_filter

    from acoustic_inv.plots import CornerPlotData

    if not 0.0 < level < 1.0:
        raise ConfigError(f"--level {level}: expected a credible level strictly between 0 and 1")
    if bins < 5:
        raise ConfigError(f"--bins {bins}: expected at least 5 bins")
    samples = posterior.samples
    names = [str(p) for p in samples["param"].values]
    units = [str(u) for u in samples["units"].values]
    long_names = [str(n) for n in samples["long_name"].values] if "long_name" in samples.coords else names
    x = np.asarray(samples.transpose("draw", "param").values, dtype=float)
    truth = dict(truth or {})
    truth_vec = np.array([truth.get(n, np.nan) for n in names], dtype=float)
    edges = []
    for j in range(len(names)):
        low, high = np.quantile(x[:, j], [0.0005, 0.9995])
        if np.isfinite(truth_vec[j]):
            low, high = min(low, truth_vec[j]), max(high, truth_vec[j])
        pad = 0.06 * (high - low) if high > low else max(abs(low) * 0.01, 1e-9)
        edges.append(np.linspace(low - pad, high + pad, bins + 1))
    marginal = tuple(np.histogram(x[:, j], bins=edges[j], density=True)[0] for j in range(len(names)))
    pair_density: dict[tuple[int, int], np.ndarray] = {}
    pair_levels: dict[tuple[int, int], np.ndarray] = {}
    for j in range(len(names)):
        for i in range(j):
            hist, _, _ = np.histogram2d(x[:, j], x[:, i], bins=[edges[j], edges[i]], density=True)
            # A light smoothing (about one bin) so that contours follow the density, not the sampling noise.
            smooth = gaussian_filter(hist, sigma=max(0.6, bins / 50.0))
            area = float((edges[j][1] - edges[j][0]) * (edges[i][1] - edges[i][0]))
            pair_density[(j, i)] = smooth
            pair_levels[(j, i)] = _hpd_levels(smooth, area, masses)
    low_q, high_q = (1.0 - level) / 2.0, (1.0 + level) / 2.0
    attrs = posterior.attrs
    warnings = [w for w in str(attrs.get("warnings", "")).split("\n") if w]
    source = posterior.observed.attrs.get("source_file") or posterior.observed.attrs.get("kind", "observation")
    title = (f"posterior of {os.path.basename(str(source))} ({x.shape[0]} draws; scenario "
             f"{attrs.get('scenario', '?')}; model {os.path.basename(str(attrs.get('model_path', '?')))})")
    if warnings:
        title += f"\n{len(warnings)} warning(s): {warnings[0][:110]}{'...' if len(warnings[0]) > 110 else ''}"
    return CornerPlotData(
        title=title,
        labels=tuple(f"{ln} ({u})" for ln, u in zip(long_names, units)),
        short_names=tuple(_short(n) for n in names), units=tuple(units), edges=tuple(edges),
        marginal_density=marginal, pair_density=pair_density, pair_levels=pair_levels,
        contour_masses=tuple(masses), median=np.median(x, axis=0),
        interval_low=np.quantile(x, low_q, axis=0), interval_high=np.quantile(x, high_q, axis=0),
        level=float(level), truth=truth_vec)


def training_plot_data(path: str | os.PathLike[str]) -> "TrainingPlotData":
    """Computes what :func:`acoustic_inv.plots.plot_training` draws from a model file's history.

    Raises:
        DataError: for an unreadable model file or one without a training history.
    """
    from acoustic_inv.checkpoint import load_checkpoint
    from acoustic_inv.plots import TrainingPlotData

    record = load_checkpoint(path)
    history = list(record.get("history") or [])
    if not history:
        raise DataError(f"{path}: the model file holds no training history")
    epochs = np.array([int(h["epoch"]) for h in history])
    terms_train = sorted({k for h in history for k in h.get("train", {})})
    terms_val = sorted({k for h in history for k in h.get("val", {})})
    train = {k: np.array([h.get("train", {}).get(k, np.nan) for h in history], dtype=float) for k in terms_train}
    val = {k: np.array([h.get("val", {}).get(k, np.nan) for h in history], dtype=float) for k in terms_val}
    score = np.array([np.nan if h.get("val_score") is None else h["val_score"] for h in history], dtype=float)
    lr = np.array([h.get("lr", np.nan) for h in history], dtype=float)
    best = int(epochs[int(np.nanargmin(score))]) if np.any(np.isfinite(score)) else 0
    architecture = record.get("config", {}).get("architecture", "?")
    meta = record.get("inversion") or {}
    scenario = meta.get("scenario", {}).get("name") if isinstance(meta, dict) else None
    title = (f"{Path(path).name}: {architecture}" + (f" on scenario {scenario}" if scenario else "")
             + f", {len(history)} epochs, kept epoch {best}")
    return TrainingPlotData(title=title, epochs=epochs, train=train, val=val, val_score=score, lr=lr, best_epoch=best)


def run_posterior(args: argparse.Namespace) -> int:
    """Runs ``plot posterior``."""
    from acoustic_inv.plots import plot_corner
    from acoustic_inv.posterior import read_posterior

    posterior = read_posterior(args.path)
    names = [str(p) for p in posterior.samples["param"].values]
    truth = parse_truth(args.truth, names)
    path = plot_corner(corner_plot_data(posterior, truth, level=args.level, bins=args.bins), args.out)
    print(f"wrote {path}")
    return 0


def run_training(args: argparse.Namespace) -> int:
    """Runs ``plot training``."""
    from acoustic_inv.plots import plot_training

    path = plot_training(training_plot_data(args.model), args.out)
    print(f"wrote {path}")
    return 0
