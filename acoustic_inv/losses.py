"""Training losses, selectable by name with a weight: ``{"ml_z": 1.0, "fdiv_inverse": 0.5, ...}``.

Every term works on a :class:`StepContext` (one batch of standardized ``theta`` and ``x`` and the
network) and returns a scalar to minimize; the trainer sums the weighted terms. Terms:

==================  =======  =================================================================
name                archs    what
==================  =======  =================================================================
``mse_y``           inn      forward fit: mean over samples of ``||y_pred - y||^2``
``ml_z``            both     maximum likelihood: mean of ``||z||^2 / 2 - log|det J|``
``mmd_yz``          inn      MMD between ``[y_pred, z_pred]`` and ``[y, N(0, I)]`` (Ardizzone 2018)
``mmd_theta``       both     backward MMD between posterior draws ``T^-1(y, z)`` and ``theta``
``fdiv_joint``      inn      variational f-divergence, critic on ``[y, z]`` (see below)
``fdiv_inverse``    both     variational f-divergence, critic on ``(theta, y)`` (see below)
``sinkhorn_yz``     inn      debiased Sinkhorn divergence, as ``mmd_yz``
``sinkhorn_theta``  both     debiased Sinkhorn divergence, as ``mmd_theta``
==================  =======  =================================================================

Variational f-divergence (VINA, Shekhar et al. 2026, arXiv 2602.20480, on the f-GAN dual of
Nowozin et al. 2016, "f-GAN: training generative neural samplers using variational divergence
minimization"): for a convex ``f`` with conjugate ``f*``,

    D_f(P || Q) >= sup_T  E_P[T(a)] - E_Q[f*(T(a))],

with ``T = g_f(V)`` a critic network ``V`` passed through an output activation ``g_f`` that keeps
``T`` in the domain of ``f*``. ``P`` is the data side and ``Q`` the network's side:

- joint form: ``P = [y, z ~ N(0, I)]``, ``Q = [T_y(theta), T_z(theta)]`` (the forward map's output);
- inverse form: ``P = (theta, y)``, ``Q = (T^-1(y, z)_theta, y)`` with ``z ~ N(0, I)``.

The critic maximizes the bound (its own optimizer; :meth:`Objective.critic_loss`), the network
minimizes it (:meth:`Objective.generator_loss`). The bound's value is an estimate of ``D_f`` and is
what gets logged. The divergences, with ``g_f`` and ``f*(g_f(v))`` written in numerically stable form
(Nowozin et al. 2016, Table 2), are in :data:`F_DIVERGENCES`.

MMD (Ardizzone et al. 2018): inverse multiquadric kernels ``k(a, b) = h / (h + ||a - b||^2)`` summed
over scales ``h = dim * (0.05, 0.2, 0.9, 4)``, unbiased estimator. As in Ardizzone et al. the
gradient through ``y_pred`` is blocked in ``mmd_yz`` (the ``y`` part is the job of ``mse_y``).

Sinkhorn: the debiased divergence ``S = OT_eps(a, b) - (OT_eps(a, a) + OT_eps(b, b)) / 2`` with
squared-Euclidean cost, ``eps = 0.1 * dim``, computed by log-domain Sinkhorn iterations in torch
(Feydy et al. 2019, "Interpolating between optimal transport and MMD using Sinkhorn divergences").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acoustic_inv.blocks import mlp
from acoustic_inv.models import CINN, INN

__all__ = [
    "F_DIVERGENCES",
    "LOSSES",
    "FDivergence",
    "LossOptions",
    "LossTerm",
    "Objective",
    "StepContext",
    "mmd",
    "register_loss",
    "sinkhorn_divergence",
]


# ---------------------------------------------------------------------------------------------
# f-divergences


@dataclass(frozen=True)
class FDivergence:
    """One f-divergence for the f-GAN bound.

    Attributes:
        name: registry key.
        activation: ``v -> g_f(v)``, the critic value ``T`` on the ``P`` side.
        conjugate_of_activation: ``v -> f*(g_f(v))``, the term on the ``Q`` side.
    """

    name: str
    activation: Callable[[Tensor], Tensor]
    conjugate_of_activation: Callable[[Tensor], Tensor]

    def bound(self, v_p: Tensor, v_q: Tensor) -> Tensor:
        """``E_P[g_f(V)] - E_Q[f*(g_f(V))]`` from critic outputs on P (n,) and Q (n,) samples."""
        return self.activation(v_p).mean() - self.conjugate_of_activation(v_q).mean()


_LOG2 = math.log(2.0)

#: Nowozin et al. (2016), Table 2. ``f*(g_f(v))`` simplified: e.g. for Jensen-Shannon
#: ``-log(2 - exp(log 2 - softplus(-v))) = softplus(v) - log 2``.
F_DIVERGENCES: dict[str, FDivergence] = {
    d.name: d
    for d in (
        FDivergence("kl", lambda v: v, lambda v: torch.exp(v - 1.0)),
        FDivergence("reverse_kl", lambda v: -torch.exp(-v), lambda v: v - 1.0),
        FDivergence("pearson", lambda v: v, lambda v: 0.25 * v * v + v),
        FDivergence("hellinger", lambda v: 1.0 - torch.exp(-v), lambda v: torch.exp(v) - 1.0),
        FDivergence("js", lambda v: _LOG2 - F.softplus(-v), lambda v: F.softplus(v) - _LOG2),
        FDivergence("gan", lambda v: -F.softplus(-v), lambda v: F.softplus(v)),
    )
}


# ---------------------------------------------------------------------------------------------
# sample-based discrepancies


def mmd(a: Tensor, b: Tensor, scales: tuple[float, ...] = (0.05, 0.2, 0.9, 4.0)) -> Tensor:
    """Unbiased squared MMD with a sum of inverse multiquadric kernels.

    Args:
        a: shape (n, k), n >= 2.
        b: shape (p, k), p >= 2.
        scales: kernel widths per dimension; kernel ``h`` is ``scale * k``.

    Returns:
        Scalar.
    """
    k = a.shape[1]

    def kernel(p: Tensor, q: Tensor) -> Tensor:
        dist2 = torch.cdist(p, q).square()
        return sum(h / (h + dist2) for h in (s * k for s in scales))

    n, p = a.shape[0], b.shape[0]
    kaa, kbb, kab = kernel(a, a), kernel(b, b), kernel(a, b)
    term_a = (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
    term_b = (kbb.sum() - kbb.diagonal().sum()) / (p * (p - 1))
    return term_a + term_b - 2.0 * kab.mean()


def _entropic_ot(a: Tensor, b: Tensor, eps: float, n_iter: int) -> Tensor:
    """Entropic OT cost between uniform point clouds (log-domain Sinkhorn), squared-Euclidean cost."""
    cost = 0.5 * torch.cdist(a, b).square()
    log_wa = torch.full((a.shape[0],), -math.log(a.shape[0]), dtype=a.dtype, device=a.device)
    log_wb = torch.full((b.shape[0],), -math.log(b.shape[0]), dtype=a.dtype, device=a.device)
    f = torch.zeros_like(log_wa)
    g = torch.zeros_like(log_wb)
    for _ in range(n_iter):
        f = -eps * torch.logsumexp(log_wb[None, :] + (g[None, :] - cost) / eps, dim=1)
        g = -eps * torch.logsumexp(log_wa[:, None] + (f[:, None] - cost) / eps, dim=0)
    # Dual value at the fixed point (the exp-term integrates to one there).
    return (f * log_wa.exp()).sum() + (g * log_wb.exp()).sum()


def sinkhorn_divergence(a: Tensor, b: Tensor, eps_per_dim: float = 0.1, n_iter: int = 50) -> Tensor:
    """Debiased Sinkhorn divergence ``OT(a, b) - (OT(a, a) + OT(b, b)) / 2``.

    Args:
        a: shape (n, k).
        b: shape (p, k).
        eps_per_dim: entropic regularization per dimension (``eps = eps_per_dim * k``).
        n_iter: Sinkhorn iterations.

    Returns:
        Scalar, in squared units of the inputs.
    """
    eps = eps_per_dim * a.shape[1]
    return _entropic_ot(a, b, eps, n_iter) - 0.5 * (_entropic_ot(a, a, eps, n_iter) + _entropic_ot(b, b, eps, n_iter))


# ---------------------------------------------------------------------------------------------
# the step context


class StepContext:
    """One batch and the network quantities that the loss terms need, computed once on demand.

    Args:
        network: the :class:`INN` or :class:`CINN`.
        theta: standardized parameters, shape (n, d).
        x: standardized (noisy) observations, shape (n, m): ``y`` for the INN, the condition for
            the cINN.
        noise: for the INN's ``theta_pad`` mode, the noise realization behind ``x`` that the
            parameter side carries, shape (n, n_noise): the standardized simulator noise of the
            data (if any), then the unit-normal noise the trainer added to ``x`` (if any);
            otherwise ``None``.
        no_grad: compute everything without gradients (for critic updates).
    """

    def __init__(self, network: INN | CINN, theta: Tensor, x: Tensor, noise: Tensor | None, *, no_grad: bool = False) -> None:
        self.network = network
        self.theta = theta
        self.x = x
        self.noise = noise
        self.no_grad = no_grad

    def _grad_mode(self) -> torch.set_grad_enabled:
        return torch.set_grad_enabled(torch.is_grad_enabled() and not self.no_grad)

    @cached_property
    def forward_pass(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(y_pred (n, m) or None-like empty, z (n, k), logdet (n,))`` of the forward direction.

        For the cINN, ``y_pred`` is an empty (n, 0) tensor.
        """
        with self._grad_mode():
            if isinstance(self.network, INN):
                u = self.network.pack_params(self.theta, self.noise if self.network.noise_mode == "theta_pad" else None)
                v, logdet = self.network(u)
                y_pred, z = self.network.split_obs(v)
                return y_pred, z, logdet
            z, logdet = self.network(self.theta, self.x)
            return self.theta.new_zeros(self.theta.shape[0], 0), z, logdet

    @cached_property
    def latent_draw(self) -> Tensor:
        """``z ~ N(0, I)`` of shape (n, latent size), shared by the terms of this step."""
        k = self.network.latent_dim if isinstance(self.network, INN) else self.network.n_params
        return torch.randn(self.theta.shape[0], k, dtype=self.theta.dtype, device=self.theta.device)

    @cached_property
    def theta_draw(self) -> Tensor:
        """One posterior draw per row, ``T^-1(y, z)`` restricted to ``theta``: shape (n, d)."""
        with self._grad_mode():
            if isinstance(self.network, INN):
                u, _ = self.network.inverse(torch.cat([self.x, self.latent_draw], dim=1))
                return u[:, : self.network.n_params]
            return self.network.inverse(self.latent_draw, self.x)[0]


# ---------------------------------------------------------------------------------------------
# loss terms and registry


@dataclass(frozen=True)
class LossOptions:
    """Settings shared by the terms.

    Attributes:
        f_divergence: key of :data:`F_DIVERGENCES` for the ``fdiv_*`` terms.
        critic_hidden: critic width.
        critic_depth: critic hidden layers.
    """

    f_divergence: str = "js"
    critic_hidden: int = 128
    critic_depth: int = 2


class LossTerm(nn.Module):
    """A named loss term. Subclasses set ``name`` and ``architectures`` and implement ``forward``.

    Args:
        network: the network it will be used with (for sizes).
        options: shared settings.
    """

    name: ClassVar[str]
    architectures: ClassVar[frozenset[str]] = frozenset({"inn", "cinn"})
    adversarial: ClassVar[bool] = False

    def __init__(self, network: INN | CINN, options: LossOptions) -> None:
        super().__init__()
        self.options = options

    def forward(self, ctx: StepContext) -> Tensor:  # pragma: no cover
        """The value to minimize (scalar)."""
        raise NotImplementedError

    def critic_loss(self, ctx: StepContext) -> Tensor:  # pragma: no cover
        """The critic's value to minimize (adversarial terms only)."""
        raise NotImplementedError


LOSSES: dict[str, type[LossTerm]] = {}


def register_loss(cls: type[LossTerm]) -> type[LossTerm]:
    """Class decorator: makes a term selectable by its ``name``."""
    if cls.name in LOSSES:
        raise ValueError(f"loss {cls.name!r} registered twice")
    LOSSES[cls.name] = cls
    return cls


def architecture_of(network: INN | CINN) -> str:
    """``"inn"`` or ``"cinn"``."""
    return "inn" if isinstance(network, INN) else "cinn"


@register_loss
class MSEY(LossTerm):
    """Supervised forward fit of the INN: mean over samples of ``||y_pred - y||^2``."""

    name = "mse_y"
    architectures = frozenset({"inn"})

    def forward(self, ctx: StepContext) -> Tensor:
        y_pred = ctx.forward_pass[0]
        return (y_pred - ctx.x).square().sum(1).mean()


@register_loss
class MaxLikelihoodZ(LossTerm):
    """Maximum likelihood on ``z``: mean of ``||z||^2 / 2 - log|det J|`` (constant dropped).

    For the cINN this is the exact negative log-likelihood of ``theta`` given ``x`` up to a constant.
    For the INN, with ``y`` fixed by ``mse_y``, it minimizes the KL divergence between the network's
    ``[y, z]`` and ``p(y) N(z; 0, I)`` (Ardizzone et al. 2019; Kruse et al. 2021, "Benchmarking
    invertible architectures on inverse problems"). That argument needs ``y`` to be a function of
    the parameter side, i.e. every noise realization behind ``y`` carried there (``noise_mode =
    "theta_pad"``); on noisy data in ``"y"`` mode ``y_pred`` can only reach the mean of ``y`` and
    the inverse collapses (see :mod:`acoustic_inv.models`).
    """

    name = "ml_z"

    def forward(self, ctx: StepContext) -> Tensor:
        _, z, logdet = ctx.forward_pass
        return (0.5 * z.square().sum(1) - logdet).mean()


@register_loss
class MMDYZ(LossTerm):
    """MMD between ``[y_pred, z]`` (gradient through ``y_pred`` blocked) and ``[y, N(0, I)]``."""

    name = "mmd_yz"
    architectures = frozenset({"inn"})

    def forward(self, ctx: StepContext) -> Tensor:
        y_pred, z, _ = ctx.forward_pass
        return mmd(torch.cat([y_pred.detach(), z], 1), torch.cat([ctx.x, ctx.latent_draw], 1))


@register_loss
class MMDTheta(LossTerm):
    """Backward MMD between posterior draws ``T^-1(y, z)`` and the batch's ``theta``."""

    name = "mmd_theta"

    def forward(self, ctx: StepContext) -> Tensor:
        return mmd(ctx.theta_draw, ctx.theta)


@register_loss
class SinkhornYZ(LossTerm):
    """Sinkhorn divergence between ``[y_pred, z]`` (``y_pred`` detached) and ``[y, N(0, I)]``."""

    name = "sinkhorn_yz"
    architectures = frozenset({"inn"})

    def forward(self, ctx: StepContext) -> Tensor:
        y_pred, z, _ = ctx.forward_pass
        return sinkhorn_divergence(torch.cat([y_pred.detach(), z], 1), torch.cat([ctx.x, ctx.latent_draw], 1))


@register_loss
class SinkhornTheta(LossTerm):
    """Sinkhorn divergence between posterior draws ``T^-1(y, z)`` and the batch's ``theta``."""

    name = "sinkhorn_theta"

    def forward(self, ctx: StepContext) -> Tensor:
        return sinkhorn_divergence(ctx.theta_draw, ctx.theta)


class _FDivTerm(LossTerm):
    """Variational f-divergence with a critic network (see the module docstring)."""

    adversarial = True

    def __init__(self, network: INN | CINN, options: LossOptions) -> None:
        super().__init__(network, options)
        if options.f_divergence not in F_DIVERGENCES:
            raise ValueError(f"unknown f_divergence {options.f_divergence!r}; choose from {sorted(F_DIVERGENCES)}")
        self.divergence = F_DIVERGENCES[options.f_divergence]
        self.critic = mlp(self.critic_input_dim(network), 1, options.critic_hidden, options.critic_depth)

    def critic_input_dim(self, network: INN | CINN) -> int:  # pragma: no cover
        raise NotImplementedError

    def samples(self, ctx: StepContext) -> tuple[Tensor, Tensor]:  # pragma: no cover
        """``(P samples, Q samples)``, each (n, critic input size)."""
        raise NotImplementedError

    def _bound(self, ctx: StepContext) -> Tensor:
        p, q = self.samples(ctx)
        return self.divergence.bound(self.critic(p).squeeze(1), self.critic(q).squeeze(1))

    def forward(self, ctx: StepContext) -> Tensor:
        return self._bound(ctx)

    def critic_loss(self, ctx: StepContext) -> Tensor:
        return -self._bound(ctx)


@register_loss
class FDivJoint(_FDivTerm):
    """Joint form: critic tells ``[y_pred, z]`` (Q) from ``[y, N(0, I)]`` (P)."""

    name = "fdiv_joint"
    architectures = frozenset({"inn"})

    def critic_input_dim(self, network: INN | CINN) -> int:
        return network.dim

    def samples(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        y_pred, z, _ = ctx.forward_pass
        return torch.cat([ctx.x, ctx.latent_draw], 1), torch.cat([y_pred, z], 1)


@register_loss
class FDivInverse(_FDivTerm):
    """Inverse form: critic tells ``(T^-1(y, z), y)`` (Q) from ``(theta, y)`` (P)."""

    name = "fdiv_inverse"

    def critic_input_dim(self, network: INN | CINN) -> int:
        return network.n_params + network.n_features

    def samples(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        return torch.cat([ctx.theta, ctx.x], 1), torch.cat([ctx.theta_draw, ctx.x], 1)


# ---------------------------------------------------------------------------------------------
# the weighted objective


class Objective(nn.Module):
    """The weighted sum of the configured terms, and the critics' objective.

    Args:
        weights: ``{name: weight}``; names from :data:`LOSSES`, weights >= 0 (zero-weight terms are
            still computed and logged but do not train).
        network: the network the terms apply to.
        options: shared settings.

    Raises:
        ValueError: for an unknown name, a negative weight, no term with positive weight, or a term
            that does not apply to the architecture.
    """

    def __init__(self, weights: Mapping[str, float], network: INN | CINN, options: LossOptions | None = None) -> None:
        super().__init__()
        options = options or LossOptions()
        arch = architecture_of(network)
        for name, weight in weights.items():
            if name not in LOSSES:
                raise ValueError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}")
            if LOSSES[name].architectures and arch not in LOSSES[name].architectures:
                raise ValueError(f"loss {name!r} does not apply to the {arch!r} architecture")
            if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                raise ValueError(f"loss {name!r}: weight must be a finite number >= 0, got {weight!r}")
        if not any(w > 0 for w in weights.values()):
            raise ValueError(f"at least one loss needs a positive weight, got {dict(weights)}")
        self.weights = {name: float(w) for name, w in weights.items()}
        self.terms = nn.ModuleDict({name: LOSSES[name](network, options) for name in weights})

    @property
    def has_critic(self) -> bool:
        """Whether any term trains a critic."""
        return any(term.adversarial for term in self.terms.values())

    def critic_parameters(self) -> list[nn.Parameter]:
        """Parameters of every critic (for the critic optimizer)."""
        return [p for term in self.terms.values() if term.adversarial for p in term.parameters()]

    def generator_loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        """Weighted total to minimize and the value of each term.

        Critic parameters get no gradient from this.
        """
        critics = self.critic_parameters()
        for p in critics:
            p.requires_grad_(False)
        try:
            values = {name: term(ctx) for name, term in self.terms.items()}
        finally:
            for p in critics:
                p.requires_grad_(True)
        total = sum(self.weights[name] * value for name, value in values.items())
        return total, {name: float(value.detach()) for name, value in values.items()}

    def critic_loss(self, ctx: StepContext) -> Tensor:
        """Sum over adversarial terms of the negated f-divergence bounds (to minimize)."""
        return sum(term.critic_loss(ctx) for term in self.terms.values() if term.adversarial)

    def score(self, values: Mapping[str, float]) -> float | None:
        """Early-stopping score: weighted sum of the non-adversarial terms.

        ``None`` when every weighted term is adversarial: the value of an f-divergence bound
        depends on the critic of the moment and does not rank epochs, so such runs keep their last
        weights and do not stop early.
        """
        plain = [name for name, term in self.terms.items() if not term.adversarial and self.weights[name] > 0]
        if not plain:
            return None
        return sum(self.weights[name] * values[name] for name in plain)
