"""Figures. Each function takes data objects (xarray, arrays already computed) and draws; none computes.

Every function writes the figure to ``out`` (format from the suffix) atomically and closes it.
"""

from __future__ import annotations

import os
import tempfile
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
