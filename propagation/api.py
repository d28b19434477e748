"""The public propagation API: pressure, transmission-loss fields, modes and arrivals, as xarray.

Every function takes a validated :class:`~propagation.environment.Environment`, checks positions and
frequencies with :func:`~propagation.environment.check_geometry` and
:func:`~propagation.environment.check_frequencies`, picks the engine by name and passes engine options
as keyword arguments (an unknown option is a TypeError naming the options the engine accepts).

Conventions (all engines): pressure re 1 m, so ``TL = -20 log10 |p|``; phase of the Acoustics Toolbox,
``p ~ exp(-i k r)`` with ``Im k <= 0`` (time dependence ``exp(+i omega t)``). Receivers may be given in
any order and repeated: results are matched to them by index.

Engines run in the calling process; for parallel work use processes (the engines are deterministic:
results are bitwise identical however the runs are spread). Warning capture around pelagic and the
PATH/stdout handling around ``bellhop.exe`` are process-wide, so do not call engines from several
threads of one process at once.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import xarray as xr

from propagation.backends import EngineInfo, get_engine
from propagation.backends import engines as _engines
from propagation.backends.base import Engine
from propagation.environment import Environment, check_frequencies, check_geometry
from propagation.errors import InvalidEnvironmentError

__all__ = ["arrivals", "engines", "get_engine", "modes", "pressure", "tl_field"]

_PRESSURE_LONG_NAME = "complex acoustic pressure re the free-field pressure at 1 m"


def _environment(env: Any) -> Environment:
    if not isinstance(env, Environment):
        raise InvalidEnvironmentError(f"env = {type(env).__name__}: expected a propagation.Environment")
    return env


def _engine(name: Any) -> Engine:
    return get_engine(name)


def _one(owner: str, name: str, value: Any) -> float:
    if np.ndim(value) != 0 and np.size(value) != 1:
        raise InvalidEnvironmentError(f"{owner}.{name} = {value!r}: expected a single value")
    return float(np.asarray(value, dtype=float).reshape(()))


def _unique(values: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and, for each input, its index among them."""
    array = np.asarray(values, dtype=float)
    unique, inverse = np.unique(array, return_inverse=True)
    return unique, inverse


def pressure(env: Environment, source_depth_m: float, receiver_depths_m: Sequence[float] | np.ndarray,
             range_m: float, freqs_hz: Sequence[float] | np.ndarray, engine: str = "kraken",
             **options: Any) -> xr.DataArray:
    """Complex pressure at receivers at one range, for several frequencies.

    The hot path of dataset generation: one engine run for all frequencies (KRAKEN) or one per
    frequency (BELLHOP), with a thin wrapper.

    Args:
        env: The environment.
        source_depth_m: Source depth, m.
        receiver_depths_m: Receiver depths, shape (n_receiver,), m, in the water.
        range_m: Horizontal source-receiver range, m.
        freqs_hz: Frequencies, shape (n_freq,), Hz.
        engine: Engine name (``"kraken"``, ``"krakenc"``, ``"bellhop"``, ``"bellhop-fortran"``).
        **options: Engine options (e.g. ``mesh_scale=2`` for KRAKEN, ``beams=2000`` for BELLHOP).

    Returns:
        complex128 DataArray, dims (freq, receiver), coords ``freq`` (Hz), ``receiver`` (index 0..n-1)
        and ``depth`` on receiver (m); attrs engine, engine_version, range_m, source_depth_m.

    Raises:
        InvalidEnvironmentError: bad positions or frequencies (names field and value).
        UnsupportedEnvironmentError: the engine cannot represent the environment.
        EngineNotFoundError: unknown or unavailable engine.
        LostModeError: a normal-mode engine lost a trapped mode.
        EngineError: the engine failed (carries its diagnostics).
    """
    env = _environment(env)
    runner = _engine(engine)
    zs, zr, (r,) = check_geometry(env, source_depth_m, receiver_depths_m, [_one("Receivers", "range_m", range_m)])
    freqs = check_frequencies(freqs_hz)
    resolved = runner.resolve_options(options, "pressure")
    version = runner.version()
    depths, index = _unique(zr)
    values = runner.pressure(env, zs, depths, r, freqs, **resolved)
    if index.size != depths.size or np.any(index != np.arange(index.size)):
        values = values[:, index]
    return xr.DataArray(
        values,
        dims=("freq", "receiver"),
        coords={"freq": ("freq", np.asarray(freqs), {"units": "Hz", "long_name": "frequency"}),
                "receiver": ("receiver", np.arange(len(zr)), {"units": "1", "long_name": "receiver index"}),
                "depth": ("receiver", np.asarray(zr), {"units": "m", "long_name": "receiver depth"})},
        name="pressure",
        attrs={"units": "1", "long_name": _PRESSURE_LONG_NAME, "engine": runner.name,
               "engine_version": version, "range_m": r, "source_depth_m": zs},
    )


def pressure_positions(env: Environment, source_depths_m: Sequence[float] | np.ndarray,
                       ranges_m: Sequence[float] | np.ndarray,
                       receiver_depths_m: Sequence[float] | np.ndarray,
                       freqs_hz: Sequence[float] | np.ndarray, engine: str = "kraken",
                       **options: Any) -> xr.DataArray:
    """Complex pressure at receivers for several source positions in one environment.

    Normal modes depend on the environment only, so KRAKEN computes them once for all positions: for G
    positions this costs little more than one :func:`pressure` call (dataset generation with
    environment reuse relies on it). Other engines run once per position. Values equal those of
    :func:`pressure` for each position to engine precision (KRAKEN refines eigenvalues for the largest
    range of a call: differences of order 0.01 dB).

    Args:
        env: The environment.
        source_depths_m: Source depths, shape (n_position,), m.
        ranges_m: Source-receiver ranges, shape (n_position,), m.
        receiver_depths_m: Receiver depths, shape (n_receiver,), m, in the water.
        freqs_hz: Frequencies, shape (n_freq,), Hz.
        engine: Engine name.
        **options: Engine options, as for :func:`pressure`.

    Returns:
        complex128 DataArray, dims (position, freq, receiver), coords as :func:`pressure` plus
        ``source_depth`` and ``range`` on ``position`` (m).

    Raises:
        As :func:`pressure`.
    """
    env = _environment(env)
    runner = _engine(engine)
    depths_in = np.atleast_1d(np.asarray(source_depths_m, dtype=float))
    ranges_in = np.atleast_1d(np.asarray(ranges_m, dtype=float))
    if depths_in.shape != ranges_in.shape or depths_in.ndim != 1 or depths_in.size == 0:
        raise InvalidEnvironmentError(
            f"Source.depths_m has shape {depths_in.shape} and Receivers.ranges_m {ranges_in.shape}: "
            "expected two non-empty 1-D arrays of equal length (one depth and one range per position)")
    zr: tuple[float, ...] = ()
    for zs, r in zip(depths_in, ranges_in):
        _, zr, _ = check_geometry(env, float(zs), receiver_depths_m, [float(r)])
    freqs = check_frequencies(freqs_hz)
    resolved = runner.resolve_options(options, "pressure")
    version = runner.version()
    depths, index = _unique(zr)
    values = runner.pressure_positions(env, depths_in, ranges_in, depths, freqs, **resolved)
    if index.size != depths.size or np.any(index != np.arange(index.size)):
        values = values[:, :, index]
    return xr.DataArray(
        values,
        dims=("position", "freq", "receiver"),
        coords={"freq": ("freq", np.asarray(freqs), {"units": "Hz", "long_name": "frequency"}),
                "receiver": ("receiver", np.arange(len(zr)), {"units": "1", "long_name": "receiver index"}),
                "depth": ("receiver", np.asarray(zr), {"units": "m", "long_name": "receiver depth"}),
                "source_depth": ("position", depths_in, {"units": "m", "long_name": "source depth"}),
                "range": ("position", ranges_in, {"units": "m", "long_name": "source-receiver range"})},
        name="pressure",
        attrs={"units": "1", "long_name": _PRESSURE_LONG_NAME, "engine": runner.name,
               "engine_version": version},
    )


def tl_field(env: Environment, source_depth_m: float, freq_hz: float, depths_m: Sequence[float] | np.ndarray,
             ranges_m: Sequence[float] | np.ndarray, engine: str = "kraken", **options: Any) -> xr.DataArray:
    """Transmission loss on a depth-range grid at one frequency.

    Args:
        env: The environment.
        source_depth_m: Source depth, m.
        freq_hz: Frequency, Hz.
        depths_m: Receiver depths, shape (n_depth,), m.
        ranges_m: Ranges, shape (n_range,), m.
        engine: Engine name.
        **options: Engine options.

    Returns:
        float64 DataArray of TL in dB re 1 m, dims (depth, range); +inf where the pressure is exactly
        zero. attrs engine, engine_version, freq_hz, source_depth_m.
    """
    env = _environment(env)
    runner = _engine(engine)
    zs, zr, rr = check_geometry(env, source_depth_m, depths_m, ranges_m)
    (f,) = check_frequencies([_one("Tones", "freq_hz", freq_hz)])
    resolved = runner.resolve_options(options, "tl_field")
    version = runner.version()
    depths, depth_index = _unique(zr)
    ranges, range_index = _unique(rr)
    p = runner.tl_field(env, zs, f, depths, ranges, **resolved)[np.ix_(depth_index, range_index)]
    with np.errstate(divide="ignore"):
        tl = -20.0 * np.log10(np.abs(p))
    return xr.DataArray(
        tl,
        dims=("depth", "range"),
        coords={"depth": ("depth", np.asarray(zr), {"units": "m", "long_name": "receiver depth"}),
                "range": ("range", np.asarray(rr), {"units": "m", "long_name": "range"})},
        name="tl",
        attrs={"units": "dB", "long_name": "transmission loss re 1 m", "engine": runner.name,
               "engine_version": version, "freq_hz": f, "source_depth_m": zs},
    )


def modes(env: Environment, freq_hz: float, engine: str = "kraken", **options: Any) -> xr.Dataset:
    """Normal modes at one frequency: every trapped mode up to the half-space speed.

    Args:
        env: The environment.
        freq_hz: Frequency, Hz.
        engine: ``"kraken"`` or ``"krakenc"``.
        **options: Engine options; ``depths_m`` (increasing sample depths down to the half-space top;
            default the mesh-fine grid of the lost-mode check) and ``max_range_m``.

    Returns:
        Dataset with dims (mode, depth): ``wavenumber`` (complex rad/m, Im <= 0), ``phase_speed`` and
        ``group_speed`` (m/s), ``attenuation`` (neper/m) on mode; ``shape`` (mode, depth), KRAKEN
        normalization ``int shape^2 / rho dz = 1``. Coords ``mode`` (1..n) and ``depth`` (m).
    """
    env = _environment(env)
    runner = _engine(engine)
    (f,) = check_frequencies([_one("Tones", "freq_hz", freq_hz)])
    resolved = runner.resolve_options(options, "modes")
    version = runner.version()
    result = runner.modes(env, f, **resolved)
    n = result.wavenumber.size
    return xr.Dataset(
        {
            "wavenumber": ("mode", result.wavenumber,
                           {"units": "rad/m", "long_name": "horizontal wavenumber (Im <= 0: decay)"}),
            "phase_speed": ("mode", result.phase_speed_mps, {"units": "m/s", "long_name": "phase speed"}),
            "group_speed": ("mode", result.group_speed_mps, {"units": "m/s", "long_name": "group speed"}),
            "attenuation": ("mode", result.attenuation_np_per_m,
                            {"units": "neper/m", "long_name": "modal attenuation"}),
            "shape": (("mode", "depth"), result.shape,
                      {"units": "(g/cm^3)^(1/2) m^(-1/2)",
                       "long_name": "mode shape, normalized so that int shape^2 / density dz = 1"}),
        },
        coords={"mode": ("mode", np.arange(1, n + 1), {"units": "1", "long_name": "mode number"}),
                "depth": ("depth", result.depth_m, {"units": "m", "long_name": "depth"})},
        attrs={"engine": runner.name, "engine_version": version, "freq_hz": f},
    )


def arrivals(env: Environment, source_depth_m: float, receiver_depth_m: float, range_m: float,
             freq_hz: float, engine: str = "bellhop", **options: Any) -> xr.Dataset:
    """Ray arrivals (eigenray delays and amplitudes) at one receiver.

    Args:
        env: The environment (half-space bottom only, for BELLHOP).
        source_depth_m: Source depth, m.
        receiver_depth_m: Receiver depth, m.
        range_m: Range, m.
        freq_hz: Frequency of the run (sets beam widths and bottom loss), Hz.
        engine: ``"bellhop"`` or ``"bellhop-fortran"``.
        **options: Engine options (``beams``, ``max_angle_deg``).

    Returns:
        Dataset on dim ``arrival`` (sorted by delay): ``delay`` (s), ``amplitude`` (complex re 1 m, such
        that ``sum(amplitude * exp(-2j pi f delay))`` is the pressure at f), ``departure_angle`` and
        ``arrival_angle`` (degrees, positive towards the sea floor), ``surface_bounces``,
        ``bottom_bounces``.
    """
    env = _environment(env)
    runner = _engine(engine)
    zs, (zr,), (r,) = check_geometry(env, source_depth_m, [_one("Receivers", "depth_m", receiver_depth_m)],
                                     [_one("Receivers", "range_m", range_m)])
    (f,) = check_frequencies([_one("Tones", "freq_hz", freq_hz)])
    resolved = runner.resolve_options(options, "arrivals")
    version = runner.version()
    result = runner.arrivals(env, zs, zr, r, f, **resolved)
    return xr.Dataset(
        {
            "delay": ("arrival", result.delay_s, {"units": "s", "long_name": "travel time"}),
            "amplitude": ("arrival", result.amplitude,
                          {"units": "1", "long_name": "complex amplitude re 1 m (exp(-i omega delay) convention)"}),
            "departure_angle": ("arrival", result.departure_angle_deg,
                                {"units": "degree", "long_name": "launch angle at the source, positive down"}),
            "arrival_angle": ("arrival", result.arrival_angle_deg,
                              {"units": "degree", "long_name": "angle at the receiver, positive down"}),
            "surface_bounces": ("arrival", result.surface_bounces,
                                {"units": "1", "long_name": "number of surface reflections"}),
            "bottom_bounces": ("arrival", result.bottom_bounces,
                               {"units": "1", "long_name": "number of bottom reflections"}),
        },
        coords={"arrival": ("arrival", np.arange(result.delay_s.size),
                            {"units": "1", "long_name": "arrival index, by delay"})},
        attrs={"engine": runner.name, "engine_version": version, "freq_hz": f, "source_depth_m": zs,
               "receiver_depth_m": zr, "range_m": r},
    )


def engines() -> list[EngineInfo]:
    """Every known engine with its availability, version and a one-line detail."""
    return _engines()
