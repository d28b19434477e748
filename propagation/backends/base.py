"""The engine interface, the registry of engines by name, and option checking.

An engine turns a validated :class:`~propagation.environment.Environment` and validated positions into
plain NumPy arrays; :mod:`propagation.api` checks the inputs and wraps the arrays as xarray objects.
Engines never see unvalidated input.

Conventions shared by every engine:

* Pressure is complex, normalized so that the free-field pressure 1 m from the source has modulus 1:
  transmission loss is ``TL = -20 log10 |p|`` dB re 1 m.
* Phase convention of the Acoustics Toolbox (KRAKEN's FIELD output): the phase of an outgoing wave
  decreases with range, ``p ~ exp(-i k r)`` with ``Im k < 0`` for an attenuated mode, i.e. time
  dependence ``exp(+i omega t)``. BELLHOP's field already follows it (checked in the tests); no engine
  output is conjugated.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from propagation.environment import Environment
from propagation.errors import EngineError, EngineNotFoundError

CAPABILITIES = ("pressure", "tl_field", "modes", "arrivals")


@dataclass(frozen=True)
class EngineInfo:
    """What ``acoustic-inv doctor`` reports about one engine.

    Attributes:
        name: Engine name as passed to the API (``"kraken"``, ``"bellhop"``, ...).
        available: Whether the engine can run here (package importable, program found).
        version: Version string of the code that runs, or None when unavailable.
        detail: One line: what the engine is, or why it is unavailable.
    """

    name: str
    available: bool
    version: str | None
    detail: str


@dataclass(frozen=True)
class ModeSet:
    """Normal modes of one frequency, as returned by a mode engine.

    Attributes:
        freq_hz: Frequency, Hz.
        wavenumber: Horizontal wavenumbers, shape (n_mode,), complex rad/m, ``Im <= 0``.
        phase_speed_mps: Phase speeds, shape (n_mode,), m/s.
        group_speed_mps: Group speeds, shape (n_mode,), m/s.
        attenuation_np_per_m: Modal attenuation, shape (n_mode,), neper/m.
        depth_m: Sample depths of the shapes, shape (n_depth,), m.
        shape: Mode shapes, shape (n_mode, n_depth), complex, KRAKEN normalization
            ``int psi^2 / rho dz = 1`` with rho in g/cm^3 (so units (g/cm^3)^(1/2) m^(-1/2)).
    """

    freq_hz: float
    wavenumber: np.ndarray
    phase_speed_mps: np.ndarray
    group_speed_mps: np.ndarray
    attenuation_np_per_m: np.ndarray
    depth_m: np.ndarray
    shape: np.ndarray


@dataclass(frozen=True)
class ArrivalSet:
    """Ray arrivals at one receiver (one frequency), sorted by delay.

    Attributes:
        delay_s: Travel times, shape (n_arrival,), s.
        amplitude: Complex amplitudes, shape (n_arrival,), re 1 m, such that the pressure at the
            run frequency f is ``sum(amplitude * exp(-2j pi f delay_s))`` (the package's phase
            convention).
        departure_angle_deg: Launch angles at the source, shape (n_arrival,), degrees (positive down).
        arrival_angle_deg: Angles at the receiver, shape (n_arrival,), degrees.
        surface_bounces: Surface reflections per path, shape (n_arrival,), int.
        bottom_bounces: Bottom reflections per path, shape (n_arrival,), int.
    """

    delay_s: np.ndarray
    amplitude: np.ndarray
    departure_angle_deg: np.ndarray
    arrival_angle_deg: np.ndarray
    surface_bounces: np.ndarray
    bottom_bounces: np.ndarray


@dataclass(frozen=True)
class Option:
    """One keyword option an engine accepts.

    Attributes:
        default: Value used when the caller does not give one.
        check: Converts and validates a value; raises ValueError with a message naming what is expected.
        doc: One line for error messages and documentation.
    """

    default: Any
    check: Callable[[Any], Any]
    doc: str


def positive_float(low: float = 0.0, high: float = math.inf) -> Callable[[Any], float]:
    """A checker for a float in (low, high]."""

    def check(value: Any) -> float:
        number = float(value)
        if not (math.isfinite(number) and low < number <= high):
            raise ValueError(f"expected a number in ({low:g}, {high:g}]")
        return number

    return check


def int_in(low: int, high: int) -> Callable[[Any], int]:
    """A checker for an integer in [low, high]."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or int(value) != value:
            raise ValueError("expected an integer")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"expected an integer in [{low}, {high}]")
        return number

    return check


def boolean(value: Any) -> bool:
    """A checker for a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError("expected True or False")
    return bool(value)


class Engine(ABC):
    """A propagation engine, chosen by name.

    Subclasses set ``name``, ``capabilities`` (a subset of :data:`CAPABILITIES`) and ``options`` (the
    keyword options they accept, by name), and implement the capabilities they list.
    """

    name: str = ""
    capabilities: frozenset[str] = frozenset()
    options: Mapping[str, Option] = {}

    def options_for(self, capability: str) -> Mapping[str, Option]:
        """The options accepted by one capability (by default the same for all)."""
        return self.options

    @abstractmethod
    def info(self) -> EngineInfo:
        """Availability and version of this engine on this machine (cheap; imports nothing heavy)."""

    def version(self) -> str:
        """The version string recorded in results; raises EngineNotFoundError when unavailable."""
        info = self.info()
        if not info.available:
            raise EngineNotFoundError(f"engine {self.name!r} is not available: {info.detail}")
        return info.version or "unknown"

    def resolve_options(self, given: Mapping[str, Any], capability: str) -> dict[str, Any]:
        """Fills defaults and checks every option; names the option and the engine in errors.

        Raises:
            TypeError: for an option this engine does not know.
            ValueError: for a value out of range.
            EngineError: when the engine cannot do ``capability`` at all.
        """
        if capability not in self.capabilities:
            able = sorted(e.name for e in _REGISTRY.values() if capability in e.capabilities)
            raise EngineError(self.name, f"this engine does not compute {capability}; engines that do: "
                                         f"{', '.join(able)}")
        accepted = self.options_for(capability)
        unknown = sorted(set(given) - set(accepted))
        if unknown:
            known = ", ".join(f"{k} ({o.doc})" for k, o in accepted.items()) or "none"
            raise TypeError(f"engine {self.name!r}: unknown option {unknown[0]!r} for {capability}; "
                            f"options: {known}")
        resolved = {}
        for key, option in accepted.items():
            value = given.get(key, option.default)
            try:
                resolved[key] = option.check(value)
            except (TypeError, ValueError) as error:
                raise ValueError(f"engine {self.name!r}: option {key} = {value!r}: {error}") from None
        return resolved

    def pressure(self, env: Environment, source_depth_m: float, receiver_depths_m: np.ndarray,
                 range_m: float, freqs_hz: tuple[float, ...], **options: Any) -> np.ndarray:
        """Complex pressure at one range.

        Args:
            env: Validated environment.
            source_depth_m: Source depth, m.
            receiver_depths_m: Receiver depths, shape (n_receiver,), m, strictly increasing.
            range_m: Horizontal range, m.
            freqs_hz: Frequencies, Hz.
            **options: Resolved engine options.

        Returns:
            Pressure re 1 m, shape (n_freq, n_receiver), complex128.
        """
        raise NotImplementedError

    def pressure_positions(self, env: Environment, source_depths_m: np.ndarray, ranges_m: np.ndarray,
                           receiver_depths_m: np.ndarray, freqs_hz: tuple[float, ...],
                           **options: Any) -> np.ndarray:
        """Complex pressure for several source positions in one environment.

        Engines that can share work between positions (normal modes) override this; the default runs
        :meth:`pressure` once per position.

        Args:
            env: Validated environment.
            source_depths_m: Source depths, shape (n_position,), m.
            ranges_m: Ranges, shape (n_position,), m.
            receiver_depths_m: Receiver depths, shape (n_receiver,), m, strictly increasing.
            freqs_hz: Frequencies, Hz.
            **options: Resolved engine options.

        Returns:
            Pressure re 1 m, shape (n_position, n_freq, n_receiver), complex128.
        """
        return np.stack([self.pressure(env, float(zs), receiver_depths_m, float(r), freqs_hz, **options)
                         for zs, r in zip(source_depths_m, ranges_m)])

    def tl_field(self, env: Environment, source_depth_m: float, freq_hz: float, depths_m: np.ndarray,
                 ranges_m: np.ndarray, **options: Any) -> np.ndarray:
        """Complex pressure on a grid, shape (n_depth, n_range), complex128 (depths, ranges increasing)."""
        raise NotImplementedError

    def modes(self, env: Environment, freq_hz: float, **options: Any) -> ModeSet:
        """Normal modes at one frequency."""
        raise NotImplementedError

    def arrivals(self, env: Environment, source_depth_m: float, receiver_depth_m: float, range_m: float,
                 freq_hz: float, **options: Any) -> ArrivalSet:
        """Ray arrivals at one receiver."""
        raise NotImplementedError


_REGISTRY: dict[str, Engine] = {}


def register(engine: Engine) -> Engine:
    """Adds an engine to the registry under its name (replacing none: names are unique)."""
    if engine.name in _REGISTRY and _REGISTRY[engine.name] is not engine:
        raise ValueError(f"an engine named {engine.name!r} is already registered")
    _REGISTRY[engine.name] = engine
    return engine


def engine_names() -> list[str]:
    """Names of the registered engines, in registration order."""
    return list(_REGISTRY)


def get_engine(name: str) -> Engine:
    """The engine registered under ``name``.

    Raises:
        EngineNotFoundError: naming the unknown engine and listing the known names.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise EngineNotFoundError(
            f"unknown engine {name!r}: expected one of {', '.join(_REGISTRY)}") from None


def engines() -> list[EngineInfo]:
    """Availability and version of every registered engine."""
    return [engine.info() for engine in _REGISTRY.values()]
