"""Loss registry, sample discrepancies and the variational f-divergence bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from acoustic_inv.losses import (
    F_DIVERGENCES,
    LOSSES,
    LossOptions,
    Objective,
    StepContext,
    mmd,
    sinkhorn_divergence,
)
from acoustic_inv.models import CINN, INN

@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks: one thread is fastest, and immune to oversubscription on a shared CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# P = N(0, 1), Q = N(1, 1): log p/q (a) = 1/2 - a.


def _jsd_times_two() -> float:
    p, q = stats.norm(0, 1).pdf, stats.norm(1, 1).pdf

    def integrand(a: float) -> float:
        m = 0.5 * (p(a) + q(a))
        return p(a) * math.log(p(a) / m) + q(a) * math.log(q(a) / m)

    return integrate.quad(integrand, -12, 13)[0]


EXACT = {
    "kl": 0.5,
    "reverse_kl": 0.5,
    "pearson": math.e - 1.0,
    "hellinger": 2.0 * (1.0 - math.exp(-1.0 / 8.0)),
    "js": _jsd_times_two(),
    "gan": _jsd_times_two() - math.log(4.0),
}


def optimal_critic(name: str, a: torch.Tensor) -> torch.Tensor:
    """Critic output v with g_f(v) = f'(p/q), the maximizer of the bound (Nowozin et al. 2016)."""
    log_ratio = 0.5 - a
    ratio = torch.exp(log_ratio)
    return {
        "kl": 1.0 + log_ratio,
        "reverse_kl": log_ratio,
        "pearson": 2.0 * (ratio - 1.0),
        "hellinger": 0.5 * log_ratio,
        "js": log_ratio,
        "gan": log_ratio,
    }[name]


def test_every_divergence_has_an_exact_value_here() -> None:
    assert set(EXACT) == set(F_DIVERGENCES)


@pytest.mark.parametrize("name", sorted(F_DIVERGENCES))
def test_f_divergence_bound_is_tight_at_the_optimal_critic(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    p = torch.randn(400_000, generator=generator, dtype=torch.float64)
    q = torch.randn(400_000, generator=generator, dtype=torch.float64) + 1.0
    bound = F_DIVERGENCES[name].bound(optimal_critic(name, p), optimal_critic(name, q))
    tolerance = 0.05 if name == "pearson" else 0.01  # chi^2 has heavy-tailed terms
    assert float(bound) == pytest.approx(EXACT[name], abs=tolerance)


@pytest.mark.parametrize("name", sorted(F_DIVERGENCES))
def test_f_divergence_bound_is_below_the_divergence_for_other_critics(name: str) -> None:
    generator = torch.Generator().manual_seed(1)
    p = torch.randn(200_000, generator=generator, dtype=torch.float64)
    q = torch.randn(200_000, generator=generator, dtype=torch.float64) + 1.0
    for scale, shift in [(0.5, 0.0), (1.5, 0.3), (0.0, 0.2), (-0.5, 0.0)]:
        def critic(a: torch.Tensor) -> torch.Tensor:
            return scale * optimal_critic(name, a) + shift

        assert float(F_DIVERGENCES[name].bound(critic(p), critic(q))) < EXACT[name] + 0.01


def test_trained_critic_estimates_kl() -> None:
    torch.manual_seed(0)
    loss = LOSSES["fdiv_inverse"](CINN(1, 1, n_blocks=1, hidden=8), LossOptions("kl", critic_hidden=16, critic_depth=1))
    optimizer = torch.optim.Adam(loss.critic.parameters(), lr=1e-2)
    estimates = []
    for step in range(300):
        p = torch.cat([torch.randn(256, 1), torch.zeros(256, 1)], 1)
        q = torch.cat([torch.randn(256, 1) + 1.0, torch.zeros(256, 1)], 1)
        bound = loss.divergence.bound(loss.critic(p).squeeze(1), loss.critic(q).squeeze(1))
        optimizer.zero_grad()
        (-bound).backward()
        optimizer.step()
        if step >= 200:
            estimates.append(bound.item())
    assert np.mean(estimates) == pytest.approx(0.5, abs=0.08)


def test_mmd_separates_distributions() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(400, 3, generator=generator)
    b = torch.randn(400, 3, generator=generator)
    c = torch.randn(400, 3, generator=generator) + torch.tensor([0.7, 0.0, 0.0])
    same, different = float(mmd(a, b)), float(mmd(a, c))
    assert abs(same) < 0.01 < different
    a.requires_grad_(True)
    mmd(a, c).backward()
    assert a.grad is not None and bool(torch.isfinite(a.grad).all())


def test_sinkhorn_divergence_approaches_half_squared_w2() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(150, 1, generator=generator, dtype=torch.float64)
    b = 0.5 * torch.randn(150, 1, generator=generator, dtype=torch.float64) + 2.0
    w2_squared = float(((a.sort(0).values - b.sort(0).values) ** 2).mean())
    value = float(sinkhorn_divergence(a, b, eps_per_dim=0.005, n_iter=200))
    assert value == pytest.approx(0.5 * w2_squared, rel=0.05)
    assert float(sinkhorn_divergence(a, a)) == pytest.approx(0.0, abs=1e-9)
    assert float(sinkhorn_divergence(a, b)) > float(sinkhorn_divergence(a, a + 0.1))


def networks() -> dict[str, INN | CINN]:
    torch.manual_seed(0)
    return {
        "inn": INN(2, 3, latent_dim=2, noise_mode="theta_pad", n_blocks=2, hidden=16),
        "cinn": CINN(2, 3, embed_dim=4, n_blocks=2, hidden=16),
    }


def context(network: INN | CINN, n: int = 32, no_grad: bool = False) -> StepContext:
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(n, 3, generator=generator) if isinstance(network, INN) else None
    return StepContext(network, torch.randn(n, 2, generator=generator), torch.randn(n, 3, generator=generator), noise, no_grad=no_grad)


CASES = [(name, arch) for name, cls in sorted(LOSSES.items()) for arch in ("inn", "cinn") if arch in cls.architectures]


@pytest.mark.parametrize(("name", "arch"), CASES)
def test_each_loss_gives_a_finite_differentiable_value(name: str, arch: str) -> None:
    network = networks()[arch]
    objective = Objective({name: 1.0}, network)
    total, values = objective.generator_loss(context(network))
    assert set(values) == {name} and math.isfinite(values[name])
    total.backward()
    grads = [p.grad for p in network.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    assert all(p.grad is None for p in objective.critic_parameters()), "the network step leaves critics alone"
    if objective.has_critic:
        network.zero_grad(set_to_none=True)
        objective.critic_loss(context(network, no_grad=True)).backward()
        assert all(p.grad is None for p in network.parameters())
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in objective.critic_parameters())


def test_every_loss_is_covered() -> None:
    assert {name for name, _ in CASES} == set(LOSSES)
    assert {"mse_y", "ml_z", "mmd_yz", "mmd_theta", "fdiv_joint", "fdiv_inverse", "sinkhorn_yz", "sinkhorn_theta"} <= set(LOSSES)


def test_ml_z_is_the_exact_negative_log_likelihood_for_the_cinn() -> None:
    network = networks()["cinn"].double()
    ctx = StepContext(network, torch.randn(16, 2, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64), None)
    _, values = Objective({"ml_z": 1.0}, network).generator_loss(ctx)
    z, logdet = network(ctx.theta, ctx.x)
    nll = -(torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1) + logdet).mean()
    assert values["ml_z"] == pytest.approx(nll.detach().item() - math.log(2 * math.pi), abs=1e-9)


@pytest.mark.parametrize(
    ("weights", "arch", "message"),
    [
        ({"nope": 1.0}, "cinn", "unknown loss"),
        ({"mse_y": 1.0}, "cinn", "does not apply"),
        ({"ml_z": -1.0}, "cinn", "weight"),
        ({"ml_z": 0.0}, "cinn", "positive weight"),
        ({"ml_z": math.nan}, "inn", "weight"),
    ],
)
def test_objective_rejects_bad_weights(weights: dict[str, float], arch: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Objective(weights, networks()[arch])


def test_objective_weights_and_score() -> None:
    network = networks()["inn"]
    objective = Objective({"mse_y": 2.0, "ml_z": 1.0, "fdiv_joint": 0.5, "mmd_theta": 0.0}, network)
    assert objective.has_critic
    total, values = objective.generator_loss(context(network))
    expected = 2.0 * values["mse_y"] + values["ml_z"] + 0.5 * values["fdiv_joint"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert objective.score(values) == pytest.approx(2.0 * values["mse_y"] + values["ml_z"])
    assert Objective({"fdiv_inverse": 1.0}, network).score({"fdiv_inverse": 0.3}) is None
    with pytest.raises(ValueError, match="f_divergence"):
        Objective({"fdiv_joint": 1.0}, network, LossOptions("tv"))
