"""Tests of acoustic_inv.diagnostics (and of the sbibm task simulators of benchmarks/_tasks.py)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from acoustic_inv import diagnostics as dg

# A conjugate Gaussian model with a closed-form posterior: theta ~ N(0, 1), x ~ N(theta, NOISE^2).
NOISE = 0.5
POST_VAR = NOISE**2 / (1.0 + NOISE**2)


def _gaussian_problem(
    n_obs: int, n_draws: int, d: int, *, scale: float = 1.0, bias: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Truths (n_obs, d) and draws (n_obs, n_draws, d) of the exact posterior, or of a posterior
    whose standard deviation is multiplied by ``scale`` and whose mean is shifted by ``bias``
    posterior standard deviations."""
    theta, draws, _ = _gaussian_problem_with_mean(n_obs, n_draws, d, scale=scale, bias=bias, seed=seed)
    return theta, draws


def _gaussian_problem_with_mean(
    n_obs: int, n_draws: int, d: int, *, scale: float = 1.0, bias: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`_gaussian_problem`, plus the exact posterior means (n_obs, d)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n_obs, d))
    x = theta + NOISE * rng.normal(size=(n_obs, d))
    exact_mean = x / (1.0 + NOISE**2)
    mean = exact_mean + bias * math.sqrt(POST_VAR)
    draws = mean[:, None, :] + scale * math.sqrt(POST_VAR) * rng.normal(size=(n_obs, n_draws, d))
    return theta, draws, exact_mean


# --- c2st ---------------------------------------------------------------------------------------


def test_c2st_same_distribution_is_chance() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 2))
    b = rng.normal(size=(500, 2))
    score = dg.c2st(a, b, seed=0)
    # Held-out accuracy on 1000 points has a standard error of about 0.016.
    assert abs(score - 0.5) < 0.06


@pytest.mark.parametrize("early_stopping", [True, False])
def test_c2st_separated_distributions_is_one(early_stopping: bool) -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(500, 2))
    b = rng.normal(size=(500, 2)) + np.array([8.0, 0.0])
    assert dg.c2st(a, b, seed=0, early_stopping=early_stopping) > 0.99


def test_c2st_matches_bayes_accuracy_for_a_small_shift() -> None:
    # Two unit Gaussians 1 apart: the best classifier reaches Phi(0.5) = 0.691.
    rng = np.random.default_rng(3)
    a = rng.normal(size=(1000, 2))
    b = rng.normal(size=(1000, 2)) + np.array([1.0, 0.0])
    assert dg.c2st(a, b, seed=0) == pytest.approx(0.691, abs=0.04)


def test_c2st_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=(200, 3))
    b = rng.normal(size=(200, 3)) * 1.5
    assert dg.c2st(a, b, seed=7, max_epochs=20) == dg.c2st(a, b, seed=7, max_epochs=20)


def test_c2st_sklearn_backend_agrees() -> None:
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(5)
    a = rng.normal(size=(500, 2))
    b = rng.normal(size=(500, 2)) + np.array([8.0, 0.0])
    c = rng.normal(size=(500, 2))
    assert dg.c2st(a, b, classifier="sklearn") > 0.99
    assert abs(dg.c2st(a, c, classifier="sklearn") - 0.5) < 0.06


def test_c2st_rejects_mismatched_dimensions() -> None:
    with pytest.raises(ValueError, match="same dimension"):
        dg.c2st(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="classifier"):
        dg.c2st(np.zeros((10, 2)), np.ones((10, 2)), classifier="svm")  # type: ignore[arg-type]


# --- coverage -----------------------------------------------------------------------------------

LEVELS = np.array([0.5, 0.8, 0.95])


# The shortest window of a few hundred draws is biased narrow (it is selected for narrowness), so
# that kind gets more draws.
@pytest.mark.parametrize(("kind", "n_draws"), [("central", 400), ("shortest", 2000)])
def test_expected_coverage_of_exact_posterior_is_nominal(kind: str, n_draws: int) -> None:
    n_obs = 2000
    theta, draws = _gaussian_problem(n_obs, n_draws, 2, seed=10)
    coverage = dg.expected_coverage(draws, theta, LEVELS, kind=kind)  # type: ignore[arg-type]
    assert coverage.shape == (3, 2)
    tolerance = 4.0 * np.sqrt(LEVELS * (1 - LEVELS) / n_obs)[:, None] + 0.01
    assert np.all(np.abs(coverage - LEVELS[:, None]) < tolerance)


def test_expected_coverage_flags_overconfidence() -> None:
    theta, draws = _gaussian_problem(1000, 400, 2, scale=0.5, seed=11)
    coverage = dg.expected_coverage(draws, theta, LEVELS)
    # Intervals half as wide as they should be: 80% nominal covers P(|Z| < 0.64) = 0.48.
    assert np.all(coverage[1] < 0.6)


def test_hpd_coverage_of_exact_gaussian_is_nominal() -> None:
    n_obs = 2000
    theta, draws, mean = _gaussian_problem_with_mean(n_obs, 400, 2, seed=12)
    log_prob_draws = -0.5 * np.sum((draws - mean[:, None, :]) ** 2, axis=-1) / POST_VAR
    log_prob_truth = -0.5 * np.sum((theta - mean) ** 2, axis=-1) / POST_VAR
    coverage = dg.hpd_coverage(log_prob_draws, log_prob_truth, LEVELS)
    tolerance = 4.0 * np.sqrt(LEVELS * (1 - LEVELS) / n_obs) + 0.01
    assert np.all(np.abs(coverage - LEVELS) < tolerance)


def test_coverage_rejects_bad_levels_and_shapes() -> None:
    theta, draws = _gaussian_problem(10, 20, 2)
    with pytest.raises(ValueError, match="levels"):
        dg.expected_coverage(draws, theta, [0.5, 1.0])
    with pytest.raises(ValueError, match="truths"):
        dg.expected_coverage(draws, theta[:, :1], [0.5])


# --- SBC ----------------------------------------------------------------------------------------


def test_sbc_ranks_uniform_for_exact_sampler() -> None:
    theta, draws = _gaussian_problem(1000, 99, 3, seed=20)
    ranks = dg.sbc_ranks(draws, theta)
    assert ranks.shape == (1000, 3)
    assert ranks.min() >= 0 and ranks.max() <= 99
    test = dg.sbc_uniformity(ranks, n_draws=99)
    assert test.n_bins == 20 and test.dof == 19
    assert np.all(test.p_value > 0.001)


def test_sbc_ranks_non_uniform_for_overconfident_sampler() -> None:
    theta, draws = _gaussian_problem(1000, 99, 3, scale=0.5, seed=21)
    test = dg.sbc_uniformity(dg.sbc_ranks(draws, theta), n_draws=99)
    assert np.all(test.p_value < 1e-6)


def test_sbc_uniformity_handles_unequal_bins() -> None:
    # 11 rank values in 4 bins: every value once gives a perfect fit (chi2 = 0).
    ranks = np.arange(11)[:, None].repeat(2, axis=1)
    test = dg.sbc_uniformity(ranks, n_draws=10, n_bins=4)
    assert test.expected.sum() == pytest.approx(11)
    np.testing.assert_allclose(test.chi2, 0.0, atol=1e-12)


def test_sbc_ties_are_broken_uniformly() -> None:
    # All draws equal the truth: ranks must spread over 0..n_draws, not pile at 0.
    draws = np.zeros((2000, 9, 1))
    ranks = dg.sbc_ranks(draws, np.zeros((2000, 1)), seed=3)
    assert dg.sbc_uniformity(ranks, n_draws=9, n_bins=10).p_value[0] > 0.001


# --- TARP ---------------------------------------------------------------------------------------


def test_tarp_exact_posterior_follows_diagonal() -> None:
    theta, draws = _gaussian_problem(1000, 200, 3, seed=30)
    result = dg.tarp(draws, theta)
    assert result.alpha[0] == 0.0 and result.alpha[-1] == 1.0
    assert result.ecp.shape == result.alpha.shape
    assert abs(result.atc) < 0.02
    assert result.area < 0.03
    assert result.ks_p_value > 0.001


def test_tarp_flags_overconfident_and_underconfident_posteriors() -> None:
    theta, narrow = _gaussian_problem(1000, 200, 3, scale=0.5, seed=31)
    _, wide = _gaussian_problem(1000, 200, 3, scale=2.0, seed=31)
    too_narrow = dg.tarp(narrow, theta)
    too_wide = dg.tarp(wide, theta)
    assert too_narrow.atc < -0.03 and too_narrow.ks_p_value < 1e-6
    assert too_wide.atc > 0.03 and too_wide.ks_p_value < 1e-6


def test_tarp_flags_biased_posterior() -> None:
    theta, draws = _gaussian_problem(1000, 200, 3, bias=1.5, seed=32)
    assert dg.tarp(draws, theta).ks_p_value < 1e-6


# --- z-scores, contraction ------------------------------------------------------------------------


def test_z_scores_and_contraction_of_exact_posterior() -> None:
    theta, draws = _gaussian_problem(2000, 200, 2, seed=40)
    z = dg.z_scores(draws, theta)
    assert z.shape == (2000, 2)
    assert np.all(np.abs(z.mean(axis=0)) < 0.1)
    np.testing.assert_allclose(z.var(axis=0), 1.0, atol=0.12)
    contraction = dg.posterior_contraction(draws, prior_variance=1.0)
    # 1 - POST_VAR / 1 = 1 / (1 + NOISE^2) = 0.8.
    np.testing.assert_allclose(contraction.mean(axis=0), 0.8, atol=0.01)


def test_posterior_contraction_rejects_non_positive_prior_variance() -> None:
    _, draws = _gaussian_problem(5, 10, 2)
    with pytest.raises(ValueError, match="prior_variance"):
        dg.posterior_contraction(draws, prior_variance=[1.0, 0.0])


# --- Wasserstein ----------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2])
def test_wasserstein_matches_sorted_coupling_in_one_dimension(p: int) -> None:
    pytest.importorskip("ot")
    rng = np.random.default_rng(50)
    a = rng.normal(size=(300, 1))
    b = rng.gamma(2.0, size=(300, 1))
    expected = np.mean(np.abs(np.sort(a[:, 0]) - np.sort(b[:, 0])) ** p) ** (1.0 / p)
    assert dg.wasserstein(a, b, p=p) == pytest.approx(expected, rel=1e-9)


def test_wasserstein_of_a_translation_is_its_length() -> None:
    pytest.importorskip("ot")
    rng = np.random.default_rng(51)
    a = rng.normal(size=(200, 3))
    shift = np.array([0.3, -0.4, 0.0])
    assert dg.wasserstein(a, a + shift, p=2) == pytest.approx(0.5, rel=1e-9)


def test_wasserstein_refuses_oversized_problems() -> None:
    with pytest.raises(ValueError, match="max_pairs"):
        dg.wasserstein(np.zeros((100, 1)), np.zeros((100, 1)), max_pairs=1000)


# --- sbibm task simulators (benchmarks/_tasks.py) -------------------------------------------------


@pytest.fixture(scope="module")
def tasks():
    """benchmarks/_tasks.py, imported by path (benchmarks/ is not a package)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "_tasks.py"
    spec = importlib.util.spec_from_file_location("_sbibm_tasks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "dim_theta", "dim_x"), [("two_moons", 2, 2), ("slcp", 5, 8), ("gaussian_linear", 10, 10)]
)
def test_task_prior_and_simulator_shapes(tasks, name: str, dim_theta: int, dim_x: int) -> None:
    task = tasks.TASKS[name]
    rng = np.random.default_rng(0)
    theta = task.sample_prior(500, rng)
    x = task.simulate(theta, rng)
    assert theta.shape == (500, dim_theta) and x.shape == (500, dim_x)
    assert np.all(np.isfinite(x))
    assert np.all(task.in_support(theta))
    with pytest.raises(ValueError, match="theta"):
        task.simulate(theta[:, :1], rng)


def test_task_priors_have_sbibm_bounds_and_variances(tasks) -> None:
    rng = np.random.default_rng(1)
    moons = tasks.TASKS["two_moons"].sample_prior(20000, rng)
    assert moons.min() >= -1.0 and moons.max() <= 1.0 and moons.min() < -0.99
    slcp = tasks.TASKS["slcp"].sample_prior(20000, rng)
    assert slcp.min() >= -3.0 and slcp.max() <= 3.0 and slcp.max() > 2.99
    linear = tasks.TASKS["gaussian_linear"].sample_prior(20000, rng)
    # Prior covariance 0.1 I (sbibm's "prior_scale" is a variance).
    np.testing.assert_allclose(linear.var(axis=0), 0.1, rtol=0.05)
    np.testing.assert_allclose(tasks.TASKS["slcp"].prior_variance(), 3.0)


# sbibm's observation 1 of each task with its true parameters (from the sbibm 1.1.0 files).
_MOONS_X1 = np.array([-0.6396706, 0.16234657])
_MOONS_THETA1 = np.array([-0.8176656, -0.5756806])
_SLCP_X1 = np.array([2.3718784, 0.49947417, 9.931435, 1.7136912, -10.436423, -1.9067793, -1.2343777, -0.09735])
_SLCP_THETA1 = np.array([-2.8581212, -0.44451332, 2.9473476, 1.2396116, 2.9712725])
_LINEAR_X1 = np.array(
    [1.0471346, 0.5566712, -0.23618454, 0.027879834, -1.0051446, -0.007930746, 0.06117077, -0.29286885,
     -0.38539964, 0.2449614]
)
_LINEAR_THETA1 = np.array(
    [0.27184236, 0.6762953, 0.17189318, -0.04218617, -0.82151634, 0.024290232, -0.24255924, -0.16438946,
     -0.13595216, 0.26958188]
)


def test_two_moons_explains_sbibm_observation(tasks) -> None:
    # The observation minus the theta-dependent shift must lie on the noisy half circle.
    t0 = (_MOONS_THETA1[0] + _MOONS_THETA1[1]) / math.sqrt(2.0)
    t1 = (_MOONS_THETA1[1] - _MOONS_THETA1[0]) / math.sqrt(2.0)
    u = _MOONS_X1[0] - 0.25 + abs(t0)
    v = _MOONS_X1[1] - t1
    assert u > 0.0 and abs(math.hypot(u, v) - 0.1) < 3 * 0.01
    # And the simulator, at that theta, puts its points on that circle.
    rng = np.random.default_rng(2)
    x = tasks.TASKS["two_moons"].simulate(np.tile(_MOONS_THETA1, (5000, 1)), rng)
    radius = np.hypot(x[:, 0] - 0.25 + abs(t0), x[:, 1] - t1)
    assert radius.mean() == pytest.approx(0.1, abs=1e-3)
    assert radius.std() == pytest.approx(0.01, rel=0.05)
    assert np.all(x[:, 0] - 0.25 + abs(t0) >= -1e-12)


def test_slcp_explains_sbibm_observation(tasks) -> None:
    mean, cov = tasks.slcp_moments(_SLCP_THETA1[None])
    residual = _SLCP_X1.reshape(4, 2) - mean
    chi2 = np.einsum("ni,ij,nj->", residual, np.linalg.inv(cov[0]), residual)
    assert chi2 < 26.1  # chi-square with 8 degrees of freedom, p = 0.001
    # The simulator's draws have those moments.
    rng = np.random.default_rng(3)
    theta = np.array([[0.5, -1.0, 1.2, -0.8, 0.7]])
    x = tasks.TASKS["slcp"].simulate(np.repeat(theta, 20000, axis=0), rng).reshape(-1, 2)
    mean, cov = tasks.slcp_moments(theta)
    np.testing.assert_allclose(x.mean(axis=0), mean[0], atol=0.02)
    np.testing.assert_allclose(np.cov(x.T), cov[0], rtol=0.03, atol=0.01)


def test_gaussian_linear_explains_sbibm_observation(tasks) -> None:
    chi2 = np.sum((_LINEAR_X1 - _LINEAR_THETA1) ** 2) / 0.1
    assert chi2 < 29.6  # chi-square with 10 degrees of freedom, p = 0.001
    mean, var = tasks.gaussian_linear_posterior(_LINEAR_X1)
    np.testing.assert_allclose(mean, _LINEAR_X1 / 2.0)
    np.testing.assert_allclose(var, 0.05)
