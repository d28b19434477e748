"""Tests of acoustic_inv.likelihood: the exact density of the unit_pressure features.

The central check draws noisy pressure with the generator's own noise (observation.add_noise) and
compares the distribution of the normalised Bartlett power with the one the formula implies (KS test),
and shows the same test rejects a wrong SNR or a wrong receiver count.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special, stats

from acoustic_inv.errors import ConfigError, DataError
from acoustic_inv.likelihood import (
    bartlett_power,
    log_laguerre_neg,
    log_likelihood,
    log_likelihood_c2,
    log_likelihood_given_snr,
    snr_quadrature,
    unit_vectors_from_features,
)
from acoustic_inv.observation import ObservationModel, add_noise
from acoustic_inv.priors import Distribution

MODEL = ObservationModel(freqs_hz=(50.0, 70.0, 90.0), receiver_depths_m=(10.0, 20.0, 30.0, 40.0, 50.0),
                         reference_receiver=2)


def _random_pressure(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _c2_cdf(n_receiver: int, snr_db: float):
    """CDF of c^2 implied by the formula: Beta(1, N-1) density times the likelihood ratio."""
    v = np.concatenate([[0.0], np.geomspace(1e-12, 1.0, 40001)])  # v = 1 - c^2
    density = (n_receiver - 1) * v ** (n_receiver - 2) * np.exp(log_likelihood_c2(1.0 - v, n_receiver, snr_db))
    below = integrate.cumulative_trapezoid(density, v, initial=0.0)  # P(1 - c^2 <= v)
    return lambda t: 1.0 - np.interp(1.0 - np.asarray(t), v, below)


@pytest.mark.parametrize("snr_db", [-3.0, 12.0])
def test_bartlett_power_of_generated_noise_follows_the_formula(snr_db: float) -> None:
    rng = np.random.default_rng(11)
    n_receiver = 5
    g = _random_pressure(rng, (1, n_receiver)) * 1e-3  # any level: the noise follows the signal
    noisy = np.stack([add_noise(g, snr_db, rng) for _ in range(2000)])
    c2 = bartlett_power(noisy, g)[:, 0]
    assert stats.kstest(c2, _c2_cdf(n_receiver, snr_db)).pvalue > 0.01
    # the same test rejects an SNR 1 dB off and a wrong receiver count
    assert stats.kstest(c2, _c2_cdf(n_receiver, snr_db - 1.0)).pvalue < 1e-4
    assert stats.kstest(c2, _c2_cdf(n_receiver, snr_db + 1.0)).pvalue < 1e-4
    assert stats.kstest(c2, _c2_cdf(n_receiver - 1, snr_db)).pvalue < 1e-4


@pytest.mark.parametrize("n_receiver", [2, 5, 21])
@pytest.mark.parametrize("snr_db", [-10.0, 10.0, 30.0])
def test_density_is_normalised_against_the_uniform_measure(n_receiver: int, snr_db: float) -> None:
    # under the uniform measure on CP^{N-1}, c^2 ~ Beta(1, N-1): the density must integrate to 1
    def integrand(t: float) -> float:
        return float(stats.beta(1, n_receiver - 1).pdf(t) * np.exp(log_likelihood_c2(t, n_receiver, snr_db)))

    ns = n_receiver * 10 ** (snr_db / 10)
    total, _ = integrate.quad(integrand, 0.0, 1.0, points=[max(0.0, 1.0 - 1.0 / ns)], limit=500)
    assert total == pytest.approx(1.0, rel=1e-6)


def test_log_laguerre_matches_scipy_and_both_branches() -> None:
    x = np.array([0.0, 1e-3, 0.7, 12.0, 3e3])
    for n in (0, 1, 4, 20):
        np.testing.assert_allclose(log_laguerre_neg(n, x), np.log(special.eval_laguerre(n, -x)), rtol=1e-12,
                                   atol=1e-14)
    # degree 60 at 1e5 is past the Horner limit: the log-sum-exp branch, against scipy's recurrence
    big = np.array([2e4, 1e5])
    np.testing.assert_allclose(log_laguerre_neg(60, big), np.log(special.eval_laguerre(60, -big)), rtol=1e-10)
    # and the same values reached from the Horner side agree with the log-sum-exp side
    np.testing.assert_allclose(log_laguerre_neg(60, big[:1]), log_laguerre_neg(60, big)[:1], rtol=1e-12)


def test_likelihood_is_invariant_to_complex_scaling_of_each_tone() -> None:
    rng = np.random.default_rng(2)
    g = _random_pressure(rng, (4, 3, 5))  # a batch of 4 candidate fields
    d = add_noise(g[1], 8.0, rng)
    scales = np.array([3e-4 * np.exp(1j), -2.0, 5j])[:, None]
    base = log_likelihood_given_snr(d, g, 8.0)
    np.testing.assert_allclose(log_likelihood_given_snr(d * scales, g, 8.0), base, rtol=1e-12)
    np.testing.assert_allclose(log_likelihood_given_snr(d, g * scales, 8.0), base, rtol=1e-12)
    assert base.shape == (4,)
    assert np.argmax(base) == 1  # the field the noisy data came from is the likeliest here
    # a batch of SNRs broadcasts against the batch of fields
    assert log_likelihood_given_snr(d, g[:, None], np.array([0.0, 10.0])).shape == (4, 2)


def test_unit_vectors_round_trip_through_features() -> None:
    rng = np.random.default_rng(3)
    pressure = _random_pressure(rng, (6, MODEL.n_freq, MODEL.n_receiver)) * 1e-4
    x = MODEL.features_from_pressure(pressure)
    u = unit_vectors_from_features(MODEL, x)
    assert u.shape == pressure.shape
    np.testing.assert_allclose(np.linalg.norm(u, axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(bartlett_power(u, pressure), 1.0, rtol=1e-12)  # same direction
    np.testing.assert_allclose(MODEL.features_from_pressure(u), x, atol=1e-14)
    np.testing.assert_allclose(u[..., MODEL.reference_receiver].imag, 0.0)
    # float32 features (as datasets store them) still give unit vectors
    u32 = unit_vectors_from_features(MODEL, x.astype(np.float32))
    np.testing.assert_allclose(np.linalg.norm(u32, axis=-1), 1.0, rtol=1e-12)
    with pytest.raises(DataError, match="n_features"):
        unit_vectors_from_features(MODEL, x[..., :-1])


def test_other_features_are_refused_by_name() -> None:
    for kind in ("csdm", "pressure"):
        model = ObservationModel(freqs_hz=(50.0,), receiver_depths_m=(1.0, 2.0), features=kind)
        with pytest.raises(ConfigError, match=kind):
            unit_vectors_from_features(model, np.zeros(model.n_features))


@pytest.mark.parametrize("distribution, n_freq, n_receiver, mix", [
    (Distribution("uniform", 5.0, 25.0), 3, 5, (0.0, 0.3, 1.0)),
    (Distribution("truncated_normal", 0.0, 20.0, mean=12.0, std=3.0), 3, 5, (0.0, 0.3, 1.0)),
    # many tones and receivers at high SNR (the sum-of-logs branch: the product would overflow), at
    # fields whose likelihood is within 200 nats of the truth's. (Far worse fields, whose SNR
    # integrand collapses onto a bound of the SNR range, come out too low: they carry no mass.)
    (Distribution("uniform", 20.0, 40.0), 8, 21, (0.0, 0.01, 0.03, 0.05)),
])
def test_snr_marginal_matches_brute_force_integration(distribution: Distribution, n_freq: int,
                                                      n_receiver: int, mix: tuple[float, ...]) -> None:
    rng = np.random.default_rng(4)
    g = _random_pressure(rng, (2, n_freq, n_receiver))
    d = add_noise(g[0], 0.5 * (distribution.low + distribution.high), rng)
    for weight in mix:  # from the truth (sharp in SNR) away from it
        field = g[0] + weight * g[1]
        marginal = log_likelihood(d, field, distribution)
        grid = np.linspace(distribution.low, distribution.high, 401)
        offset = float(np.max(log_likelihood_given_snr(d, field, grid)))  # keeps the integrand near 1

        def integrand(snr_db: float) -> float:
            return float(np.exp(log_likelihood_given_snr(d, field, snr_db) - offset)
                         * np.exp(distribution.log_prob(snr_db)))

        value, _ = integrate.quad(integrand, distribution.low, distribution.high, limit=400, epsabs=0.0,
                                  epsrel=1e-10)
        assert marginal == pytest.approx(np.log(value) + offset, abs=1e-7)


def test_quadrature_rule() -> None:
    rule = snr_quadrature(Distribution("uniform", 5.0, 25.0), 200)
    assert len(rule.snr_db) == 200
    assert np.all((rule.snr_db > 5.0) & (rule.snr_db < 25.0))
    assert special.logsumexp(rule.log_weight) == pytest.approx(0.0, abs=1e-12)
    assert np.sum(np.exp(rule.log_weight) * rule.snr_db) == pytest.approx(15.0, rel=1e-12)
    with pytest.raises(ConfigError, match="n_nodes"):
        snr_quadrature(Distribution("uniform", 5.0, 25.0), 3)
    with pytest.raises(ConfigError, match="noise.model"):
        log_likelihood(np.ones((1, 2)), np.ones((1, 2)), None)
