"""Prior distributions of the inversion parameters.

Three bounded distributions cover the scenarios: ``uniform``, ``log_uniform`` (uniform in the logarithm;
for scale parameters such as attenuation) and ``truncated_normal`` (a normal of ``mean`` and ``std``
cut to ``[low, high]``). Every distribution is sampled through its inverse CDF from one uniform number,
so a parameter consumes exactly one draw of the random stream whatever its distribution: changing one
parameter's distribution never shifts the values drawn for the others.

The same :class:`Distribution` describes the per-sample SNR of a scenario's noise model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import special

from acoustic_inv.errors import ConfigError

DISTRIBUTIONS: tuple[str, ...] = ("uniform", "log_uniform", "truncated_normal")

_KEYS: dict[str, set[str]] = {
    "uniform": {"distribution", "low", "high"},
    "log_uniform": {"distribution", "low", "high"},
    "truncated_normal": {"distribution", "low", "high", "mean", "std"},
}


def _number(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}.{name} = {value!r}: expected a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{name} = {value!r}: expected a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}.{name} = {value!r}: expected a finite number")
    return number


def _ndtr(x: np.ndarray) -> np.ndarray:
    return special.ndtr(x)


@dataclass(frozen=True)
class Distribution:
    """A bounded one-dimensional distribution.

    Attributes:
        kind: One of :data:`DISTRIBUTIONS`.
        low: Lower bound, in the units of the quantity.
        high: Upper bound, same units; greater than ``low``.
        mean: Mean of the untruncated normal (``truncated_normal`` only).
        std: Standard deviation of the untruncated normal (``truncated_normal`` only), positive.
    """

    kind: str
    low: float
    high: float
    mean: float | None = None
    std: float | None = None

    def __post_init__(self) -> None:
        where = "Distribution"
        if self.kind not in DISTRIBUTIONS:
            raise ConfigError(f"{where}.kind = {self.kind!r}: expected one of {list(DISTRIBUTIONS)}")
        low = _number(where, "low", self.low)
        high = _number(where, "high", self.high)
        if not low < high:
            raise ConfigError(f"{where}: low = {low:g} is not below high = {high:g}")
        if self.kind == "log_uniform" and low <= 0.0:
            raise ConfigError(f"{where}.low = {low:g}: expected a positive bound for a log_uniform")
        if self.kind == "truncated_normal":
            if self.mean is None or self.std is None:
                raise ConfigError(f"{where}: a truncated_normal needs mean and std")
            mean = _number(where, "mean", self.mean)
            std = _number(where, "std", self.std)
            if std <= 0.0:
                raise ConfigError(f"{where}.std = {std:g}: expected a positive standard deviation")
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)
        elif self.mean is not None or self.std is not None:
            raise ConfigError(f"{where}: mean and std apply to truncated_normal only, not {self.kind}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def from_dict(cls, table: Any, where: str) -> "Distribution":
        """Builds a distribution from a TOML table such as ``{distribution = "uniform", low, high}``.

        Args:
            table: The parsed table.
            where: The table's dotted key (e.g. ``prior.source_range_m``), used in error messages.

        Raises:
            ConfigError: naming ``where`` and the offending key.
        """
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table such as {{distribution = \"uniform\", low = ..., "
                              f"high = ...}}, got {table!r}")
        kind = table.get("distribution", "uniform")
        if kind not in DISTRIBUTIONS:
            raise ConfigError(f"{where}.distribution = {kind!r}: expected one of {list(DISTRIBUTIONS)}")
        unknown = sorted(set(table) - _KEYS[kind])
        if unknown:
            raise ConfigError(f"unknown key '{where}.{unknown[0]}'; a {kind} takes {sorted(_KEYS[kind])}")
        for key in sorted(_KEYS[kind] - {"distribution"}):
            if key not in table:
                raise ConfigError(f"missing key '{where}.{key}' (a {kind} needs {sorted(_KEYS[kind] - {'distribution'})})")
        values = {key: _number(where, key, table[key]) for key in _KEYS[kind] - {"distribution"}}
        if not values["low"] < values["high"]:
            raise ConfigError(f"{where}: low = {values['low']:g} is not below high = {values['high']:g}")
        try:
            return cls(kind=kind, **values)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """The TOML/JSON form read by :meth:`from_dict`."""
        out: dict[str, Any] = {"distribution": self.kind, "low": self.low, "high": self.high}
        if self.kind == "truncated_normal":
            out.update(mean=self.mean, std=self.std)
        return out

    # The truncated normal in standard units: alpha, beta are the bounds' z-scores.
    def _z_bounds(self) -> tuple[float, float]:
        assert self.mean is not None and self.std is not None
        return (self.low - self.mean) / self.std, (self.high - self.mean) / self.std

    def ppf(self, u: np.ndarray | float) -> np.ndarray:
        """Inverse CDF: maps uniform numbers in [0, 1], any shape, to values of the distribution."""
        u = np.asarray(u, dtype=float)
        if self.kind == "uniform":
            return self.low + u * (self.high - self.low)
        if self.kind == "log_uniform":
            log_low, log_high = math.log(self.low), math.log(self.high)
            return np.exp(log_low + u * (log_high - log_low))
        alpha, beta = self._z_bounds()
        if alpha > 0.0:
            # Both bounds in the upper tail: invert the survival function, where ndtr keeps precision.
            sf_a, sf_b = _ndtr(np.float64(-alpha)), _ndtr(np.float64(-beta))
            z = -special.ndtri(sf_a - u * (sf_a - sf_b))
        else:
            cdf_a, cdf_b = _ndtr(np.float64(alpha)), _ndtr(np.float64(beta))
            z = special.ndtri(cdf_a + u * (cdf_b - cdf_a))
        return np.clip(self.mean + self.std * z, self.low, self.high)

    def cdf(self, value: np.ndarray | float) -> np.ndarray:
        """CDF: maps values, any shape, to [0, 1] (0 below ``low``, 1 above ``high``)."""
        value = np.asarray(value, dtype=float)
        if self.kind == "uniform":
            u = (value - self.low) / (self.high - self.low)
        elif self.kind == "log_uniform":
            with np.errstate(divide="ignore", invalid="ignore"):
                u = (np.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        else:
            alpha, beta = self._z_bounds()
            z = (value - self.mean) / self.std
            if alpha > 0.0:
                sf_a, sf_b = _ndtr(np.float64(-alpha)), _ndtr(np.float64(-beta))
                u = (sf_a - _ndtr(-z)) / (sf_a - sf_b)
            else:
                cdf_a, cdf_b = _ndtr(np.float64(alpha)), _ndtr(np.float64(beta))
                u = (_ndtr(z) - cdf_a) / (cdf_b - cdf_a)
        return np.clip(np.nan_to_num(u, nan=0.0), 0.0, 1.0)

    def log_prob(self, value: np.ndarray | float) -> np.ndarray:
        """Log density at ``value`` (any shape); ``-inf`` outside ``[low, high]``."""
        value = np.asarray(value, dtype=float)
        inside = (value >= self.low) & (value <= self.high)
        if self.kind == "uniform":
            density = np.full(value.shape, -math.log(self.high - self.low))
        elif self.kind == "log_uniform":
            with np.errstate(divide="ignore", invalid="ignore"):
                density = -np.log(value) - math.log(math.log(self.high) - math.log(self.low))
        else:
            alpha, beta = self._z_bounds()
            if alpha > 0.0:
                mass = _ndtr(np.float64(-alpha)) - _ndtr(np.float64(-beta))
            else:
                mass = _ndtr(np.float64(beta)) - _ndtr(np.float64(alpha))
            z = (value - self.mean) / self.std
            density = -0.5 * z**2 - 0.5 * math.log(2.0 * math.pi) - math.log(self.std) - math.log(mass)
        return np.where(inside, density, -np.inf)

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...] | None = None) -> np.ndarray:
        """Draws values; each value consumes one ``rng.random()`` number."""
        return self.ppf(rng.random(size))

    def describe(self) -> str:
        """A short human-readable form, e.g. ``uniform [500, 1e+04]``."""
        text = f"{self.kind} [{self.low:g}, {self.high:g}]"
        if self.kind == "truncated_normal":
            text += f" (mean {self.mean:g}, std {self.std:g})"
        return text


@dataclass(frozen=True)
class ParameterPrior:
    """The prior of one named parameter.

    Attributes:
        name: Parameter name, carrying its unit (``source_range_m``); see
            :data:`acoustic_inv.scenario.PARAMETERS`.
        units: Units of the values (``m``, ``m/s``, ...).
        long_name: Human-readable name for plots and netCDF attributes.
        distribution: The distribution of the values.
    """

    name: str
    units: str
    long_name: str
    distribution: Distribution

    @property
    def low(self) -> float:
        """Lower bound, in :attr:`units`."""
        return self.distribution.low

    @property
    def high(self) -> float:
        """Upper bound, in :attr:`units`."""
        return self.distribution.high


@dataclass(frozen=True)
class Prior:
    """An independent (product) prior over named parameters, in a fixed order.

    Attributes:
        params: The parameters' priors, in the order of the columns of ``theta``.
    """

    params: tuple[ParameterPrior, ...]

    def __post_init__(self) -> None:
        params = tuple(self.params)
        if not params:
            raise ConfigError("Prior.params: expected at least one parameter")
        names = [p.name for p in params]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"Prior.params: parameter {duplicates[0]!r} appears more than once")
        object.__setattr__(self, "params", params)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names, in column order."""
        return tuple(p.name for p in self.params)

    @property
    def units(self) -> tuple[str, ...]:
        """Parameter units, in column order."""
        return tuple(p.units for p in self.params)

    @property
    def low(self) -> np.ndarray:
        """Lower bounds, shape (d,), in each parameter's units."""
        return np.array([p.low for p in self.params])

    @property
    def high(self) -> np.ndarray:
        """Upper bounds, shape (d,), in each parameter's units."""
        return np.array([p.high for p in self.params])

    def index(self, name: str) -> int:
        """Column of the parameter ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ConfigError(f"no parameter {name!r}; the prior has {list(self.names)}") from None

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Maps uniform numbers, shape (..., d), to parameters, shape (..., d)."""
        u = np.asarray(u, dtype=float)
        return np.stack([p.distribution.ppf(u[..., i]) for i, p in enumerate(self.params)], axis=-1)

    def cdf(self, theta: np.ndarray) -> np.ndarray:
        """Maps parameters, shape (..., d), to [0, 1]^d (the inverse of :meth:`ppf`)."""
        theta = np.asarray(theta, dtype=float)
        return np.stack([p.distribution.cdf(theta[..., i]) for i, p in enumerate(self.params)], axis=-1)

    def sample(self, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
        """Draws parameters: shape (d,) when ``n`` is None, else (n, d); one uniform per value.

        The uniforms are drawn in row-major order (sample, then parameter), so a sample's values do not
        depend on how many samples are drawn after it.
        """
        shape = (len(self),) if n is None else (n, len(self))
        return self.ppf(rng.random(shape))

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        """Log density of parameters, shape (..., d) -> (...); ``-inf`` outside the bounds."""
        theta = np.asarray(theta, dtype=float)
        return np.sum([p.distribution.log_prob(theta[..., i]) for i, p in enumerate(self.params)], axis=0)

    def subset(self, names: Sequence[str]) -> "Prior":
        """The prior of some of the parameters, in the order given."""
        return Prior(tuple(self.params[self.index(n)] for n in names))

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per parameter: name, units, long_name, low, high and the distribution."""
        return [{"name": p.name, "units": p.units, "long_name": p.long_name, "low": p.low, "high": p.high,
                 **p.distribution.to_dict()} for p in self.params]
