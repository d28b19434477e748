"""Reading environments from TOML files.

Schema (every table and key is checked; an unknown key is an error naming the file and the key)::

    [environment]
    name = "SWellEx-96"            # optional title
    water_depth_m = 216.5
    water_density_g_cm3 = 1.0      # optional
    [environment.ssp]              # water sound-speed profile, linear between points
    depth_m = [0.0, ...]           # first point at the surface
    speed_mps = [1521.9, ...]      # held constant below the last point
    [[environment.layers]]         # zero or more fluid layers, from the sea floor down
    thickness_m = 23.5
    sound_speed_top_mps = 1572.4
    sound_speed_bottom_mps = 1593.0
    density_g_cm3 = 1.76
    attenuation_db_per_m_khz = 0.2
    [environment.halfspace]
    sound_speed_mps = 5200.0
    density_g_cm3 = 2.66
    attenuation_db_per_m_khz = 0.02

A scenario file (see :mod:`acoustic_inv.scenario`) carries the same ``[environment]`` table beside its
other tables; this module reads only that table.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Mapping

from propagation.environment import Environment, FluidLayer, HalfSpace, SoundSpeedProfile
from propagation.errors import InvalidEnvironmentError


def _keys(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _build(cls: type, table: Any, where: str, source: str, skip: set[str] = frozenset()) -> Any:
    if not isinstance(table, Mapping):
        raise InvalidEnvironmentError(f"{source}: [{where}] must be a table, got {table!r}")
    allowed = _keys(cls) - set(skip)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InvalidEnvironmentError(
            f"{source}: unknown key '{where}.{unknown[0]}'; expected one of {sorted(allowed)}")
    missing = sorted(
        f.name for f in dataclasses.fields(cls)
        if f.name in allowed and f.default is dataclasses.MISSING and f.name not in table
    )
    if missing:
        raise InvalidEnvironmentError(f"{source}: missing key '{where}.{missing[0]}'")
    try:
        return cls(**{k: v for k, v in table.items() if k not in skip})
    except InvalidEnvironmentError as error:
        raise InvalidEnvironmentError(f"{source}: [{where}] {error}") from None


def environment_from_dict(table: Mapping[str, Any], source: str = "<environment>") -> Environment:
    """Builds an :class:`Environment` from the ``[environment]`` table of a TOML document.

    Args:
        table: The parsed ``[environment]`` table.
        source: Where the table came from (a file name), used in error messages.

    Raises:
        InvalidEnvironmentError: naming the file, the key and the problem.
    """
    if not isinstance(table, Mapping):
        raise InvalidEnvironmentError(f"{source}: [environment] must be a table")
    allowed = _keys(Environment)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InvalidEnvironmentError(
            f"{source}: unknown key 'environment.{unknown[0]}'; expected one of {sorted(allowed)}")
    for key in ("water_depth_m", "ssp", "halfspace"):
        if key not in table:
            raise InvalidEnvironmentError(f"{source}: missing key 'environment.{key}'")
    ssp = _build(SoundSpeedProfile, table["ssp"], "environment.ssp", source)
    halfspace = _build(HalfSpace, table["halfspace"], "environment.halfspace", source)
    layers_table = table.get("layers", [])
    if not isinstance(layers_table, list):
        raise InvalidEnvironmentError(f"{source}: environment.layers must be an array of tables")
    layers = tuple(_build(FluidLayer, t, f"environment.layers[{i}]", source)
                   for i, t in enumerate(layers_table))
    rest = {k: v for k, v in table.items() if k not in ("ssp", "halfspace", "layers")}
    try:
        return Environment(ssp=ssp, halfspace=halfspace, layers=layers, **rest)
    except InvalidEnvironmentError as error:
        raise InvalidEnvironmentError(f"{source}: [environment] {error}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parses a TOML file; a syntax error names the file and line."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise InvalidEnvironmentError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidEnvironmentError(f"{path}: not valid TOML: {error}") from None


def load_environment(path: str | Path) -> Environment:
    """Reads the ``[environment]`` table of a TOML environment or scenario file."""
    document = read_toml(path)
    if "environment" not in document:
        raise InvalidEnvironmentError(f"{path}: no [environment] table")
    return environment_from_dict(document["environment"], source=str(path))
