"""The trained-posterior API: sampling and exact densities in physical units."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Distribution

from acoustic_inv.errors import UserError
from acoustic_inv.models import CINN, INN, PosteriorModel
from acoustic_inv.transforms import ThetaTransform, XTransform


@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks: one thread is fastest, and immune to oversubscription on a shared CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def perturbed(network: INN | CINN, seed: int = 0) -> INN | CINN:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator))
    return network.eval()


def posterior_model(architecture: str, low: list[float], high: list[float], n_features: int = 3) -> PosteriorModel:
    torch.manual_seed(0)
    d = len(low)
    if architecture == "cinn":
        network: INN | CINN = CINN(d, n_features, embed_dim=4, n_blocks=2, hidden=16)
    else:
        network = INN(d, n_features, noise_mode="theta_pad", n_blocks=2, hidden=16)
    rng = np.random.default_rng(0)
    theta = np.column_stack([rng.uniform(lo, hi, 200) if math.isfinite(lo) else rng.normal(0, 3, 200) for lo, hi in zip(low, high)])
    theta_tf = ThetaTransform(low, high).fit([theta])
    x_tf = XTransform(n_features).fit([rng.normal(10.0, 2.0, size=(200, n_features))])
    names = [f"p{i}" for i in range(d)]
    return PosteriorModel(perturbed(network), theta_tf, x_tf, names, ["m"] * d)


@pytest.mark.parametrize("architecture", ["inn", "cinn"])
def test_sample_shapes_bounds_and_seed(architecture: str) -> None:
    model = posterior_model(architecture, [0.0, -math.inf], [5.0, math.inf])
    x = np.array([10.0, 11.0, 9.0], dtype=np.float32)
    one = model.sample(x, 50, seed=3)
    assert one.shape == (50, 2) and one.dtype == torch.float64
    assert torch.equal(one, model.sample(torch.as_tensor(x), 50, seed=3))
    assert not torch.equal(one, model.sample(x, 50, seed=4))
    batch = model.sample(np.stack([x, x + 1.0]), 20, seed=0)
    assert batch.shape == (20, 2, 2)
    assert bool(((batch[..., 0] > 0) & (batch[..., 0] < 5)).all()), "bounded parameter stays inside its bounds"
    with pytest.raises(UserError, match="shape"):
        model.sample(np.zeros(4), 5)
    with pytest.raises(UserError, match="draws"):
        model.sample(x, 0)


def test_inn_noise_entries_size_the_parameter_side() -> None:
    """``n_noise`` noise entries sit between theta and the padding; the default latent size is the
    smallest >= d that holds them."""
    legacy = INN(2, 3, noise_mode="theta_pad", n_blocks=1, hidden=8)
    assert (legacy.n_noise, legacy.latent_dim, legacy.n_pad) == (3, 2, 0), "default: the trainer's additive noise"
    many = INN(2, 3, noise_mode="theta_pad", n_noise=5, n_blocks=1, hidden=8)
    assert (many.n_noise, many.latent_dim, many.dim, many.n_pad) == (5, 4, 7, 0)
    few = INN(2, 3, noise_mode="theta_pad", n_noise=1, n_blocks=1, hidden=8)
    assert (few.latent_dim, few.n_pad) == (2, 2)
    theta, noise = torch.zeros(4, 2), torch.full((4, 1), 7.0)
    packed = few.pack_params(theta, noise)
    assert packed.shape == (4, 5) and torch.equal(packed[:, 2], noise[:, 0]) and float(packed[:, 3:].abs().max()) < 0.1
    with pytest.raises(ValueError, match=r"noise of shape \(4, 1\), got \(4, 3\)"):
        few.pack_params(theta, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="carries no noise"):
        INN(2, 3, noise_mode="y", n_noise=2)
    with pytest.raises(ValueError, match="n_noise must be an int >= 1"):
        INN(2, 3, noise_mode="theta_pad", n_noise=0)
    with pytest.raises(ValueError, match=r"latent_dim=3 is too small.*latent_dim >= 4"):
        INN(2, 3, latent_dim=3, noise_mode="theta_pad", n_noise=5)
    assert INN(2, 3, noise_mode="y", n_noise=0).n_noise == 0


def test_inn_has_no_exact_density() -> None:
    model = posterior_model("inn", [0.0], [1.0])
    with pytest.raises(UserError, match="cinn"):
        model.log_prob(np.array([0.5]), np.zeros(3))


def test_cinn_posterior_is_a_normalized_distribution_in_physical_units() -> None:
    model = posterior_model("cinn", [2.0], [7.0])
    x = np.array([9.0, 12.0, 10.5])
    posterior = model.posterior(x)
    assert isinstance(posterior, Distribution)
    grid = torch.linspace(2.0, 7.0, 20001, dtype=torch.float64)[1:-1, None]
    density = model.log_prob(grid, x).exp()
    assert density.shape == (19999,)
    assert float(torch.trapezoid(density, grid[:, 0])) == pytest.approx(1.0, abs=2e-3)
    draws = posterior.sample((4000,))
    assert draws.shape == (4000, 1) and bool(((draws > 2) & (draws < 7)).all())
    # the sample mean agrees with the density's mean
    mean = float(torch.trapezoid(density * grid[:, 0], grid[:, 0]))
    assert float(draws.mean()) == pytest.approx(mean, abs=0.1)


def test_cinn_log_prob_is_change_of_variables_and_rsample_has_gradients() -> None:
    model = posterior_model("cinn", [0.0, -math.inf], [5.0, math.inf])
    x = torch.tensor([[9.0, 12.0, 10.5], [11.0, 8.0, 10.0]], dtype=torch.float64)
    theta = torch.tensor([[[1.0, 2.0], [4.0, -3.0]], [[2.5, 0.0], [0.1, 7.0]]], dtype=torch.float64)
    log_prob = model.log_prob(theta, x)
    assert log_prob.shape == (2, 2)
    u, ladj_theta = model.theta_transform(theta)
    x_std = model.x_transform(x).float()
    z, ladj_flow = model.network(u.reshape(4, 2).float(), x_std.repeat(2, 1))
    manual = torch.distributions.Normal(0.0, 1.0).log_prob(z.double()).sum(1) + ladj_flow.double()
    torch.testing.assert_close(log_prob, manual.reshape(2, 2) + ladj_theta, atol=1e-4, rtol=1e-5)
    posterior = model.posterior(x)
    draws = posterior.rsample((3,))
    assert draws.shape == (3, 2, 2) and draws.requires_grad


def test_posterior_model_checks_sizes() -> None:
    with pytest.raises(ValueError, match="do not match"):
        PosteriorModel(CINN(2, 3), ThetaTransform([0.0], [1.0]), XTransform(3), ["a"], ["m"])
    with pytest.raises(ValueError, match="names and units"):
        PosteriorModel(CINN(1, 3), ThetaTransform([0.0], [1.0]), XTransform(3), ["a", "b"], ["m"])
