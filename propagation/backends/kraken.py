"""KRAKEN and KRAKENC normal modes, run in-process by ``pelagic`` (a Rust port checked against the
Acoustics Toolbox 2023.5).

Each call builds one pelagic JSON case holding every frequency and runs it with
``pelagic.kraken.Case.from_dict(doc).run()``.

Choices made here:

* **Spectrum.** Phase speeds from the physical minimum (``cmin = 0``) up to the half-space speed: every
  trapped mode, including those refracted in fast sediment layers. Leaky modes are not included.
* **Mesh.** The water column gets ``points_per_wavelength`` mesh intervals (default 48) per shortest
  wavelength (its slowest speed at the highest frequency of the call), each sediment layer
  ``seabed_points_per_wavelength`` (default 24), both times ``mesh_scale`` and at least
  ``min_mesh_points`` (20). The case's ``mesh_frequency`` is that highest frequency, so KRAKEN scales
  the meshes by ``f / f_max`` for the others: every frequency gets the same resolution. KRAKEN refuses
  meshes under about 10 points per wavelength (error KR0302). The defaults are set by the mode
  *shapes*, which KRAKEN takes from its first mesh (only the eigenvalues are Richardson-extrapolated),
  and the water mesh dominates. Measured on SWellEx-96 (VLA, ranges 1, 3 and 8 km, TL within 20 dB of
  the loudest point) against a mesh 2-4 times finer: water/seabed 12/12 points per wavelength err by
  2.4 / 2.5 dB (49 / 148 Hz); 24/12 by 0.6 / 0.8 dB; 48/24 by 0.17 / 0.22 / 0.15 dB at 49 / 148 / 388
  Hz. Coarse meshes are not even faster: KRAKEN then needs more Richardson meshes.
* **Lost modes.** Mode shapes are also sampled at 12 points per wavelength down to the half-space
  top (this changes no other output: FIELD uses the exact source and receiver depths) and checked by
  :mod:`propagation.backends.modecheck` (zero crossings and an independent Sturm count). A lost mode
  raises :class:`~propagation.errors.LostModeError`; a result with a lost mode is never returned.
  Before it does, the run is repeated on meshes 1.5 and 2 times finer (``lost_mode_retries``, default
  2): with the default mesh, 5.9 % of the SWellEx-96 prior's draws lost a mode (modes at 2.8-4.7 km/s
  phase speed living in the mudstone), and a 1.5 times finer mesh recovered each of the five we tried,
  at about the same cost.
* **Normalization and phase.** KRAKEN's FIELD pressure: modulus 1 at 1 m from the source, phase
  ``exp(-i k r)``; returned unchanged except for widening complex64 to complex128.
* **Warnings.** pelagic's case warnings (``PelagicWarning``) are turned into
  :class:`~propagation.errors.EngineError`: a case built from a validated environment should raise
  none, so one means the input was not what was meant.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Any

import numpy as np

from propagation.backends import modecheck
from propagation.backends.base import (Engine, EngineInfo, ModeSet, Option, boolean, int_in,
                                      positive_float)
from propagation.environment import Environment
from propagation.errors import EngineError, LostModeError, UnsupportedEnvironmentError

# KRAKEN stops with KR0302 below about 10 mesh points per wavelength.
MIN_POINTS_PER_WAVELENGTH = 10.0
# The largest mode count pelagic accepts; far above any shallow-water case here.
_MODE_LIMIT = 20000

_MESH_OPTIONS = {
    "points_per_wavelength": Option(48.0, positive_float(0.0, 1000.0),
                                    "water-column mesh intervals per shortest wavelength"),
    "seabed_points_per_wavelength": Option(24.0, positive_float(0.0, 1000.0),
                                           "sediment-layer mesh intervals per shortest wavelength"),
    "mesh_scale": Option(1.0, positive_float(0.0, 100.0), "multiplies both mesh densities"),
    "min_mesh_points": Option(20, int_in(10, 1_000_000), "fewest mesh intervals in any medium"),
    "check_modes": Option(True, boolean, "verify that no trapped mode is lost (LostModeError)"),
    "lost_mode_retries": Option(2, int_in(0, 10),
                                "after a lost mode, retry on meshes 1.5, 2, 2.5... times finer this many times"),
}


def _pelagic():
    import pelagic
    import pelagic.kraken  # noqa: F401  (the submodule the engine calls)

    return pelagic


class KrakenEngine(Engine):
    """KRAKEN (real modes, attenuation by perturbation) or KRAKENC (complex modes) through pelagic.

    Args:
        name: Registry name, ``"kraken"`` or ``"krakenc"``.
        solver: pelagic's solver name, ``"kraken"`` or ``"krakenc"``.
    """

    capabilities = frozenset({"pressure", "tl_field", "modes"})

    def __init__(self, name: str, solver: str) -> None:
        self.name = name
        self.solver = solver
        self.options = {
            **_MESH_OPTIONS,
        }
        self._modes_options = {
            **_MESH_OPTIONS,
            "depths_m": Option(None, _depths_or_none, "sample depths of the mode shapes (default: mesh grid)"),
            "max_range_m": Option(10_000.0, positive_float(0.0, 1e7),
                                  "largest range the eigenvalues must be accurate for, m"),
        }
        self._version: str | None = None

    def options_for(self, capability):
        return self._modes_options if capability == "modes" else self.options

    def info(self) -> EngineInfo:
        if importlib.util.find_spec("pelagic") is None:
            return EngineInfo(self.name, False, None, "Python package 'pelagic' is not installed")
        if self._version is None:
            pelagic = _pelagic()
            self._version = f"pelagic {pelagic.__version__}"
            self._reference = pelagic.compatibility_reference
        kind = "real modes, attenuation by perturbation" if self.solver == "kraken" else "complex modes"
        return EngineInfo(self.name, True, self._version,
                          f"{self.solver.upper()} in-process ({kind}), checked against {self._reference}")

    # -- case document -------------------------------------------------------------------------------

    def _meshes(self, env: Environment, freqs_hz: tuple[float, ...],
                options: dict[str, Any]) -> tuple[list[int], list[float]]:
        """Mesh intervals per medium at the highest frequency, and the densities used (per wavelength)."""
        scale = options["mesh_scale"]
        densities = [options["points_per_wavelength"] * scale] + \
            [options["seabed_points_per_wavelength"] * scale] * len(env.layers)
        for name, density in zip(("points_per_wavelength", "seabed_points_per_wavelength"), densities):
            if density < MIN_POINTS_PER_WAVELENGTH:
                raise ValueError(
                    f"engine {self.name!r}: {name} * mesh_scale = {density:g}: expected at least "
                    f"{MIN_POINTS_PER_WAVELENGTH:g} (KRAKEN refuses coarser meshes)")
        f_max, f_min = max(freqs_hz), min(freqs_hz)
        # KRAKEN scales the meshes by f / f_max: the floor must hold at the lowest frequency too.
        floor = int(math.ceil(options["min_mesh_points"] * f_max / f_min))
        meshes = [modecheck.medium_points(m, f_max, d, floor) for m, d in zip(modecheck.media(env), densities)]
        return meshes, densities

    def document(self, env: Environment, freqs_hz: tuple[float, ...], source_depth_m: float | np.ndarray,
                 receiver_depths_m: np.ndarray, ranges_m: np.ndarray, mode_depths_m: np.ndarray,
                 meshes: list[int], max_range_m: float) -> dict[str, Any]:
        """The pelagic KRAKEN JSON case (schema version 2) for this environment and geometry.

        ``source_depth_m`` is one depth or several (increasing); the field then has one row per source.
        """
        if env.halfspace.sound_speed_mps <= min(m.min_speed_mps for m in modecheck.media(env)):
            raise UnsupportedEnvironmentError(
                f"{self.name}: half-space speed {env.halfspace.sound_speed_mps:g} m/s is not above the slowest "
                "speed of the waveguide, so no mode is trapped")
        z, c = env.water_ssp()
        rho_w = env.water_density_g_cm3
        layers = [{"to": env.water_depth_m,
                   "ssp": [[zi, ci, 0.0, rho_w, 0.0] for zi, ci in zip(z.tolist(), c.tolist())],
                   "mesh": meshes[0]}]
        top = env.water_depth_m
        for layer, mesh in zip(env.layers, meshes[1:]):
            bottom = top + layer.thickness_m
            rho, alpha = layer.density_g_cm3, layer.attenuation_db_per_m_khz
            layers.append({"to": bottom, "mesh": mesh,
                           "ssp": [[top, layer.sound_speed_top_mps, 0.0, rho, alpha],
                                   [bottom, layer.sound_speed_bottom_mps, 0.0, rho, alpha]]})
            top = bottom
        hs = env.halfspace
        return {
            "pelagic": 2,
            "model": "kraken",
            "title": env.name[:70],
            "frequency": list(freqs_hz),
            "interpolation": "c_linear",
            "attenuation": {"unit": "db_per_meter_khz"},
            "media": layers,
            "surface": "vacuum",
            "bottom": {"type": "halfspace", "cp": hs.sound_speed_mps, "rho": hs.density_g_cm3,
                       "ap": hs.attenuation_db_per_m_khz},
            "source": {"depth": np.atleast_1d(np.asarray(source_depth_m, dtype=float)).tolist()},
            "receivers": {"depth": receiver_depths_m.tolist(), "range": ranges_m.tolist()},
            "kraken": {"solver": self.solver,
                       "phase_speed": [0.0, hs.sound_speed_mps],
                       "max_range": max_range_m,
                       "mesh_frequency": max(freqs_hz),
                       "mode_depths": mode_depths_m.tolist(),
                       "mode_limit": _MODE_LIMIT},
        }

    def _run(self, doc: dict[str, Any]):
        pelagic = _pelagic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pelagic.PelagicWarning)
            try:
                result = pelagic.kraken.Case.from_dict(doc).run()
            except pelagic.PelagicError as error:
                raise EngineError(self.name, f"pelagic {type(error).__name__} [{error.code}]",
                                  details=str(error)) from None
        notes = [str(w.message) for w in caught if issubclass(w.category, pelagic.PelagicWarning)]
        for w in caught:  # anything else is not ours to swallow
            if not issubclass(w.category, pelagic.PelagicWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if notes:
            raise EngineError(self.name, "pelagic warned about the case", details="\n".join(notes))
        return result

    def _solve(self, env: Environment, freqs_hz: tuple[float, ...], source_depth_m: float | np.ndarray,
               receiver_depths_m: np.ndarray, ranges_m: np.ndarray, options: dict[str, Any],
               extra_depths_m: np.ndarray | None = None, max_range_m: float | None = None):
        retries = options.get("lost_mode_retries", 0)
        for attempt in range(retries + 1):
            scaled = options if attempt == 0 else {**options, "mesh_scale": options["mesh_scale"] * (1.0 + 0.5 * attempt)}
            try:
                return self._solve_once(env, freqs_hz, source_depth_m, receiver_depths_m, ranges_m, scaled,
                                        extra_depths_m, max_range_m)
            except LostModeError:
                if attempt == retries:
                    raise
        raise AssertionError("unreachable")

    def _solve_once(self, env: Environment, freqs_hz: tuple[float, ...], source_depth_m: float | np.ndarray,
                    receiver_depths_m: np.ndarray, ranges_m: np.ndarray, options: dict[str, Any],
                    extra_depths_m: np.ndarray | None = None, max_range_m: float | None = None):
        meshes, _ = self._meshes(env, freqs_hz, options)
        check = options["check_modes"]
        exact = np.concatenate([np.atleast_1d(source_depth_m), receiver_depths_m])
        if extra_depths_m is not None:
            exact = np.concatenate([exact, extra_depths_m])
        if check:
            depths = _mode_depths(exact, modecheck.crossing_grid(env, max(freqs_hz)))
        else:
            depths = _mode_depths(exact)
        max_range = float(ranges_m.max()) if max_range_m is None else max_range_m
        doc = self.document(env, freqs_hz, source_depth_m, receiver_depths_m, ranges_m, depths, meshes,
                            max_range)
        result = self._run(doc)
        if check:
            for freq in result.frequencies:
                modes = freq.profiles[0].modes
                modecheck.check_modes(self.name, env, freq.frequency_hz, modes.wavenumbers,
                                      modes.eigenfunctions, env.halfspace.sound_speed_mps)
        return result, depths

    # -- capabilities --------------------------------------------------------------------------------

    def pressure(self, env, source_depth_m, receiver_depths_m, range_m, freqs_hz, **options):
        result, _ = self._solve(env, freqs_hz, source_depth_m, receiver_depths_m, np.array([range_m]), options)
        out = np.empty((len(freqs_hz), receiver_depths_m.size), dtype=np.complex128)
        for i, freq in enumerate(result.frequencies):
            out[i] = freq.field.pressure[0, :, 0]
        return out

    def pressure_positions(self, env, source_depths_m, ranges_m, receiver_depths_m, freqs_hz, **options):
        # One mode set serves every position: the field is evaluated on the grid of the distinct source
        # depths x distinct ranges (cheap beside the modes) and each position picks its cell.
        depths, depth_index = np.unique(source_depths_m, return_inverse=True)
        ranges, range_index = np.unique(ranges_m, return_inverse=True)
        result, _ = self._solve(env, freqs_hz, depths, receiver_depths_m, ranges, options)
        out = np.empty((len(source_depths_m), len(freqs_hz), receiver_depths_m.size), dtype=np.complex128)
        for i, freq in enumerate(result.frequencies):
            field = freq.field.pressure  # (source, receiver depth, range)
            out[:, i, :] = field[depth_index, :, range_index]
        return out

    def tl_field(self, env, source_depth_m, freq_hz, depths_m, ranges_m, **options):
        result, _ = self._solve(env, (freq_hz,), source_depth_m, depths_m, ranges_m, options)
        return result.frequencies[0].field.pressure[0].astype(np.complex128)

    def modes(self, env, freq_hz, depths_m=None, max_range_m=10_000.0, **options):
        meshes, _ = self._meshes(env, (freq_hz,), options)
        if depths_m is None:
            depths_m = modecheck.sample_grid(env, meshes)
        elif np.any(depths_m > env.bottom_depth_m):
            raise ValueError(f"engine {self.name!r}: option depths_m: expected depths down to the half-space "
                             f"top ({env.bottom_depth_m:g} m), got {depths_m.max():g} m")
        # The field part of the case is a token: one receiver at the first sample depth.
        source = float(min(max(depths_m[0], 0.0), env.water_depth_m))
        result, sampled = self._solve(env, (freq_hz,), source, np.array([source]), np.array([max_range_m]),
                                      options, extra_depths_m=depths_m, max_range_m=max_range_m)
        modes = result.frequencies[0].profiles[0].modes
        rows = np.searchsorted(sampled.astype(np.float32), depths_m.astype(np.float32))
        return ModeSet(freq_hz=freq_hz,
                       wavenumber=modes.wavenumbers.astype(np.complex128),
                       phase_speed_mps=np.asarray(modes.phase_speed_mps, dtype=float),
                       group_speed_mps=np.asarray(modes.group_speed_mps, dtype=float),
                       attenuation_np_per_m=np.asarray(modes.attenuation_nepers_per_m, dtype=float),
                       depth_m=np.asarray(depths_m, dtype=float),
                       shape=np.ascontiguousarray(modes.eigenfunctions[rows].T.astype(np.complex128)))


def _depths_or_none(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    depths = np.asarray(value, dtype=float).ravel()
    if depths.size == 0 or not np.all(np.isfinite(depths)) or np.any(depths < 0):
        raise ValueError("expected finite depths >= 0 m")
    if np.any(np.diff(depths) <= 0):
        raise ValueError("expected strictly increasing depths")
    return depths


def _mode_depths(exact: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """Mode sample depths: the exact source/receiver depths plus the check grid, increasing.

    pelagic stores mode depths in single precision and requires them strictly increasing there, so
    depths equal in float32 are merged, keeping an exact depth over a grid point.
    """
    exact = np.unique(exact)
    parts = [exact] if grid is None else [exact, grid]
    depths = np.concatenate(parts)
    _, first = np.unique(depths.astype(np.float32), return_index=True)
    return depths[first]
