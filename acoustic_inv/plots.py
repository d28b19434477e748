"""Figures. Each function takes data objects (xarray, arrays already computed) and draws; none computes.

Every function writes the figure to ``out`` (format from the suffix) atomically and closes it.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402


def save_figure(fig: "plt.Figure", out: str | Path, dpi: int = 150) -> Path:
    """Saves ``fig`` to ``out`` through a temporary file in the same folder, then closes it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=out.suffix or ".png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
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
