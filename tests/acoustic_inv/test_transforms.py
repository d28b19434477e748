"""Parameter and observation transforms: fit, exact inverse, log-Jacobian, errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from acoustic_inv.errors import DataError
from acoustic_inv.transforms import RunningMoments, ThetaTransform, XTransform

@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks: one thread is fastest, and immune to oversubscription on a shared CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


LOW = [1500.0, -math.inf, 0.0]
HIGH = [1800.0, math.inf, 1.0]


def training_theta(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(1500, 1800, n), rng.normal(5.0, 2.0, n), rng.beta(2, 5, n)])


def fitted() -> ThetaTransform:
    return ThetaTransform(LOW, HIGH).fit(np.array_split(training_theta(), 7))


def test_running_moments_match_numpy_over_blocks() -> None:
    values = np.random.default_rng(3).normal(2.0, 3.0, size=(1001, 4))
    moments = RunningMoments(4)
    for block in np.array_split(values, 9):
        moments.update(block)
    moments.update(values[:0])
    np.testing.assert_allclose(moments.mean, values.mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.std, values.std(0), rtol=1e-12)
    assert moments.count == 1001


def test_theta_transform_standardizes_and_inverts() -> None:
    transform = fitted()
    theta = torch.as_tensor(training_theta())
    u, _ = transform(theta)
    torch.testing.assert_close(u.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(u.std(0, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(transform.inverse(u), theta, atol=1e-9, rtol=1e-12)
    # unbounded column: plain standardization; bounded: strictly inside the bounds from any u
    torch.testing.assert_close(u[:, 1], (theta[:, 1] - theta[:, 1].mean()) / theta[:, 1].std(unbiased=False))
    wild = transform.inverse(torch.tensor([[50.0, 50.0, -50.0], [-50.0, -50.0, 50.0]], dtype=torch.float64))
    assert bool(((wild[:, 0] >= 1500) & (wild[:, 0] <= 1800)).all())
    assert bool(((wild[:, 2] >= 0) & (wild[:, 2] <= 1)).all())


def test_theta_log_jacobian_matches_autograd() -> None:
    transform = fitted()
    theta = torch.as_tensor(training_theta(5, seed=4))
    _, logdet = transform(theta)
    for i in range(len(theta)):
        jac = torch.autograd.functional.jacobian(lambda row: transform(row[None])[0][0], theta[i])
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-9, rtol=1e-9)


def test_theta_transform_as_distribution_transform() -> None:
    transform = fitted()
    tf = transform.as_distribution_transform()
    theta = torch.as_tensor(training_theta(4, seed=5))
    u, ladj = tf.call_and_ladj(theta)
    torch.testing.assert_close(u, transform(theta)[0])
    torch.testing.assert_close(tf.log_abs_det_jacobian(theta, u), ladj)
    torch.testing.assert_close(tf.inv(u), theta)


def test_theta_transform_state_dict_round_trip() -> None:
    transform = fitted()
    buffer = io.BytesIO()
    torch.save(transform.state_dict(), buffer)
    buffer.seek(0)
    loaded = ThetaTransform(LOW, HIGH)
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    theta = torch.as_tensor(training_theta(10, seed=6))
    assert torch.equal(loaded(theta)[0], transform(theta)[0])


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        ([0.0, 1.0], [1.0], "equal"),
        ([0.0], [math.inf], "both finite or both infinite"),
        ([2.0], [1.0], "low must be below high"),
        ([], [], "non-zero"),
    ],
)
def test_theta_transform_bad_bounds(low: list[float], high: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ThetaTransform(low, high)


def test_theta_fit_errors() -> None:
    with pytest.raises(DataError, match="outside its bounds"):
        ThetaTransform([0.0], [1.0]).fit([np.array([[0.5], [1.5]])])
    with pytest.raises(DataError, match="NaN"):
        ThetaTransform([0.0], [1.0]).fit([np.array([[0.5], [np.nan]])])
    with pytest.raises(DataError, match="empty"):
        ThetaTransform([0.0], [1.0]).fit([])
    with pytest.raises(ValueError, match="shape"):
        fitted()(torch.zeros(2, 4, dtype=torch.float64))


def test_parameter_on_its_bound_stays_finite() -> None:
    transform = ThetaTransform([0.0], [1.0]).fit([np.array([[0.0], [0.5], [1.0], [0.25]])])
    u, logdet = transform(torch.tensor([[0.0], [1.0]], dtype=torch.float64))
    assert bool(torch.isfinite(u).all()) and bool(torch.isfinite(logdet).all())


def test_x_transform_standardizes_and_guards_constant_features() -> None:
    rng = np.random.default_rng(2)
    x = np.column_stack([rng.normal(3.0, 0.5, 500), np.full(500, 7.0)]).astype(np.float32)
    transform = XTransform(2).fit(np.array_split(x, 3))
    out = transform(torch.as_tensor(x))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[:, 0].mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 1], torch.zeros(500))  # constant feature: shifted, scaled by 1
    torch.testing.assert_close(transform.scale_noise(0.5)[0], torch.tensor(0.5 / x[:, 0].astype(np.float64).std(), dtype=torch.float64))
    with pytest.raises(DataError, match="NaN"):
        XTransform(1).fit([np.array([[np.inf]])])
    with pytest.raises(DataError, match="empty"):
        XTransform(1).fit([])
    with pytest.raises(ValueError, match="shape"):
        transform(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="n_features"):
        XTransform(0)
