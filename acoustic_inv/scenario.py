"""Scenarios: the fixed experiment (environment, array, tones, engine, noise, features) and the prior.

A scenario is a TOML file; the schema is documented in ``docs/scenarios.md``. Every key is checked: a
misspelt key, a value out of range or an inconsistent geometry raises :class:`ConfigError` naming the
file and the key, on one line.

The prior's parameters map onto the environment and the geometry by name through :data:`PARAMETERS`,
the one table that says what each parameter changes (see :func:`apply_parameters`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from acoustic_inv.errors import ConfigError
from acoustic_inv.priors import Distribution, ParameterPrior, Prior
from acoustic_inv.resources import resolve_scenario, scenario_names
from propagation.environment import (
    DENSITY_RANGE_G_CM3,
    SEABED_SPEED_RANGE_MPS,
    ATTENUATION_MAX_DB_PER_M_KHZ,
    Environment,
    FluidLayer,
    HalfSpace,
    SoundSpeedProfile,
)
from propagation.errors import PropagationError
from propagation.io import environment_from_dict

#: Engines a scenario may name (see :func:`propagation.pressure`).
ENGINES: tuple[str, ...] = ("kraken", "krakenc", "bellhop", "bellhop-fortran")
#: Engines that model only a half-space bottom (no sediment layers).
HALFSPACE_ONLY_ENGINES: tuple[str, ...] = ("bellhop", "bellhop-fortran")

NOISE_MODELS: tuple[str, ...] = ("complex_gaussian", "none")
FEATURE_KINDS: tuple[str, ...] = ("unit_pressure", "csdm", "pressure")

_TABLES = ("scenario", "environment", "array", "tones", "source", "engine", "noise", "observation",
           "prior", "simulation")


# ---------------------------------------------------------------------------------------------------
# The parameter table
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Draft:
    """Mutable working copy of what parameters change; turned back into an :class:`Environment`."""

    water_depth_m: float
    source_depth_m: float
    source_range_m: float
    ssp_shift_mps: float
    layer0: dict[str, float] | None
    halfspace: dict[str, float]


@dataclass(frozen=True)
class ParameterSpec:
    """What one named parameter is and what it changes.

    Attributes:
        name: Parameter name (its unit is the suffix).
        units: Units of its values.
        long_name: Human-readable name.
        target: What it changes, in words (documented in docs/scenarios.md).
        domain: Physically allowed values (low, high), in ``units``; prior bounds must lie inside.
        geometry: True for source-position parameters (the modes do not depend on them).
        needs_layer: True when the environment must have at least one sediment layer.
        apply: Writes the value into a :class:`_Draft`.
        nominal: Reads the scenario's fixed value of the parameter.
    """

    name: str
    units: str
    long_name: str
    target: str
    domain: tuple[float, float]
    geometry: bool
    needs_layer: bool
    apply: Callable[[_Draft, float], None] = field(repr=False)
    nominal: Callable[["Scenario"], float] = field(repr=False)


def _layer_set(key: str) -> Callable[[_Draft, float], None]:
    def apply(draft: _Draft, value: float) -> None:
        assert draft.layer0 is not None
        draft.layer0[key] = value
    return apply


def _halfspace_set(key: str) -> Callable[[_Draft, float], None]:
    def apply(draft: _Draft, value: float) -> None:
        draft.halfspace[key] = value
    return apply


def _set_attr(key: str) -> Callable[[_Draft, float], None]:
    def apply(draft: _Draft, value: float) -> None:
        setattr(draft, key, value)
    return apply


def _layer0(scenario: "Scenario") -> FluidLayer:
    return scenario.environment.layers[0]


_SEABED_SPEED = (SEABED_SPEED_RANGE_MPS[0], SEABED_SPEED_RANGE_MPS[1])
_DEPTH = (0.0, 12000.0)

#: The mapping of parameter names onto the environment and geometry: the only place that defines it.
PARAMETERS: dict[str, ParameterSpec] = {spec.name: spec for spec in (
    ParameterSpec(
        "source_range_m", "m", "source range",
        "horizontal source-array range", (1.0, 1.0e6), True, False,
        _set_attr("source_range_m"), lambda s: s.source.range_m),
    ParameterSpec(
        "source_depth_m", "m", "source depth",
        "source depth below the surface", _DEPTH, True, False,
        _set_attr("source_depth_m"), lambda s: s.source.depth_m),
    ParameterSpec(
        "water_depth_m", "m", "water depth",
        "depth of the sea floor; the sound-speed profile is cut there or held at its last value down "
        "to it", (1.0, _DEPTH[1]), False, False,
        _set_attr("water_depth_m"), lambda s: s.environment.water_depth_m),
    ParameterSpec(
        "water_sound_speed_shift_mps", "m/s", "water sound-speed shift",
        "constant added to every point of the water sound-speed profile", (-100.0, 100.0), False, False,
        _set_attr("ssp_shift_mps"), lambda s: 0.0),
    ParameterSpec(
        "sediment_sound_speed_mps", "m/s", "sediment sound speed",
        "speed at the top of the first sediment layer; the layer keeps its gradient (m/s per m), so "
        "its bottom speed is top + gradient x thickness", _SEABED_SPEED, False, True,
        _layer_set("sound_speed_top_mps"), lambda s: _layer0(s).sound_speed_top_mps),
    ParameterSpec(
        "sediment_thickness_m", "m", "sediment thickness",
        "thickness of the first sediment layer (same gradient, so its bottom speed follows)",
        (1.0e-3, 1.0e4), False, True,
        _layer_set("thickness_m"), lambda s: _layer0(s).thickness_m),
    ParameterSpec(
        "sediment_density_g_cm3", "g/cm^3", "sediment density",
        "density of the first sediment layer", DENSITY_RANGE_G_CM3, False, True,
        _layer_set("density_g_cm3"), lambda s: _layer0(s).density_g_cm3),
    ParameterSpec(
        "sediment_attenuation_db_per_m_khz", "dB/(m kHz)", "sediment attenuation",
        "compressional attenuation of the first sediment layer", (0.0, ATTENUATION_MAX_DB_PER_M_KHZ),
        False, True,
        _layer_set("attenuation_db_per_m_khz"), lambda s: _layer0(s).attenuation_db_per_m_khz),
    ParameterSpec(
        "bottom_sound_speed_mps", "m/s", "half-space sound speed",
        "compressional speed of the half-space below the last layer", _SEABED_SPEED, False, False,
        _halfspace_set("sound_speed_mps"), lambda s: s.environment.halfspace.sound_speed_mps),
    ParameterSpec(
        "bottom_density_g_cm3", "g/cm^3", "half-space density",
        "density of the half-space", DENSITY_RANGE_G_CM3, False, False,
        _halfspace_set("density_g_cm3"), lambda s: s.environment.halfspace.density_g_cm3),
    ParameterSpec(
        "bottom_attenuation_db_per_m_khz", "dB/(m kHz)", "half-space attenuation",
        "compressional attenuation of the half-space", (0.0, ATTENUATION_MAX_DB_PER_M_KHZ), False, False,
        _halfspace_set("attenuation_db_per_m_khz"), lambda s: s.environment.halfspace.attenuation_db_per_m_khz),
)}


@dataclass(frozen=True)
class Geometry:
    """One forward-model input: the environment and the source position.

    Attributes:
        environment: The environment with the parameters applied.
        source_depth_m: Source depth, m.
        source_range_m: Source-array range, m.
    """

    environment: Environment
    source_depth_m: float
    source_range_m: float


def apply_parameters(scenario: "Scenario", values: Mapping[str, float]) -> Geometry:
    """Applies named parameter values to the scenario's fixed environment and source.

    Args:
        scenario: The scenario (its environment and nominal source position are the base).
        values: Parameter values by name (any subset of :data:`PARAMETERS`), in their units.

    Returns:
        The environment and source position.

    Raises:
        KeyError: for a name not in :data:`PARAMETERS`.
        propagation.errors.InvalidEnvironmentError: when the values make an invalid environment.
    """
    env = scenario.environment
    layer0 = None
    gradient = 0.0
    if env.layers:
        first = env.layers[0]
        gradient = (first.sound_speed_bottom_mps - first.sound_speed_top_mps) / first.thickness_m
        layer0 = {"thickness_m": first.thickness_m, "sound_speed_top_mps": first.sound_speed_top_mps,
                  "density_g_cm3": first.density_g_cm3,
                  "attenuation_db_per_m_khz": first.attenuation_db_per_m_khz}
    draft = _Draft(
        water_depth_m=env.water_depth_m, source_depth_m=scenario.source.depth_m,
        source_range_m=scenario.source.range_m, ssp_shift_mps=0.0, layer0=layer0,
        halfspace={"sound_speed_mps": env.halfspace.sound_speed_mps,
                   "density_g_cm3": env.halfspace.density_g_cm3,
                   "attenuation_db_per_m_khz": env.halfspace.attenuation_db_per_m_khz})
    for name, value in values.items():
        PARAMETERS[name].apply(draft, float(value))
    changes: dict[str, Any] = {"water_depth_m": draft.water_depth_m,
                               "halfspace": HalfSpace(**draft.halfspace)}
    if draft.ssp_shift_mps != 0.0:
        changes["ssp"] = SoundSpeedProfile(env.ssp.depth_m,
                                           tuple(c + draft.ssp_shift_mps for c in env.ssp.speed_mps))
    if draft.layer0 is not None:
        top = draft.layer0["sound_speed_top_mps"]
        first = FluidLayer(sound_speed_bottom_mps=top + gradient * draft.layer0["thickness_m"],
                           **draft.layer0)
        changes["layers"] = (first,) + env.layers[1:]
    return Geometry(env.replace(**changes), draft.source_depth_m, draft.source_range_m)


# ---------------------------------------------------------------------------------------------------
# Configuration dataclasses
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrayConfig:
    """The receiving array.

    Attributes:
        receiver_depths_m: Element depths, shape (n_receiver,), m, each >= 0.
        name: A title.
    """

    receiver_depths_m: tuple[float, ...]
    name: str = "array"


@dataclass(frozen=True)
class SourceConfig:
    """The nominal source position, used for whichever of depth and range is not a parameter.

    Attributes:
        depth_m: Source depth, m.
        range_m: Source-array range, m, positive.
    """

    depth_m: float
    range_m: float


@dataclass(frozen=True)
class EngineConfig:
    """The propagation engine and its options.

    Attributes:
        name: One of :data:`ENGINES`.
        options: Keyword options for :func:`propagation.pressure`, as sorted (key, value) pairs.
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def options_dict(self) -> dict[str, Any]:
        """The options as a dict."""
        return dict(self.options)


@dataclass(frozen=True)
class NoiseConfig:
    """The noise model: complex Gaussian noise per element and tone at a per-sample SNR.

    Attributes:
        model: ``complex_gaussian`` or ``none``.
        snr_db: Distribution of the per-sample SNR, dB (None when ``model`` is ``none``).
    """

    model: str
    snr_db: Distribution | None


@dataclass(frozen=True)
class ObservationConfig:
    """Which source-invariant features the network sees (see :mod:`acoustic_inv.observation`).

    Attributes:
        features: One of :data:`FEATURE_KINDS`.
        reference_receiver: Index of the element whose phase is the reference (``unit_pressure``).
    """

    features: str = "unit_pressure"
    reference_receiver: int = 0


@dataclass(frozen=True)
class SimulationConfig:
    """Defaults of dataset generation.

    Attributes:
        chunk_size: Samples per chunk file.
        environment_reuse: Source positions simulated per environment draw (1: every sample draws
            its own environment).
    """

    chunk_size: int = 100
    environment_reuse: int = 1


@dataclass(frozen=True)
class Scenario:
    """A validated scenario.

    Attributes:
        name: Short name (file stem unless ``[scenario] name`` says otherwise).
        description: Free text.
        environment: The fixed environment (parameters are applied on top of it).
        array: The receiving array.
        freqs_hz: Tones, shape (n_freq,), Hz, increasing.
        source: Nominal source position.
        engine: Propagation engine and options.
        noise: Noise model.
        observation: Feature choice.
        prior: Prior over the named parameters.
        simulation: Dataset-generation defaults.
        text: The TOML text the scenario was read from.
        path: Where it was read from ("<string>" when not from a file).
    """

    name: str
    description: str
    environment: Environment
    array: ArrayConfig
    freqs_hz: tuple[float, ...]
    source: SourceConfig
    engine: EngineConfig
    noise: NoiseConfig
    observation: ObservationConfig
    prior: Prior
    simulation: SimulationConfig
    text: str = field(repr=False, default="")
    path: str = "<string>"

    @property
    def sha256(self) -> str:
        """SHA-256 of the scenario text: identifies the scenario a dataset was made with."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def param_names(self) -> tuple[str, ...]:
        """Parameter names in column order of ``theta``."""
        return self.prior.names

    def nominal_theta(self) -> np.ndarray:
        """The scenario's fixed values of the prior's parameters, shape (d,)."""
        return np.array([PARAMETERS[name].nominal(self) for name in self.prior.names])

    def geometry(self, theta: Sequence[float] | np.ndarray) -> Geometry:
        """The environment and source position for one parameter vector ``theta``, shape (d,)."""
        return apply_parameters(self, dict(zip(self.prior.names, np.asarray(theta, dtype=float))))


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------


class _Reader:
    """Helpers that name the file and the key in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {message}")

    def table(self, document: Mapping[str, Any], key: str, allowed: Sequence[str],
              required: Sequence[str] = (), optional_table: bool = False) -> Mapping[str, Any]:
        if key not in document:
            if optional_table:
                return {}
            raise self.fail(f"missing table [{key}]")
        table = document[key]
        if not isinstance(table, Mapping):
            raise self.fail(f"'{key}' must be a table ([{key}]), got {table!r}")
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise self.fail(f"unknown key '{key}.{unknown[0]}'; expected one of {sorted(allowed)}")
        for name in required:
            if name not in table:
                raise self.fail(f"missing key '{key}.{name}'")
        return table

    def number(self, key: str, value: Any) -> float:
        if isinstance(value, bool):
            raise self.fail(f"{key} = {value!r}: expected a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self.fail(f"{key} = {value!r}: expected a number") from None
        if not math.isfinite(number):
            raise self.fail(f"{key} = {value!r}: expected a finite number")
        return number

    def integer(self, key: str, value: Any, low: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key} = {value!r}: expected an integer")
        if low is not None and value < low:
            raise self.fail(f"{key} = {value!r}: expected an integer >= {low}")
        return value

    def string(self, key: str, value: Any, choices: Sequence[str] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{key} = {value!r}: expected a string")
        if choices is not None and value not in choices:
            raise self.fail(f"{key} = {value!r}: expected one of {list(choices)}")
        return value

    def numbers(self, key: str, value: Any) -> tuple[float, ...]:
        if not isinstance(value, (list, tuple)) or not value:
            raise self.fail(f"{key} = {value!r}: expected a non-empty array of numbers")
        return tuple(self.number(f"{key}[{i}]", v) for i, v in enumerate(value))


def _read_environment(reader: _Reader, document: Mapping[str, Any]) -> Environment:
    if "environment" not in document:
        raise reader.fail("missing table [environment]")
    try:
        return environment_from_dict(document["environment"], source=reader.source)
    except PropagationError as error:
        raise ConfigError(str(error).splitlines()[0]) from None


def _read_prior(reader: _Reader, document: Mapping[str, Any], environment: Environment) -> Prior:
    if "prior" not in document:
        raise reader.fail("missing table [prior] (at least one parameter, e.g. [prior.source_range_m])")
    table = document["prior"]
    if not isinstance(table, Mapping) or not table:
        raise reader.fail("[prior] must hold at least one parameter table, e.g. [prior.source_range_m]")
    params = []
    for name, spec_table in table.items():
        if name not in PARAMETERS:
            raise reader.fail(f"unknown parameter 'prior.{name}'; expected one of {sorted(PARAMETERS)}")
        spec = PARAMETERS[name]
        where = f"prior.{name}"
        if isinstance(spec_table, Mapping) and "units" in spec_table:
            units = spec_table["units"]
            if units != spec.units:
                raise reader.fail(f"{where}.units = {units!r}: {name} is in {spec.units!r}")
            spec_table = {k: v for k, v in spec_table.items() if k != "units"}
        try:
            distribution = Distribution.from_dict(spec_table, where)
        except ConfigError as error:
            raise reader.fail(str(error)) from None
        low, high = spec.domain
        for bound in ("low", "high"):
            value = getattr(distribution, bound)
            if not low <= value <= high:
                raise reader.fail(f"{where}.{bound} = {value:g}: expected a {spec.long_name} in "
                                  f"[{low:g}, {high:g}] {spec.units}")
        if spec.needs_layer and not environment.layers:
            raise reader.fail(f"{where}: the environment has no sediment layer to apply it to "
                              "(add an [[environment.layers]] table)")
        params.append(ParameterPrior(name, spec.units, spec.long_name, distribution))
    return Prior(tuple(params))


def _check_engine_options(reader: _Reader, engine_name: str, options: Mapping[str, Any]) -> None:
    """Checks ``[engine.options]`` against what the engine accepts (names and values)."""
    import propagation

    try:
        engine = propagation.get_engine(engine_name)
    except PropagationError:
        return  # a known name whose engine is not installed: reported when it runs
    try:
        engine.resolve_options(dict(options), "pressure")
    except TypeError as error:
        raise reader.fail(f"engine.options: {error}") from None
    except ValueError as error:
        raise reader.fail(f"engine.options: {error}") from None
    except PropagationError as error:
        raise reader.fail(f"engine.name = {engine_name!r}: {str(error).splitlines()[0]}") from None


def _bounds(prior: Prior, name: str, fixed: float) -> tuple[float, float]:
    if name in prior.names:
        p = prior.params[prior.index(name)]
        return p.low, p.high
    return fixed, fixed


def _check_geometry(reader: _Reader, scenario: Scenario) -> None:
    """Every draw from the prior must put the source and the receivers inside the water."""
    prior = scenario.prior
    water_low, _ = _bounds(prior, "water_depth_m", scenario.environment.water_depth_m)
    where_water = "prior.water_depth_m.low" if "water_depth_m" in prior.names else "environment.water_depth_m"
    depths = scenario.array.receiver_depths_m
    deepest = int(np.argmax(depths))
    if depths[deepest] > water_low:
        raise reader.fail(f"{where_water} = {water_low:g} m puts receiver array.receiver_depths_m[{deepest}] "
                          f"= {depths[deepest]:g} m below the sea floor")
    _, source_high = _bounds(prior, "source_depth_m", scenario.source.depth_m)
    where_source = "prior.source_depth_m.high" if "source_depth_m" in prior.names else "source.depth_m"
    if source_high > water_low:
        raise reader.fail(f"{where_source} = {source_high:g} m is below the shallowest sea floor "
                          f"({where_water} = {water_low:g} m)")
    # The environments at the two corners of the prior box must be valid (e.g. a sediment whose
    # bottom speed leaves the allowed range, a shifted profile out of range).
    for corner, values in (("lower", prior.low), ("upper", prior.high)):
        try:
            scenario.geometry(values)
        except PropagationError as error:
            raise reader.fail(f"[prior] at the {corner} bounds gives an invalid environment: "
                              f"{str(error).splitlines()[0]}") from None


def scenario_from_text(text: str, source: str = "<string>", default_name: str = "scenario") -> Scenario:
    """Parses and validates a scenario from TOML text.

    Args:
        text: The TOML document.
        source: Where it came from (a file name), used in error messages.
        default_name: Name used when the file has no ``[scenario] name``.

    Raises:
        ConfigError: one line naming ``source``, the key and the problem.
    """
    reader = _Reader(source)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise reader.fail(f"not valid TOML: {error}") from None
    unknown = sorted(set(document) - set(_TABLES))
    if unknown:
        raise reader.fail(f"unknown table [{unknown[0]}]; expected one of {list(_TABLES)}")

    meta = reader.table(document, "scenario", ("name", "description"), optional_table=True)
    name = reader.string("scenario.name", meta.get("name", default_name))
    if not name.strip() or any(c in name for c in "/\\"):
        raise reader.fail(f"scenario.name = {name!r}: expected a non-empty name without slashes")
    description = reader.string("scenario.description", meta.get("description", ""))

    environment = _read_environment(reader, document)

    array_table = reader.table(document, "array", ("name", "receiver_depths_m"), ("receiver_depths_m",))
    depths = reader.numbers("array.receiver_depths_m", array_table["receiver_depths_m"])
    for i, depth in enumerate(depths):
        if depth < 0.0:
            raise reader.fail(f"array.receiver_depths_m[{i}] = {depth:g}: expected a depth below the "
                              "surface (>= 0 m)")
    array = ArrayConfig(depths, reader.string("array.name", array_table.get("name", "array")))

    tones_table = reader.table(document, "tones", ("freqs_hz",), ("freqs_hz",))
    freqs = reader.numbers("tones.freqs_hz", tones_table["freqs_hz"])
    for i, f in enumerate(freqs):
        if f <= 0.0:
            raise reader.fail(f"tones.freqs_hz[{i}] = {f:g}: expected a positive frequency in Hz")
        if i and f <= freqs[i - 1]:
            raise reader.fail(f"tones.freqs_hz[{i}] = {f:g}: expected increasing frequencies "
                              f"(after {freqs[i - 1]:g})")

    prior = _read_prior(reader, document, environment)

    source_table = reader.table(document, "source", ("depth_m", "range_m"), optional_table=True)
    source_values = {}
    for key, param in (("depth_m", "source_depth_m"), ("range_m", "source_range_m")):
        if key in source_table:
            source_values[key] = reader.number(f"source.{key}", source_table[key])
        elif param in prior.names:
            p = prior.params[prior.index(param)]
            source_values[key] = 0.5 * (p.low + p.high)
        else:
            raise reader.fail(f"missing key 'source.{key}' (needed when {param} is not a prior parameter)")
    if source_values["depth_m"] < 0.0:
        raise reader.fail(f"source.depth_m = {source_values['depth_m']:g}: expected a depth below the "
                          "surface (>= 0 m)")
    if source_values["range_m"] <= 0.0:
        raise reader.fail(f"source.range_m = {source_values['range_m']:g}: expected a positive range in m")
    source_config = SourceConfig(**source_values)

    engine_table = reader.table(document, "engine", ("name", "options"), ("name",))
    engine_name = reader.string("engine.name", engine_table["name"], ENGINES)
    options = engine_table.get("options", {})
    if not isinstance(options, Mapping):
        raise reader.fail(f"engine.options must be a table ([engine.options]), got {options!r}")
    _check_engine_options(reader, engine_name, options)
    if engine_name in HALFSPACE_ONLY_ENGINES and environment.layers:
        raise reader.fail(f"engine.name = {engine_name!r} models a half-space bottom only, but the "
                          f"environment has {len(environment.layers)} sediment layer(s)")
    engine = EngineConfig(engine_name, tuple(sorted(options.items())))

    noise_table = reader.table(document, "noise", ("model", "snr_db"), ("model",))
    noise_model = reader.string("noise.model", noise_table["model"], NOISE_MODELS)
    snr = None
    if noise_model == "complex_gaussian":
        if "snr_db" not in noise_table:
            raise reader.fail("missing key 'noise.snr_db' (the per-sample SNR distribution, dB)")
        try:
            snr = Distribution.from_dict(noise_table["snr_db"], "noise.snr_db")
        except ConfigError as error:
            raise reader.fail(str(error)) from None
    elif "snr_db" in noise_table:
        raise reader.fail("noise.snr_db applies to noise.model = 'complex_gaussian' only")
    noise = NoiseConfig(noise_model, snr)

    obs_table = reader.table(document, "observation", ("features", "reference_receiver"), optional_table=True)
    features = reader.string("observation.features", obs_table.get("features", "unit_pressure"), FEATURE_KINDS)
    reference = reader.integer("observation.reference_receiver", obs_table.get("reference_receiver", 0))
    if not -len(depths) <= reference < len(depths):
        raise reader.fail(f"observation.reference_receiver = {reference}: expected an index into "
                          f"array.receiver_depths_m (0..{len(depths) - 1})")
    observation = ObservationConfig(features, reference % len(depths))

    sim_table = reader.table(document, "simulation", ("chunk_size", "environment_reuse"), optional_table=True)
    simulation = SimulationConfig(
        chunk_size=reader.integer("simulation.chunk_size", sim_table.get("chunk_size", 100), 1),
        environment_reuse=reader.integer("simulation.environment_reuse",
                                         sim_table.get("environment_reuse", 1), 1))

    scenario = Scenario(name=name, description=description, environment=environment, array=array,
                        freqs_hz=freqs, source=source_config, engine=engine, noise=noise,
                        observation=observation, prior=prior, simulation=simulation, text=text,
                        path=source)
    _check_geometry(reader, scenario)
    return scenario


def resolve_scenario_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Finds a scenario file: an existing path, or the name of a scenario in ``data/scenarios``.

    Raises:
        ConfigError: naming the scenario and the names available.
    """
    return resolve_scenario(os.fspath(name_or_path))


def list_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``data/scenarios``."""
    return scenario_names()


def load_scenario(name_or_path: str | os.PathLike[str]) -> Scenario:
    """Reads and validates a scenario by name (``swellex96``) or path.

    Raises:
        ConfigError: one line naming the file, the key and the problem.
    """
    if isinstance(name_or_path, Scenario):
        return name_or_path
    path = resolve_scenario_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    return scenario_from_text(text, source=str(path), default_name=path.stem)


def replace_simulation(scenario: Scenario, **changes: Any) -> Scenario:
    """A copy of the scenario with some :class:`SimulationConfig` fields changed."""
    return dataclasses.replace(scenario, simulation=dataclasses.replace(scenario.simulation, **changes))
