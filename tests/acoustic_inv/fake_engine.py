"""A cheap stand-in for :func:`propagation.pressure` used by unit tests of file writing and scheduling.

It sums the modes of an ideal (rigid-bottom) waveguide of the environment's depth and mean water speed:
smooth in every parameter, deterministic and fast. Not physics for users: the CLI always runs the real
engine.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from propagation.errors import EngineError


def fake_pressure(env, source_depth_m, receiver_depths_m, range_m, freqs_hz, engine="kraken",
                  fail_range_above_m=None, **options):
    if fail_range_above_m is not None and range_m > fail_range_above_m:
        raise EngineError(engine, f"fake failure at range {range_m:.1f} m")
    depth = env.water_depth_m
    c = float(np.mean(env.ssp.speed_mps)) + 0.01 * env.halfspace.sound_speed_mps
    z = np.asarray(receiver_depths_m, dtype=float)
    out = np.zeros((len(freqs_hz), len(z)), dtype=complex)
    for i, f in enumerate(freqs_hz):
        k = 2 * np.pi * f / c
        for m in range(1, 6):
            gamma = (m - 0.5) * np.pi / depth
            kr = np.sqrt(complex(k * k - gamma * gamma)) + 1e-5j * m
            out[i] += (np.sin(gamma * source_depth_m) * np.sin(gamma * z)
                       * np.exp(1j * kr * range_m) / np.sqrt(kr * range_m))
    return xr.DataArray(out, dims=("freq", "receiver"),
                        coords={"freq": list(freqs_hz), "receiver": list(z)})
