"""Range-independent ocean environments: water column, layered fluid seabed over a half-space.

All values are in explicit units named by the field: metres, metres per second, grams per cubic
centimetre, and attenuation in dB per metre per kilohertz (the Acoustics Toolbox 'F' unit, used by the
SWellEx-96 literature). Objects are frozen and validated on construction; every error names the class,
the field, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from propagation.errors import InvalidEnvironmentError

# Plausibility bounds: wide enough for any real ocean or seabed, narrow enough to catch unit slips
# (km for m, kg/m^3 for g/cm^3, m/s for km/s).
WATER_SPEED_RANGE_MPS = (1300.0, 1700.0)
SEABED_SPEED_RANGE_MPS = (1000.0, 8000.0)
DENSITY_RANGE_G_CM3 = (0.5, 5.0)
ATTENUATION_MAX_DB_PER_M_KHZ = 50.0


def _fail(owner: str, name: str, value: Any, expected: str) -> InvalidEnvironmentError:
    return InvalidEnvironmentError(f"{owner}.{name} = {value!r}: expected {expected}")


def _finite(owner: str, name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(owner, name, value, "a number") from None
    if not math.isfinite(number):
        raise _fail(owner, name, value, "a finite number")
    return number


def _in_range(owner: str, name: str, value: Any, low: float, high: float, what: str) -> float:
    number = _finite(owner, name, value)
    if not low <= number <= high:
        raise _fail(owner, name, value, f"{what} in [{low:g}, {high:g}]")
    return number


def _positive(owner: str, name: str, value: Any, what: str) -> float:
    number = _finite(owner, name, value)
    if number <= 0.0:
        raise _fail(owner, name, value, f"a positive {what}")
    return number


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def db_per_wavelength_to_db_per_m_khz(alpha_db_per_wavelength: float, sound_speed_mps: float) -> float:
    """Converts an attenuation in dB per wavelength to dB/(m kHz).

    One wavelength at frequency f is c/f metres, so alpha[dB/(m kHz)] = alpha[dB/lambda] * 1000 / c.

    Args:
        alpha_db_per_wavelength: Attenuation in dB per wavelength.
        sound_speed_mps: Sound speed in m/s at which the wavelength is measured.
    """
    return alpha_db_per_wavelength * 1000.0 / sound_speed_mps


def db_per_m_khz_to_db_per_wavelength(alpha_db_per_m_khz: float, sound_speed_mps: float) -> float:
    """Converts an attenuation in dB/(m kHz) to dB per wavelength (inverse of the function above)."""
    return alpha_db_per_m_khz * sound_speed_mps / 1000.0


@dataclass(frozen=True)
class SoundSpeedProfile:
    """Water sound speed against depth, linearly interpolated.

    The profile may be shorter or longer than the water column of an :class:`Environment`: it is held
    constant below its last point and cut at the sea floor (see :meth:`Environment.water_ssp`).

    Attributes:
        depth_m: Depths, shape (n,), m, strictly increasing, first one 0 (the sea surface).
        speed_mps: Sound speeds, shape (n,), m/s.
    """

    depth_m: tuple[float, ...]
    speed_mps: tuple[float, ...]

    def __post_init__(self) -> None:
        owner = "SoundSpeedProfile"
        depth = tuple(_finite(owner, "depth_m", d) for d in np.atleast_1d(self.depth_m))
        speed = tuple(
            _in_range(owner, "speed_mps", c, *WATER_SPEED_RANGE_MPS, "a water sound speed in m/s")
            for c in np.atleast_1d(self.speed_mps)
        )
        if len(depth) != len(speed):
            raise _fail(owner, "speed_mps", f"{len(speed)} values", f"one per depth ({len(depth)})")
        if not depth:
            raise _fail(owner, "depth_m", depth, "at least one point")
        if depth[0] != 0.0:
            raise _fail(owner, "depth_m", depth[0], "the first depth at the surface, 0 m")
        steps = np.diff(depth)
        if np.any(steps <= 0):
            bad = int(np.argmax(steps <= 0)) + 1
            raise _fail(owner, f"depth_m[{bad}]", depth[bad], f"a depth greater than {depth[bad - 1]!r}")
        _set(self, "depth_m", depth)
        _set(self, "speed_mps", speed)

    @classmethod
    def isovelocity(cls, speed_mps: float) -> "SoundSpeedProfile":
        """A constant-speed profile."""
        return cls(depth_m=(0.0,), speed_mps=(speed_mps,))

    def speed_at(self, depth_m: np.ndarray | float) -> np.ndarray:
        """Sound speed (m/s) at the given depths (m), held constant below the last point."""
        return np.interp(depth_m, self.depth_m, self.speed_mps)


@dataclass(frozen=True)
class FluidLayer:
    """A fluid sediment layer with a linear sound-speed gradient.

    Attributes:
        thickness_m: Layer thickness, m.
        sound_speed_top_mps: Compressional speed at the top of the layer, m/s.
        sound_speed_bottom_mps: Compressional speed at the bottom of the layer, m/s.
        density_g_cm3: Density, g/cm^3.
        attenuation_db_per_m_khz: Compressional attenuation, dB/(m kHz).
    """

    thickness_m: float
    sound_speed_top_mps: float
    sound_speed_bottom_mps: float
    density_g_cm3: float
    attenuation_db_per_m_khz: float

    def __post_init__(self) -> None:
        owner = "FluidLayer"
        _set(self, "thickness_m", _positive(owner, "thickness_m", self.thickness_m, "thickness in m"))
        for name in ("sound_speed_top_mps", "sound_speed_bottom_mps"):
            _set(self, name, _in_range(owner, name, getattr(self, name), *SEABED_SPEED_RANGE_MPS,
                                       "a seabed sound speed in m/s"))
        _set(self, "density_g_cm3", _in_range(owner, "density_g_cm3", self.density_g_cm3,
                                              *DENSITY_RANGE_G_CM3, "a density in g/cm^3"))
        _set(self, "attenuation_db_per_m_khz", _in_range(
            owner, "attenuation_db_per_m_khz", self.attenuation_db_per_m_khz, 0.0,
            ATTENUATION_MAX_DB_PER_M_KHZ, "an attenuation in dB/(m kHz)"))


@dataclass(frozen=True)
class HalfSpace:
    """The homogeneous fluid half-space below the deepest layer.

    Attributes:
        sound_speed_mps: Compressional speed, m/s.
        density_g_cm3: Density, g/cm^3.
        attenuation_db_per_m_khz: Compressional attenuation, dB/(m kHz).
    """

    sound_speed_mps: float
    density_g_cm3: float
    attenuation_db_per_m_khz: float

    def __post_init__(self) -> None:
        owner = "HalfSpace"
        _set(self, "sound_speed_mps", _in_range(owner, "sound_speed_mps", self.sound_speed_mps,
                                                *SEABED_SPEED_RANGE_MPS, "a seabed sound speed in m/s"))
        _set(self, "density_g_cm3", _in_range(owner, "density_g_cm3", self.density_g_cm3,
                                              *DENSITY_RANGE_G_CM3, "a density in g/cm^3"))
        _set(self, "attenuation_db_per_m_khz", _in_range(
            owner, "attenuation_db_per_m_khz", self.attenuation_db_per_m_khz, 0.0,
            ATTENUATION_MAX_DB_PER_M_KHZ, "an attenuation in dB/(m kHz)"))


@dataclass(frozen=True)
class Environment:
    """A range-independent waveguide: pressure-release surface, water, fluid layers, half-space.

    Attributes:
        water_depth_m: Depth of the sea floor, m.
        ssp: Water sound-speed profile.
        layers: Sediment layers from the sea floor down (may be empty: a Pekeris-type bottom).
        halfspace: The half-space below the last layer.
        water_density_g_cm3: Water density, g/cm^3.
        name: A short title (used in engine input files and plots).
    """

    water_depth_m: float
    ssp: SoundSpeedProfile
    halfspace: HalfSpace
    layers: tuple[FluidLayer, ...] = ()
    water_density_g_cm3: float = 1.0
    name: str = "environment"

    def __post_init__(self) -> None:
        owner = "Environment"
        _set(self, "water_depth_m", _positive(owner, "water_depth_m", self.water_depth_m,
                                              "water depth in m"))
        if not isinstance(self.ssp, SoundSpeedProfile):
            raise _fail(owner, "ssp", type(self.ssp).__name__, "a SoundSpeedProfile")
        if not isinstance(self.halfspace, HalfSpace):
            raise _fail(owner, "halfspace", type(self.halfspace).__name__, "a HalfSpace")
        layers = tuple(self.layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, FluidLayer):
                raise _fail(owner, f"layers[{i}]", type(layer).__name__, "a FluidLayer")
        _set(self, "layers", layers)
        _set(self, "water_density_g_cm3", _in_range(
            owner, "water_density_g_cm3", self.water_density_g_cm3, 0.9, 1.1, "a water density in g/cm^3"))
        if not isinstance(self.name, str) or not self.name.strip():
            raise _fail(owner, "name", self.name, "a non-empty title")

    def replace(self, **changes: Any) -> "Environment":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def bottom_depth_m(self) -> float:
        """Depth of the top of the half-space, m."""
        return self.water_depth_m + sum(layer.thickness_m for layer in self.layers)

    @property
    def max_speed_mps(self) -> float:
        """The largest compressional speed anywhere: the half-space speed bounds trapped modes."""
        speeds = [self.halfspace.sound_speed_mps, max(self.ssp.speed_mps)]
        for layer in self.layers:
            speeds += [layer.sound_speed_top_mps, layer.sound_speed_bottom_mps]
        return max(speeds)

    @property
    def is_isovelocity(self) -> bool:
        """True when the water sound speed does not vary over the water column."""
        return len(set(self.water_ssp()[1])) == 1

    def water_ssp(self) -> tuple[np.ndarray, np.ndarray]:
        """The water profile from the surface to exactly the sea floor.

        Points below the floor are dropped, the floor value is interpolated, and a profile that ends
        above the floor is held at its last speed down to it.

        Returns:
            depth_m: shape (n,), m, from 0 to ``water_depth_m``.
            speed_mps: shape (n,), m/s.
        """
        depth = np.asarray(self.ssp.depth_m)
        keep = depth < self.water_depth_m
        z = np.append(depth[keep], self.water_depth_m)
        return z, self.ssp.speed_at(z)


def _check_depths(owner: str, name: str, values: Iterable[float], water_depth_m: float | None) -> tuple:
    depths = tuple(_finite(owner, name, v) for v in np.atleast_1d(np.asarray(values, dtype=float)))
    if not depths:
        raise _fail(owner, name, depths, "at least one depth")
    for i, d in enumerate(depths):
        if d < 0.0:
            raise _fail(owner, f"{name}[{i}]", d, "a depth below the surface (>= 0 m)")
        if water_depth_m is not None and d > water_depth_m:
            raise _fail(owner, f"{name}[{i}]", d, f"a depth inside the water column (<= {water_depth_m:g} m)")
    return depths


def check_geometry(env: Environment, source_depth_m: float, receiver_depths_m: Sequence[float],
                   ranges_m: Sequence[float]) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """Validates source and receiver positions against an environment.

    Args:
        env: The environment.
        source_depth_m: Source depth, m.
        receiver_depths_m: Receiver depths, shape (n_receiver,), m.
        ranges_m: Horizontal ranges, shape (n_range,), m; each positive.

    Returns:
        The same values as floats and tuples.

    Raises:
        InvalidEnvironmentError: naming the field and value when a position is outside the water.
    """
    (zs,) = _check_depths("Source", "depth_m", [source_depth_m], env.water_depth_m)
    zr = _check_depths("Receivers", "depths_m", receiver_depths_m, env.water_depth_m)
    rr = tuple(_positive("Receivers", "ranges_m", r, "range in m")
               for r in np.atleast_1d(np.asarray(ranges_m, dtype=float)))
    if not rr:
        raise _fail("Receivers", "ranges_m", rr, "at least one range")
    return zs, zr, rr


def check_frequencies(freqs_hz: Sequence[float] | float) -> tuple[float, ...]:
    """Validates frequencies (Hz): each positive and finite."""
    freqs = tuple(_positive("Tones", "freqs_hz", f, "frequency in Hz")
                  for f in np.atleast_1d(np.asarray(freqs_hz, dtype=float)))
    if not freqs:
        raise _fail("Tones", "freqs_hz", freqs, "at least one frequency")
    return freqs
