"""Contract of every invertible block and of both architectures (after zuko's tests/test_flows.py).

Each case is built in float64 with its parameters moved away from the identity initialization, so
the checks see a non-trivial map: exact inverse, log-determinant equal to autograd's Jacobian
log|det|, state_dict round trip, and shape errors.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import pytest
import torch

from acoustic_inv.blocks import (
    ActNorm,
    AffineCoupling,
    InvertibleBlock,
    InvertibleSequential,
    Permutation,
    coupling_stack,
    mlp,
    soft_clamp,
)
from acoustic_inv.models import CINN, INN

@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks: one thread is fastest, and immune to oversubscription on a shared CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


Factory = Callable[[int], InvertibleBlock]

CASES: dict[str, Factory] = {
    "affine_coupling": lambda seed: AffineCoupling(5, hidden=16),
    "affine_coupling_conditioned": lambda seed: AffineCoupling(4, cond_dim=3, hidden=16, depth=1),
    "affine_coupling_dim1_conditioned": lambda seed: AffineCoupling(1, cond_dim=2, hidden=8),
    "permutation": lambda seed: Permutation(6, seed=seed),
    "actnorm": lambda seed: ActNorm(4),
    "sequential": lambda seed: coupling_stack(4, 2, n_blocks=2, hidden=16, depth=1, clamp=1.5, actnorm=True, seed=seed),
    "inn_theta_pad": lambda seed: INN(2, 3, latent_dim=3, noise_mode="theta_pad", n_blocks=2, hidden=16, seed=seed),
    "inn_y": lambda seed: INN(2, 3, latent_dim=2, noise_mode="y", n_blocks=2, hidden=16, seed=seed),
    "cinn": lambda seed: CINN(3, 4, embed_dim=5, n_blocks=2, hidden=16, seed=seed),
    "cinn_one_param": lambda seed: CINN(1, 2, embed_dim=3, n_blocks=2, hidden=8, seed=seed),
}


def build(name: str, seed: int = 0) -> InvertibleBlock:
    """The case in float64, parameters perturbed (seeded), ActNorm layers initialized, eval mode."""
    torch.manual_seed(seed)
    block = CASES[name](seed).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
        u, c = inputs(block, n=64, seed=seed + 100)
        block.train()
        block(u, c)  # data-dependent ActNorm initialization
    return block.eval()


def inputs(block: InvertibleBlock, n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(seed)
    u = 1.5 * torch.randn(n, block.dim, generator=generator, dtype=torch.float64) + 0.5
    c = torch.randn(n, block.cond_dim, generator=generator, dtype=torch.float64) if block.cond_dim else None
    return u, c


@pytest.mark.parametrize("name", CASES)
def test_inverse_is_exact(name: str) -> None:
    block = build(name)
    u, c = inputs(block)
    with torch.no_grad():
        v, logdet = block(u, c)
        u_back, logdet_back = block.inverse(v, c)
        v_again, _ = block(block.inverse(u, c)[0], c)
    assert v.shape == u.shape and logdet.shape == (u.shape[0],)
    assert not torch.allclose(v, u), "the map under test must not be the identity"
    torch.testing.assert_close(u_back, u, atol=1e-5, rtol=0)
    torch.testing.assert_close(v_again, u, atol=1e-5, rtol=0)
    torch.testing.assert_close(logdet_back, -logdet, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", CASES)
def test_logdet_matches_autograd_jacobian(name: str) -> None:
    block = build(name)
    u, c = inputs(block, n=3)
    _, logdet = block(u, c)
    for i in range(u.shape[0]):
        ci = None if c is None else c[i : i + 1]
        jac = torch.autograd.functional.jacobian(lambda row: block(row[None], ci)[0][0], u[i])
        expected = torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(logdet[i], expected, atol=1e-8, rtol=1e-8)
        # and the inverse direction at the image point
        v = block(u[i : i + 1], ci)[0][0].detach()
        jac_inv = torch.autograd.functional.jacobian(lambda row: block.inverse(row[None], ci)[0][0], v)
        torch.testing.assert_close(block.inverse(v[None], ci)[1][0], torch.linalg.slogdet(jac_inv).logabsdet, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", CASES)
def test_state_dict_round_trip_gives_identical_outputs(name: str) -> None:
    block = build(name, seed=0)
    buffer = io.BytesIO()
    torch.save(block.state_dict(), buffer)
    buffer.seek(0)
    other = build(name, seed=7)  # different weights (and permutations) before loading
    u, c = inputs(block)
    with torch.no_grad():
        other.load_state_dict(torch.load(buffer, weights_only=True))
        for direction in ("forward", "inverse"):
            mine = getattr(block, direction)(u, c)
            theirs = getattr(other, direction)(u, c)
            assert torch.equal(mine[0], theirs[0]) and torch.equal(mine[1], theirs[1]), direction


def test_round_trip_instance_differs_before_loading() -> None:
    """Guards the round-trip test: two builds with different seeds really are different maps."""
    for name in CASES:
        a, b = build(name, 0), build(name, 7)
        u, c = inputs(a)
        with torch.no_grad():
            assert not torch.equal(a(u, c)[0], b(u, c)[0]), name


@pytest.mark.parametrize("name", CASES)
def test_call_shape_errors(name: str) -> None:
    block = build(name)
    u, c = inputs(block)
    with pytest.raises(ValueError, match="shape"):
        block(torch.zeros(4, block.dim + 1, dtype=torch.float64), c[:4] if c is not None else None)
    with pytest.raises(ValueError, match="shape"):
        block(u[0], c)
    if block.cond_dim:
        with pytest.raises(ValueError, match="condition"):
            block(u, None)
        with pytest.raises(ValueError, match="condition"):
            block.inverse(u, c[:, :-1])
    else:
        with pytest.raises(ValueError, match="unconditioned"):
            block(u, torch.zeros(u.shape[0], 2, dtype=torch.float64))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AffineCoupling(0), "dim"),
        (lambda: AffineCoupling(1), "needs a condition"),
        (lambda: AffineCoupling(4, cond_dim=-1), "cond_dim"),
        (lambda: AffineCoupling(4, clamp=0.0), "clamp"),
        (lambda: AffineCoupling(4, hidden=0), "sizes"),
        (lambda: Permutation(0), "dim"),
        (lambda: ActNorm(2.5), "dim"),  # type: ignore[arg-type]
        (lambda: InvertibleSequential([]), "at least one"),
        (lambda: InvertibleSequential([ActNorm(3), ActNorm(4)]), "disagree on dim"),
        (lambda: InvertibleSequential([AffineCoupling(3, 2), AffineCoupling(3, 4)]), "disagree on cond_dim"),
        (lambda: coupling_stack(4, 0, 0, 8, 1, 2.0, True, 0), "n_blocks"),
        (lambda: INN(0, 3), "n_params"),
        (lambda: INN(2, 0), "n_features"),
        (lambda: INN(3, 2, latent_dim=2, noise_mode="theta_pad"), "latent_dim=2 is too small"),
        (lambda: INN(5, 1, latent_dim=2, noise_mode="y"), "too small"),
        (lambda: INN(2, 2, noise_mode="x"), "noise_mode"),  # type: ignore[arg-type]
        (lambda: INN(2, 2, pad_std=0.0), "pad_std"),
        (lambda: CINN(0, 3), "n_params"),
        (lambda: CINN(2, 3, embed_dim=0), "embed_dim"),
    ],
)
def test_construction_errors(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_coupling_starts_as_identity_and_clamps_scales() -> None:
    block = AffineCoupling(4, cond_dim=2, clamp=1.0)
    u, c = torch.randn(5, 4), torch.randn(5, 2)
    v, logdet = block(u, c)
    assert torch.equal(v, u) and torch.equal(logdet, torch.zeros(5))
    raw = torch.tensor([-1e6, -3.0, 0.0, 3.0, 1e6])
    clamped = soft_clamp(raw, 1.0)
    assert bool((clamped.abs() < 1.0).all()) and clamped[2] == 0
    torch.testing.assert_close(soft_clamp(torch.tensor(1e-4, dtype=torch.float64), 2.0),
                               torch.tensor(2 / math.pi * 1e-4, dtype=torch.float64), rtol=1e-6, atol=0)
    with torch.no_grad():
        for p in block.parameters():
            p.fill_(5.0)
    _, logdet = block(u, c)
    assert bool((logdet.abs() <= 4 * 1.0).all()), "each of the 4 log-scales is below the clamp"


def test_actnorm_data_dependent_initialization_survives_round_trip() -> None:
    torch.manual_seed(0)
    u = 3.0 * torch.randn(500, 3) + torch.tensor([1.0, -2.0, 5.0])
    block = ActNorm(3)
    v, logdet = block(u)
    torch.testing.assert_close(v.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(v.std(0), torch.ones(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(logdet, -torch.log(u.std(0)).sum().expand(500), atol=1e-5, rtol=0)
    loaded = ActNorm(3)
    loaded.load_state_dict(block.state_dict())
    assert bool(loaded.initialized)
    shifted = u + 10.0
    assert torch.equal(loaded(shifted)[0], block(shifted)[0]), "a loaded layer is not re-initialized"
    fresh = ActNorm(3).eval()
    assert torch.equal(fresh(u)[0], u), "no initialization in eval mode"
    with pytest.raises(ValueError, match=">= 2 samples"):
        ActNorm(3)(torch.zeros(1, 3))


def test_permutation_is_seeded_and_stored() -> None:
    a, b, c = Permutation(10, seed=1), Permutation(10, seed=1), Permutation(10, seed=2)
    assert torch.equal(a.order, b.order) and not torch.equal(a.order, c.order)
    assert sorted(a.order.tolist()) == list(range(10))
    assert "order" in a.state_dict()
    x = torch.arange(10.0)[None]
    assert torch.equal(a(x)[0][0], x[0][a.order])


def test_mlp_zero_last_layer() -> None:
    net = mlp(3, 2, 8, 2, zero_last=True)
    assert torch.equal(net(torch.randn(4, 3)), torch.zeros(4, 2))
    assert sum(isinstance(m, torch.nn.Linear) for m in net) == 3
    assert float(mlp(3, 2, 8, 1)[-1].weight.detach().abs().sum()) > 0, "only zero_last zeroes the last layer"
