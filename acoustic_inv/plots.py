"""Figures. Each function takes data objects (xarray, arrays already computed) and draws; none computes.

Every function writes the figure to ``out`` (format from the suffix) atomically and closes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

if TYPE_CHECKING:
    from acoustic_inv.evaluate import Evaluation


def save_figure(fig: "plt.Figure", out: str | Path, dpi: int = 150) -> Path:
    """Saves ``fig`` to ``out`` through a temporary file in the same folder, then closes it."""
    from acoustic_inv.fileio import atomic_path

    out = Path(out)
    try:
        # savefig infers the format from the name, so the temporary file keeps the target's suffix.
        with atomic_path(out, suffix=out.suffix or ".png", fsync=False) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out


def plot_tl_field(tl: xr.DataArray, out: str | Path, title: str = "", dynamic_range_db: float = 50.0) -> Path:
    """Transmission-loss field, range (km) across, depth (m) down.

    Args:
        tl: TL in dB, dims (depth, range), coords in m.
        out: Output image path.
        title: Figure title.
        dynamic_range_db: Colour scale span above the lowest TL (strongest field) shown.
    """
    values = np.asarray(tl.transpose("depth", "range").values, dtype=float)
    finite = values[np.isfinite(values)]
    low = float(np.percentile(finite, 1)) if finite.size else 0.0
    fig, ax = plt.subplots(figsize=(9, 4.5))
    mesh = ax.pcolormesh(tl["range"].values / 1000.0, tl["depth"].values, values, shading="auto",
                         cmap="viridis_r", vmin=low, vmax=low + dynamic_range_db)
    ax.invert_yaxis()
    ax.set_xlabel("range (km)")
    ax.set_ylabel("depth (m)")
    ax.set_title(title)
    fig.colorbar(mesh, ax=ax, label="transmission loss (dB re 1 m)")
    return save_figure(fig, out)


@dataclass(frozen=True)
class DatasetPlotData:
    """What :func:`plot_dataset` draws (computed by :func:`acoustic_inv.dataset_cli.dataset_plot_data`).

    Attributes:
        title: Figure title.
        param_names: Parameter names, shape (d,).
        param_units: Parameter units, shape (d,).
        param_low: Prior lower bounds, shape (d,), in each parameter's units.
        param_high: Prior upper bounds, shape (d,).
        theta: Parameters of the samples to histogram, shape (n, d).
        snr_db: SNR of the same samples, shape (n,), dB (``inf`` without noise).
        freqs_hz: Tones, shape (n_freq,), Hz.
        receiver_depths_m: Element depths, shape (n_receiver,), m.
        example_theta: Parameters of the example observations, shape (k, d).
        example_level_db: Noise-free level of the examples, shape (k, n_freq, n_receiver), dB re the
            loudest element of each tone.
    """

    title: str
    param_names: tuple[str, ...]
    param_units: tuple[str, ...]
    param_low: np.ndarray
    param_high: np.ndarray
    theta: np.ndarray
    snr_db: np.ndarray
    freqs_hz: np.ndarray
    receiver_depths_m: np.ndarray
    example_theta: np.ndarray
    example_level_db: np.ndarray


def _short(name: str) -> str:
    """A parameter name without its unit suffix, for crowded titles."""
    for suffix in ("_db_per_m_khz", "_g_cm3", "_mps", "_m"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def plot_dataset(data: DatasetPlotData, out: str | Path) -> Path:
    """Parameter histograms (prior bounds dashed), the SNR histogram and example observations.

    Each example panel shows the noise-free level across the array (dB re the loudest element) for
    every tone, with the example's parameters in the title.
    """
    d = len(data.param_names)
    has_snr = bool(np.any(np.isfinite(data.snr_db)))
    n_hist = d + (1 if has_snr else 0)
    k = len(data.example_theta)
    ncols = max(min(4, n_hist), min(k, 4), 1)
    hist_rows = math.ceil(n_hist / ncols)
    example_rows = math.ceil(k / ncols) if k else 0
    fig = plt.figure(figsize=(3.3 * ncols, 2.5 * hist_rows + 3.4 * example_rows + 0.5),
                     layout="constrained")
    grid = fig.add_gridspec(hist_rows + example_rows, ncols,
                            height_ratios=[2.5] * hist_rows + [3.4] * example_rows)
    fig.suptitle(data.title)
    for i in range(d):
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        ax.hist(data.theta[:, i], bins=40, color="tab:blue", alpha=0.8)
        for bound in (data.param_low[i], data.param_high[i]):
            ax.axvline(bound, color="k", linestyle="--", linewidth=0.8)
        ax.set_xlabel(f"{data.param_names[i]} ({data.param_units[i]})", fontsize=8)
        ax.set_ylabel("samples")
    if has_snr:
        ax = fig.add_subplot(grid[d // ncols, d % ncols])
        ax.hist(data.snr_db[np.isfinite(data.snr_db)], bins=40, color="tab:gray")
        ax.set_xlabel("SNR (dB)", fontsize=8)
        ax.set_ylabel("samples")
    for j in range(k):
        ax = fig.add_subplot(grid[hist_rows + j // ncols, j % ncols])
        for f, freq in enumerate(data.freqs_hz):
            ax.plot(data.example_level_db[j, f], data.receiver_depths_m, marker=".", linewidth=1,
                    label=f"{freq:g} Hz")
        ax.invert_yaxis()
        ax.set_xlabel("level (dB re loudest element)", fontsize=8)
        ax.set_ylabel("receiver depth (m)")
        values = [f"{_short(name)}={value:.4g}" for name, value in zip(data.param_names, data.example_theta[j])]
        lines = [", ".join(values[i:i + 2]) for i in range(0, len(values), 2)]
        ax.set_title("\n".join(lines), fontsize=6)
        if j == 0:
            ax.legend(fontsize=6, ncol=2)
    return save_figure(fig, out)


# ---------------------------------------------------------------------------------------------------
# Posteriors and training
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CornerPlotData:
    """What :func:`plot_corner` draws (computed by :func:`acoustic_inv.plot_posterior_cli.corner_plot_data`).

    Attributes:
        title: Figure title.
        labels: Axis label per parameter (name with units), shape (d,).
        short_names: Short parameter names for the panel titles, shape (d,).
        units: Units per parameter, shape (d,).
        edges: Histogram bin edges per parameter, d arrays of shape (n_bins + 1,), in its units.
        marginal_density: Marginal densities per parameter, d arrays of shape (n_bins,), in 1/units.
        pair_density: 2-D histograms of parameters (j, i), j > i, keyed by (j, i): shape
            (n_bins, n_bins), rows along parameter j (the y axis), columns along i.
        pair_levels: Density thresholds enclosing the credible masses of ``contour_masses`` for each
            pair, keyed as ``pair_density``, increasing.
        contour_masses: Credible masses of the contour lines (e.g. (0.9, 0.5)), matching
            ``pair_levels`` in reverse order.
        median: Posterior medians, shape (d,).
        interval_low: Lower ends of the credible intervals, shape (d,).
        interval_high: Upper ends, shape (d,).
        level: Credible level of the intervals (e.g. 0.9).
        truth: True values, shape (d,); NaN where unknown.
    """

    title: str
    labels: tuple[str, ...]
    short_names: tuple[str, ...]
    units: tuple[str, ...]
    edges: tuple[np.ndarray, ...]
    marginal_density: tuple[np.ndarray, ...]
    pair_density: dict[tuple[int, int], np.ndarray]
    pair_levels: dict[tuple[int, int], np.ndarray]
    contour_masses: tuple[float, ...]
    median: np.ndarray
    interval_low: np.ndarray
    interval_high: np.ndarray
    level: float
    truth: np.ndarray


_POSTERIOR_COLOR = "#1f5f99"
_TRUTH_COLOR = "#d62728"


def _tidy_ticks(ax: "plt.Axes", axis: str) -> None:
    from matplotlib.ticker import MaxNLocator

    locator = MaxNLocator(nbins=4, prune="both")
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(locator)


def plot_corner(data: CornerPlotData, out: str | Path) -> Path:
    """Corner plot: 1-D marginals on the diagonal, 2-D pair densities below it.

    Each diagonal panel shows the marginal density, its credible interval shaded with dashed ends,
    the median as a solid line and its value with the interval in the title; each pair panel shows
    the 2-D density in shades of blue with contour lines enclosing the credible masses. True values,
    where given, are red lines (and a red cross in the pair panels).
    """
    from matplotlib.patches import Patch

    d = len(data.labels)
    size = 2.3 if d > 3 else 2.8
    fig, axes = plt.subplots(d, d, figsize=(size * d + 0.6, size * d + 0.6), squeeze=False)
    for row in range(d):
        for col in range(d):
            ax = axes[row, col]
            if col > row:
                ax.set_visible(False)
                continue
            if row == col:
                _draw_marginal(ax, data, row)
            else:
                _draw_pair(ax, data, row, col)
            if row == d - 1:
                ax.set_xlabel(_wrap_label(data.labels[col]), fontsize=9)
                _tidy_ticks(ax, "x")
                ax.tick_params(axis="x", labelrotation=40, labelsize=8)
            else:
                ax.set_xticklabels([])
            if col == 0 and row > 0:
                ax.set_ylabel(_wrap_label(data.labels[row]), fontsize=9)
                _tidy_ticks(ax, "y")
                ax.tick_params(axis="y", labelsize=8)
            elif row != col or col != 0:
                ax.set_yticklabels([])
            ax.set_xlim(data.edges[col][0], data.edges[col][-1])
            if row != col:
                ax.set_ylim(data.edges[row][0], data.edges[row][-1])
    handles = [
        plt.Line2D([], [], color=_POSTERIOR_COLOR, linewidth=1.6, label="median"),
        Patch(color=_POSTERIOR_COLOR, alpha=0.18, label=f"{data.level:.0%} credible interval"),
        plt.Line2D([], [], color="k", linewidth=0.8,
                   label="pairs: " + ", ".join(f"{m:.0%}" for m in data.contour_masses) + " credible regions"),
    ]
    if np.any(np.isfinite(data.truth)):
        handles.append(plt.Line2D([], [], color=_TRUTH_COLOR, linewidth=1.4, label="truth"))
    height = size * d + 0.6
    title_lines = data.title.count("\n") + 1
    top = 1.0 - (0.75 + 0.2 * title_lines) / height
    fig.suptitle(data.title, fontsize=10, x=0.02, y=1.0 - 0.12 / height, ha="left", va="top")
    fig.subplots_adjust(wspace=0.08, hspace=0.08, top=top)
    if d > 1:  # in the empty upper-right triangle, below the title
        fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.98, top), fontsize=9, frameon=False)
    return save_figure(fig, out)


def _wrap_label(label: str, width: int = 20) -> str:
    """Puts the units of a long axis label on a second line (and writes cm^3 as cm³)."""
    label = label.replace("^3", "³")
    if len(label) > width and " (" in label:
        head, _, units = label.rpartition(" (")
        return f"{head}\n({units}"
    return label


def _draw_marginal(ax: "plt.Axes", data: CornerPlotData, i: int) -> None:
    edges, density = data.edges[i], data.marginal_density[i]
    ax.stairs(density, edges, fill=True, color=_POSTERIOR_COLOR, alpha=0.25, linewidth=0)
    ax.stairs(density, edges, color=_POSTERIOR_COLOR, linewidth=1.1)
    low, high = data.interval_low[i], data.interval_high[i]
    ax.axvspan(low, high, color=_POSTERIOR_COLOR, alpha=0.10, linewidth=0)
    for bound in (low, high):
        ax.axvline(bound, color=_POSTERIOR_COLOR, linestyle="--", linewidth=0.9)
    ax.axvline(data.median[i], color=_POSTERIOR_COLOR, linewidth=1.6)
    if np.isfinite(data.truth[i]):
        ax.axvline(data.truth[i], color=_TRUTH_COLOR, linewidth=1.4)
    ax.set_ylim(0, 1.08 * float(np.max(density)) if np.max(density) > 0 else 1.0)
    ax.set_yticks([])
    med = data.median[i]
    ax.set_title(f"{data.short_names[i]}\n{_sig(med)}$^{{+{_sig(high - med)}}}_{{-{_sig(med - low)}}}$",
                 fontsize=8.5)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)


def _draw_pair(ax: "plt.Axes", data: CornerPlotData, j: int, i: int) -> None:
    density = data.pair_density[(j, i)]
    xe, ye = data.edges[i], data.edges[j]
    shown = np.ma.masked_less_equal(density, 0.0)
    ax.pcolormesh(xe, ye, shown, cmap="Blues", shading="flat", rasterized=True,
                  vmin=0.0, vmax=float(density.max()) if density.max() > 0 else 1.0)
    levels = np.unique(data.pair_levels[(j, i)])
    if levels.size and density.max() > levels.min() > 0:
        xc, yc = 0.5 * (xe[:-1] + xe[1:]), 0.5 * (ye[:-1] + ye[1:])
        ax.contour(xc, yc, density, levels=levels, colors="k", linewidths=0.8,
                   linestyles=["-"] * len(levels))
    ti, tj = data.truth[i], data.truth[j]
    if np.isfinite(ti):
        ax.axvline(ti, color=_TRUTH_COLOR, linewidth=1.0, alpha=0.8)
    if np.isfinite(tj):
        ax.axhline(tj, color=_TRUTH_COLOR, linewidth=1.0, alpha=0.8)
    if np.isfinite(ti) and np.isfinite(tj):
        ax.plot([ti], [tj], marker="x", color=_TRUTH_COLOR, markersize=7, markeredgewidth=1.6)


def _sig(value: float) -> str:
    """A number with about 3 significant digits, compact."""
    value = float(value)
    if value == 0 or not np.isfinite(value):
        return f"{value:g}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{digits}f}" if digits < 6 else f"{value:.2e}"


@dataclass(frozen=True)
class TrainingPlotData:
    """What :func:`plot_training` draws (computed by :func:`acoustic_inv.plot_posterior_cli.training_plot_data`).

    Attributes:
        title: Figure title.
        epochs: Epoch numbers (1-based), shape (E,).
        train: Mean training value of each loss term per epoch, name -> shape (E,).
        val: Mean validation value of each loss term per epoch, name -> shape (E,).
        val_score: Validation score (early-stopping criterion) per epoch, shape (E,); NaN where none.
        lr: Learning rate per epoch, shape (E,).
        best_epoch: Epoch whose weights were kept (0: unknown).
    """

    title: str
    epochs: np.ndarray
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    val_score: np.ndarray
    lr: np.ndarray
    best_epoch: int


def plot_training(data: TrainingPlotData, out: str | Path) -> Path:
    """Training curves: one panel per loss term (training solid, validation dashed), the validation
    score when it is not just the one term, and the learning rate; the kept epoch is marked."""
    terms = sorted(set(data.train) | set(data.val))
    show_score = bool(np.any(np.isfinite(data.val_score))) and len(terms) != 1
    n_panels = len(terms) + (1 if show_score else 0) + 1
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.2 * nrows), squeeze=False,
                             layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    panels = flat[:n_panels]

    def mark_best(ax: "plt.Axes") -> None:
        if data.best_epoch > 0:
            ax.axvline(data.best_epoch, color="0.4", linestyle=":", linewidth=1.0)

    for ax, term in zip(panels, terms):
        if term in data.train:
            ax.plot(data.epochs, data.train[term], color="tab:blue", linewidth=1.5, label="training")
        if term in data.val:
            ax.plot(data.epochs, data.val[term], color="tab:orange", linewidth=1.5, linestyle="--",
                    label="validation")
        mark_best(ax)
        ax.set_title(f"loss term {term}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean loss per sample")
        ax.grid(alpha=0.3)
    if show_score:
        ax = panels[len(terms)]
        ax.plot(data.epochs, data.val_score, color="tab:green", linewidth=1.5)
        mark_best(ax)
        ax.set_title("validation score (weighted losses)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax = panels[-1]
    ax.plot(data.epochs, data.lr, color="0.3", linewidth=1.5)
    if np.all(data.lr > 0):
        ax.set_yscale("log")
    mark_best(ax)
    ax.set_title("learning rate", fontsize=10)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3, which="both")
    handles, labels = panels[0].get_legend_handles_labels()
    if data.best_epoch > 0:
        handles.append(plt.Line2D([], [], color="0.4", linestyle=":", linewidth=1.0))
        labels.append(f"kept epoch ({data.best_epoch})")
    panels[0].legend(handles, labels, fontsize=8)
    fig.suptitle(data.title, fontsize=11)
    return save_figure(fig, out)


def plot_calibration(evaluation: "Evaluation", out: str | Path) -> Path:
    """Calibration of an amortized posterior: per-parameter expected coverage, TARP, calibration error
    and SBC ranks.

    The top row holds the summaries (coverage of central intervals against the credible level, TARP,
    the largest coverage error per parameter as bars with the issue's 0.03 goal marked); below it, one
    rank histogram per parameter, at most four to a row, with the 95 % band of a uniform histogram.

    Args:
        evaluation: An :class:`acoustic_inv.evaluate.Evaluation` (everything already computed).
        out: Output image path.
    """
    d = len(evaluation.param_names)
    per_row = min(d, 4)
    rank_rows = math.ceil(d / per_row)
    fig = plt.figure(figsize=(13.0, 3.6 + 2.6 * rank_rows))
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.6, 2.6 * rank_rows])
    ax_cov, ax_tarp, ax_err = top.subplots(1, 3, gridspec_kw={"width_ratios": [1.3, 1.0, 1.0]})
    ax_cov.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
    for j, name in enumerate(evaluation.param_names):
        ax_cov.plot(evaluation.levels, evaluation.coverage[:, j], marker=".", ms=4, lw=1.2, label=_short(name))
    ax_cov.set_xlabel("credible level")
    ax_cov.set_ylabel("empirical coverage")
    ax_cov.set_title("coverage of central intervals\n(above the diagonal: too wide)", fontsize=9)
    ax_cov.legend(fontsize=7, loc="upper left", frameon=False)
    ax_tarp.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
    ax_tarp.plot(evaluation.tarp_alpha, evaluation.tarp_ecp, color="C3")
    ax_tarp.set_xlabel("credibility level")
    ax_tarp.set_ylabel("expected coverage")
    ax_tarp.set_title(f"TARP, all parameters jointly\n(ATC {evaluation.tarp_atc:+.3f}; 0 when calibrated)", fontsize=9)
    names = [_short(n) for n in evaluation.param_names]
    errors = np.asarray(evaluation.calibration_error, dtype=float)
    # Sign: over-covering (too wide) or under-covering (too narrow) at the level of the largest error.
    worst = np.argmax(np.abs(evaluation.coverage - evaluation.levels[:, None]), axis=0)
    wide = evaluation.coverage[worst, np.arange(d)] > evaluation.levels[worst]
    colors = ["C0" if w else "C3" for w in wide]
    ax_err.barh(np.arange(d), errors, color=colors, height=0.6)
    ax_err.axvline(0.03, color="0.3", lw=1, ls=":")
    ax_err.set_yticks(np.arange(d), names, fontsize=7)
    ax_err.invert_yaxis()
    ax_err.set_xlabel("calibration error (max |coverage - level|)")
    ax_err.set_title("per parameter (blue: too wide, red: too narrow;\ndotted: 0.03)", fontsize=9)
    axes = np.atleast_1d(bottom.subplots(rank_rows, per_row, squeeze=False)).ravel()
    n_bins = 20
    expected = evaluation.n_obs / n_bins
    band = 2.0 * np.sqrt(expected * (1 - 1 / n_bins))
    for j, name in enumerate(evaluation.param_names):
        ax = axes[j]
        ax.hist(evaluation.sbc_ranks[:, j], bins=n_bins, range=(0, evaluation.n_draws + 1), color="C0", alpha=0.8)
        ax.axhspan(expected - band, expected + band, color="0.85", zorder=0)
        ax.axhline(expected, color="0.4", lw=1)
        unit = evaluation.param_units[j]
        ax.set_title(f"{_short(name)} ({unit}): SBC p = {evaluation.sbc_p_value[j]:.3f}", fontsize=8)
        ax.set_xlabel("rank of the truth among the draws", fontsize=8)
        ax.set_yticks([])
    for ax in axes[d:]:
        ax.axis("off")
    bottom.suptitle("rank histograms (U: too narrow; hump: too wide; slope: biased)", fontsize=9)
    fig.suptitle(f"calibration on {evaluation.n_obs} held-out simulations ({evaluation.n_draws} draws each)",
                 fontsize=10)
    top.subplots_adjust(left=0.07, right=0.98, bottom=0.2, top=0.78, wspace=0.45)
    bottom.subplots_adjust(left=0.03, right=0.98, bottom=0.12 / rank_rows, top=1 - 0.15 / rank_rows,
                           hspace=0.55, wspace=0.12)
    return save_figure(fig, out)
