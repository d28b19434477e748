"""Tests of acoustic_inv.priors: the three distributions, the product prior and bad tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from acoustic_inv.errors import ConfigError
from acoustic_inv.priors import Distribution, ParameterPrior, Prior

UNIFORM = Distribution("uniform", 500.0, 10000.0)
LOG_UNIFORM = Distribution("log_uniform", 0.01, 1.0)
TRUNC = Distribution("truncated_normal", 1600.0, 1800.0, mean=1700.0, std=50.0)
UPPER_TAIL = Distribution("truncated_normal", 10.0, 12.0, mean=0.0, std=1.0)
ALL = [UNIFORM, LOG_UNIFORM, TRUNC, UPPER_TAIL]


@pytest.mark.parametrize("dist", ALL, ids=lambda d: d.kind)
def test_ppf_and_cdf_are_inverse_and_stay_in_bounds(dist: Distribution) -> None:
    u = np.linspace(0.0, 1.0, 101)
    values = dist.ppf(u)
    assert np.all(values >= dist.low) and np.all(values <= dist.high)
    assert np.all(np.diff(values) > 0)
    np.testing.assert_allclose(dist.cdf(values), u, atol=1e-9)
    assert dist.ppf(0.0) == pytest.approx(dist.low) and dist.ppf(1.0) == pytest.approx(dist.high)


@pytest.mark.parametrize("dist", ALL, ids=lambda d: d.kind)
def test_density_integrates_to_one_and_is_zero_outside(dist: Distribution) -> None:
    total, _ = integrate.quad(lambda v: math.exp(dist.log_prob(v)), dist.low, dist.high, limit=200)
    assert total == pytest.approx(1.0, rel=1e-6)
    assert dist.log_prob(dist.low - 1e-9) == -np.inf
    assert dist.log_prob(dist.high + 1e-9) == -np.inf


def test_truncated_normal_matches_scipy() -> None:
    a, b = (TRUNC.low - TRUNC.mean) / TRUNC.std, (TRUNC.high - TRUNC.mean) / TRUNC.std
    reference = stats.truncnorm(a, b, loc=TRUNC.mean, scale=TRUNC.std)
    v = np.linspace(1600.0, 1800.0, 17)
    np.testing.assert_allclose(TRUNC.cdf(v), reference.cdf(v), atol=1e-12)
    np.testing.assert_allclose(TRUNC.log_prob(v), reference.logpdf(v), atol=1e-10)
    u = np.linspace(0.01, 0.99, 9)
    np.testing.assert_allclose(UPPER_TAIL.ppf(u), stats.truncnorm(10.0, 12.0).ppf(u), rtol=1e-9)


def test_log_uniform_samples_are_uniform_in_the_logarithm() -> None:
    rng = np.random.default_rng(1)
    samples = LOG_UNIFORM.sample(rng, 4000)
    logs = (np.log(samples) - math.log(0.01)) / (math.log(1.0) - math.log(0.01))
    assert stats.kstest(logs, "uniform").pvalue > 0.01
    # Half the mass lies below the geometric mean, 0.1.
    assert np.mean(samples < 0.1) == pytest.approx(0.5, abs=0.03)


def _prior(*dists: Distribution) -> Prior:
    return Prior(tuple(ParameterPrior(f"p{i}", "1", f"p{i}", d) for i, d in enumerate(dists)))


def test_prior_uses_one_uniform_per_parameter() -> None:
    # Changing one parameter's distribution never shifts the values drawn for the others.
    a = _prior(UNIFORM, LOG_UNIFORM, TRUNC).sample(np.random.default_rng(5), 10)
    b = _prior(UNIFORM, Distribution("uniform", 0.0, 1.0), TRUNC).sample(np.random.default_rng(5), 10)
    np.testing.assert_array_equal(a[:, 0], b[:, 0])
    np.testing.assert_array_equal(a[:, 2], b[:, 2])
    assert not np.allclose(a[:, 1], b[:, 1])


def test_prior_sample_log_prob_and_cdf() -> None:
    prior = _prior(UNIFORM, LOG_UNIFORM, TRUNC)
    theta = prior.sample(np.random.default_rng(0), 500)
    assert theta.shape == (500, 3)
    assert np.all(theta >= prior.low) and np.all(theta <= prior.high)
    expected = UNIFORM.log_prob(theta[:, 0]) + LOG_UNIFORM.log_prob(theta[:, 1]) + TRUNC.log_prob(theta[:, 2])
    np.testing.assert_allclose(prior.log_prob(theta), expected)
    np.testing.assert_allclose(prior.ppf(prior.cdf(theta)), theta, rtol=1e-10)
    outside = theta[0].copy()
    outside[1] = 2.0
    assert prior.log_prob(outside) == -np.inf
    assert prior.sample(np.random.default_rng(0)).shape == (3,)


def test_prior_records_and_subset() -> None:
    prior = _prior(UNIFORM, TRUNC)
    records = prior.to_records()
    assert records[1] == {"name": "p1", "units": "1", "long_name": "p1", "low": 1600.0, "high": 1800.0,
                          "distribution": "truncated_normal", "mean": 1700.0, "std": 50.0}
    assert prior.subset(["p1"]).names == ("p1",)
    with pytest.raises(ConfigError, match="no parameter 'p9'"):
        prior.index("p9")


@pytest.mark.parametrize("table, message", [
    ({"distribution": "uniform", "low": 5.0, "high": 2.0}, r"prior\.x: low = 5 is not below high = 2"),
    ({"distribution": "uniform", "low": 1.0}, r"missing key 'prior\.x\.high'"),
    ({"distribution": "uniform", "low": 1.0, "hihg": 2.0}, r"unknown key 'prior\.x\.hihg'"),
    ({"distribution": "gaussian", "low": 1.0, "high": 2.0}, r"prior\.x\.distribution = 'gaussian'"),
    ({"distribution": "log_uniform", "low": 0.0, "high": 2.0}, r"positive bound"),
    ({"distribution": "truncated_normal", "low": 0.0, "high": 2.0, "mean": 1.0, "std": -1.0}, r"std = -1"),
    ({"distribution": "uniform", "low": "a", "high": 2.0}, r"prior\.x\.low = 'a': expected a number"),
    ({"distribution": "uniform", "low": True, "high": 2.0}, r"prior\.x\.low = True"),
    (3.0, r"prior\.x must be a table"),
])
def test_bad_tables_name_the_key(table, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Distribution.from_dict(table, "prior.x")


def test_round_trip_through_dict() -> None:
    for dist in ALL:
        assert Distribution.from_dict(dist.to_dict(), "d") == dist
    assert UNIFORM.describe() == "uniform [500, 10000]"
    assert "mean 1700, std 50" in TRUNC.describe()


def test_duplicate_parameter_is_an_error() -> None:
    p = ParameterPrior("a", "m", "a", UNIFORM)
    with pytest.raises(ConfigError, match="more than once"):
        Prior((p, p))
