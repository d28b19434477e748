"""The two invertible architectures and the trained-posterior API.

- :class:`INN`: Ardizzone et al. (2018, "Analyzing inverse problems with invertible neural
  networks"). One bijection between the parameter side ``[theta, (noise), pad]`` and the observation
  side ``[y, z]`` of equal size. The forward direction predicts the observation ``y`` (the
  standardized features ``x``); the inverse direction, fed the observed ``y`` and ``z ~ N(0, I)``,
  draws posterior samples of ``theta``. Observation noise enters in one of two ways
  (``noise_mode``):

  * ``"theta_pad"`` (as in the VINA code): the parameter side carries the noise realization that
    made ``y``, ``n_noise`` entries: the simulator's own random variables when the data come with
    them (:class:`~acoustic_inv.sources.InMemorySource` ``noise=``, standardized by the trainer),
    followed by the unit-normal noise ``e`` (one entry per feature) that the trainer adds to ``x``
    when ``noise_std > 0``. The forward map ``[theta, noise, pad] -> y`` is then deterministic and
    can reproduce the noisy ``y`` exactly, and the inverse draws from ``p(theta, noise | y)``, whose
    ``theta`` marginal is the posterior. This works for any simulator, additive noise or not, as
    long as its random variables are known for each training pair;
  * ``"y"``: the parameter side carries only ``theta`` and padding; the noise is only on the
    observed ``y``. The forward map can then at best predict the conditional mean of ``y``, and the
    squared-error and maximum-likelihood losses fit that deterministic map: the inverse collapses
    onto ``theta = f^-1(y)`` and the posterior spread is lost (on sbibm's gaussian_linear, standard
    deviations of 0.02 to 0.04 against the true 0.22). Use it only with losses that compare
    distributions on the ``theta`` side (``fdiv_inverse``, ``mmd_theta``) or for noise-free data.

  Padding entries (if the sizes need them) hold small Gaussian noise of standard deviation
  ``pad_std``, so that the parameter-side distribution has a density.

- :class:`CINN`: Ardizzone et al. (2019, "Guided image generation with conditional invertible
  neural networks"). A bijection ``theta <-> z`` of size ``d`` whose couplings are conditioned on
  an embedding ``h(x)`` (an MLP trained jointly), trained by maximum likelihood. Given ``x`` it
  yields a :class:`torch.distributions.Distribution` over ``theta`` (zuko's
  :class:`~zuko.distributions.NormalizingFlow`).

Both follow the block contract of :mod:`acoustic_inv.blocks` (``forward(u, c) -> (v, logdet)``,
``inverse(v, c) -> (u, logdet)``) on standardized quantities. :class:`PosteriorModel` wraps a network
with the fitted transforms and answers in physical units; :class:`EnsembleModel` pools several such
models trained with different seeds into one equal-weight mixture (a deep ensemble).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Transform, constraints
from zuko.distributions import DiagNormal, NormalizingFlow
from zuko.transforms import ComposedTransform

from acoustic_inv.blocks import InvertibleBlock, coupling_stack, mlp
from acoustic_inv.errors import UserError
from acoustic_inv.transforms import ThetaTransform, XTransform

__all__ = ["CINN", "INN", "NOISE_MODES", "EnsembleModel", "PosteriorModel", "UniformMixture"]

NOISE_MODES = ("theta_pad", "y")
NoiseMode = Literal["theta_pad", "y"]


class INN(InvertibleBlock):
    """Invertible network with latent padding between ``[theta, (noise), pad]`` and ``[y, z]``.

    Sizes: ``dim = n_features + latent_dim``; the parameter side holds ``n_params`` parameters,
    ``n_noise`` noise entries (``"theta_pad"`` mode only), and the rest padding.

    Args:
        n_params: number of parameters d (>= 1).
        n_features: number of observation features m (>= 1).
        latent_dim: size of ``z``; default ``max(d, d + n_noise - m)``, the smallest size >= d
            that holds the parameter side without padding. Must leave a non-negative padding size.
        noise_mode: ``"theta_pad"`` or ``"y"`` (see the module docstring).
        n_noise: noise entries on the parameter side in ``"theta_pad"`` mode (>= 1; default m, the
            trainer's additive noise alone); must be 0 or ``None`` in ``"y"`` mode.
        pad_std: standard deviation of the padding noise (> 0), standardized units.
        n_blocks: coupling blocks.
        hidden: subnetwork width.
        depth: subnetwork hidden layers.
        clamp: soft clamp of the log-scales.
        actnorm: ActNorm before each coupling.
        seed: seed of the permutations.
    """

    def __init__(
        self,
        n_params: int,
        n_features: int,
        latent_dim: int | None = None,
        noise_mode: NoiseMode = "theta_pad",
        pad_std: float = 0.01,
        n_blocks: int = 6,
        hidden: int = 128,
        depth: int = 2,
        clamp: float = 2.0,
        actnorm: bool = True,
        seed: int = 0,
        n_noise: int | None = None,
    ) -> None:
        if not isinstance(n_params, int) or n_params < 1:
            raise ValueError(f"INN: n_params must be an int >= 1, got {n_params!r}")
        if not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"INN: n_features must be an int >= 1, got {n_features!r}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"INN: noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise_mode == "theta_pad":
            n_noise = n_features if n_noise is None else n_noise
            if isinstance(n_noise, bool) or not isinstance(n_noise, int) or n_noise < 1:
                raise ValueError(f"INN: n_noise must be an int >= 1 in theta_pad mode, got {n_noise!r}")
        elif n_noise:
            raise ValueError(f"INN: noise_mode 'y' carries no noise on the parameter side, got n_noise={n_noise!r}")
        else:
            n_noise = 0
        latent_dim = max(n_params, n_params + n_noise - n_features) if latent_dim is None else latent_dim
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"INN: latent_dim must be an int >= 1, got {latent_dim!r}")
        if not pad_std > 0:
            raise ValueError(f"INN: pad_std must be > 0, got {pad_std!r}")
        dim = n_features + latent_dim
        n_pad = dim - n_params - n_noise
        if n_pad < 0:
            raise ValueError(
                f"INN: latent_dim={latent_dim} is too small: the parameter side needs {n_params + n_noise} "
                f"entries but the observation side has only {dim}; use latent_dim >= {n_params + n_noise - n_features}"
            )
        super().__init__(dim, 0)
        self.n_params = n_params
        self.n_features = n_features
        self.latent_dim = latent_dim
        self.noise_mode = noise_mode
        self.n_noise = n_noise
        self.n_pad = n_pad
        self.pad_std = float(pad_std)
        self.stack = coupling_stack(dim, 0, n_blocks, hidden, depth, clamp, actnorm, seed)

    def extra_repr(self) -> str:
        return (
            f"n_params={self.n_params}, n_features={self.n_features}, latent_dim={self.latent_dim}, "
            f"noise_mode={self.noise_mode!r}, n_noise={self.n_noise}, n_pad={self.n_pad}"
        )

    def forward(self, u: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Parameter side ``u`` (n, dim) to observation side ``[y, z]`` (n, dim), with log|det|."""
        self._check(u, c)
        return self.stack(u)

    def inverse(self, v: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Observation side ``[y, z]`` (n, dim) to parameter side (n, dim), with log|det|."""
        self._check(v, c)
        return self.stack.inverse(v)

    def pack_params(self, theta: Tensor, noise: Tensor | None = None) -> Tensor:
        """Builds the parameter side ``[theta, noise, pad]``.

        Args:
            theta: shape (n, d), standardized.
            noise: shape (n, n_noise), the standardized noise realization (see the module
                docstring); required in ``"theta_pad"`` mode, refused otherwise.

        Returns:
            Shape (n, dim); padding drawn from N(0, pad_std^2).
        """
        parts = [theta]
        if self.noise_mode == "theta_pad":
            if noise is None or noise.shape != (theta.shape[0], self.n_noise):
                got = None if noise is None else tuple(noise.shape)
                raise ValueError(
                    f"INN: theta_pad mode needs noise of shape ({theta.shape[0]}, {self.n_noise}), got {got}"
                )
            parts.append(noise)
        elif noise is not None:
            raise ValueError("INN: noise is only carried on the parameter side in theta_pad mode")
        if self.n_pad:
            parts.append(self.pad_std * torch.randn(theta.shape[0], self.n_pad, dtype=theta.dtype, device=theta.device))
        return torch.cat(parts, dim=1)

    def split_obs(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """Splits the observation side (n, dim) into ``y`` (n, m) and ``z`` (n, latent_dim)."""
        return v[:, : self.n_features], v[:, self.n_features :]

    def sample_params(self, x: Tensor, n: int) -> Tensor:
        """Posterior draws of standardized ``theta`` given standardized observations.

        Args:
            x: shape (b, m), standardized.
            n: draws per observation.

        Returns:
            Shape (n, b, d).
        """
        b = x.shape[0]
        y = x.unsqueeze(0).expand(n, b, self.n_features).reshape(n * b, self.n_features)
        z = torch.randn(n * b, self.latent_dim, dtype=x.dtype, device=x.device)
        u, _ = self.inverse(torch.cat([y, z], dim=1))
        return u[:, : self.n_params].reshape(n, b, self.n_params)


class CINN(InvertibleBlock):
    """Conditional invertible network ``theta <-> z`` given ``x`` through a learned embedding.

    ``forward(theta, x)`` returns ``(z, log|det dz/dtheta|)``; ``inverse(z, x)`` goes back. ``x`` is
    the standardized observation (n, m); it is embedded by an MLP to ``embed_dim`` numbers that
    condition every coupling.

    Args:
        n_params: number of parameters d (>= 1).
        n_features: number of observation features m (>= 1).
        embed_dim: size of the embedding of ``x``.
        n_blocks: coupling blocks.
        hidden: width of the coupling subnetworks and of the embedding net.
        depth: hidden layers of the coupling subnetworks and of the embedding net.
        clamp: soft clamp of the log-scales.
        actnorm: ActNorm before each coupling.
        seed: seed of the permutations.
    """

    def __init__(
        self,
        n_params: int,
        n_features: int,
        embed_dim: int = 32,
        n_blocks: int = 6,
        hidden: int = 128,
        depth: int = 2,
        clamp: float = 2.0,
        actnorm: bool = True,
        seed: int = 0,
    ) -> None:
        if not isinstance(n_params, int) or n_params < 1:
            raise ValueError(f"CINN: n_params must be an int >= 1, got {n_params!r}")
        if not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"CINN: n_features must be an int >= 1, got {n_features!r}")
        if not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"CINN: embed_dim must be an int >= 1, got {embed_dim!r}")
        super().__init__(n_params, n_features)
        self.n_params = n_params
        self.n_features = n_features
        self.embed_dim = embed_dim
        self.embed = mlp(n_features, embed_dim, hidden, depth)
        self.flow = coupling_stack(n_params, embed_dim, n_blocks, hidden, depth, clamp, actnorm, seed)

    def forward(self, u: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``theta`` (n, d) to ``z`` (n, d) given ``x`` = ``c`` (n, m), with log|det dz/dtheta|."""
        self._check(u, c)
        return self.flow(u, self.embed(c))

    def inverse(self, v: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``z`` (n, d) to ``theta`` (n, d) given ``x`` = ``c`` (n, m), with log|det dtheta/dz|."""
        self._check(v, c)
        return self.flow.inverse(v, self.embed(c))

    def conditioned_transform(self, x: Tensor) -> Transform:
        """The map standardized ``theta -> z`` for fixed observations, as a torch ``Transform``.

        Args:
            x: shape (m,) or (b, m), standardized.
        """
        return _ConditionedFlow(self, self.embed(x))

    def sample_params(self, x: Tensor, n: int) -> Tensor:
        """Posterior draws of standardized ``theta``: shape (n, b, d) for ``x`` of shape (b, m)."""
        b = x.shape[0]
        z = torch.randn(n * b, self.n_params, dtype=x.dtype, device=x.device)
        self._check(z[:b], x)
        # Embed each observation once, not once per draw: the embedding is a deterministic function
        # of x, and for one observation it would otherwise cost about a quarter of the sampling time.
        h = self.embed(x)
        h = h.unsqueeze(0).expand(n, b, self.embed_dim).reshape(n * b, self.embed_dim)
        return self.flow.inverse(z, h)[0].reshape(n, b, self.n_params)


class _ConditionedFlow(Transform):
    """A :class:`CINN` with its embedding fixed, standardized ``theta -> z``, any batch shape.

    Inputs are cast to the network's dtype and outputs back to the input's, so float64 physical
    parameters can flow through a float32 network.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, cinn: CINN, h: Tensor) -> None:
        super().__init__()
        self.cinn = cinn
        self.h = h

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ConditionedFlow) and other.cinn is self.cinn and other.h is self.h

    def _run(self, u: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        batch = torch.broadcast_shapes(u.shape[:-1], self.h.shape[:-1])
        u = u.expand(*batch, u.shape[-1])
        h = self.h.expand(*batch, self.h.shape[-1]).reshape(-1, self.h.shape[-1])
        flat = u.reshape(-1, u.shape[-1]).to(self.h.dtype)
        step = self.cinn.flow.inverse if inverse else self.cinn.flow
        out, logdet = step(flat, h)
        return out.reshape(u.shape).to(u.dtype), logdet.reshape(batch).to(u.dtype)

    def _call(self, x: Tensor) -> Tensor:
        return self._run(x, inverse=False)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        return self._run(y, inverse=True)[0]

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self._run(x, inverse=False)[1]

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(x, inverse=False)


class PosteriorModel(nn.Module):
    """A trained network with its fitted transforms: posteriors in physical units.

    Args:
        network: an :class:`INN` or :class:`CINN`.
        theta_transform: fitted parameter transform.
        x_transform: fitted observation transform.
        param_names: names of the d parameters.
        param_units: units of the d parameters.
    """

    def __init__(
        self,
        network: INN | CINN,
        theta_transform: ThetaTransform,
        x_transform: XTransform,
        param_names: Sequence[str],
        param_units: Sequence[str],
    ) -> None:
        super().__init__()
        d = network.n_params
        if theta_transform.dim != d or x_transform.dim != network.n_features:
            raise ValueError(
                f"transform sizes ({theta_transform.dim} parameters, {x_transform.dim} features) do not match "
                f"the network ({d} parameters, {network.n_features} features)"
            )
        if len(param_names) != d or len(param_units) != d:
            raise ValueError(f"need {d} parameter names and units, got {len(param_names)} and {len(param_units)}")
        self.network = network
        self.theta_transform = theta_transform
        self.x_transform = x_transform
        self.param_names = tuple(param_names)
        self.param_units = tuple(param_units)

    @property
    def architecture(self) -> str:
        """``"inn"`` or ``"cinn"``."""
        return "cinn" if isinstance(self.network, CINN) else "inn"

    @property
    def n_features(self) -> int:
        """Number m of observation features the network takes."""
        return int(self.network.n_features)

    def _net_dtype_device(self) -> tuple[torch.dtype, torch.device]:
        p = next(self.network.parameters())
        return p.dtype, p.device

    def _standardize_x(self, x: Tensor | np.ndarray) -> tuple[Tensor, bool]:
        dtype, device = self._net_dtype_device()
        x_t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
        single = x_t.ndim == 1
        if x_t.ndim not in (1, 2) or x_t.shape[-1] != self.network.n_features:
            raise UserError(
                f"observations must have shape ({self.network.n_features},) or (b, {self.network.n_features}), "
                f"got {tuple(x_t.shape)}"
            )
        x_std = self.x_transform(x_t.to(device=device, dtype=torch.float64)).to(dtype)
        return (x_std.unsqueeze(0) if single else x_std), single

    @torch.no_grad()
    def sample(self, x: Tensor | np.ndarray, n: int, *, seed: int | None = None) -> Tensor:
        """Posterior draws in physical units.

        Args:
            x: one observation, shape (m,), or a batch, shape (b, m), in the features' units.
            n: number of draws per observation.
            seed: seed for the draws (``None``: torch's global generator).

        Returns:
            float64 tensor of shape (n, d) for one observation, (n, b, d) for a batch, in the
            parameters' units (``param_units``).
        """
        if not isinstance(n, int) or n < 1:
            raise UserError(f"number of draws must be an int >= 1, got {n!r}")
        was_training = self.training
        self.eval()
        try:
            x_std, single = self._standardize_x(x)
            with torch.random.fork_rng(devices=[x_std.device] if x_std.device.type == "cuda" else [], enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                u = self.network.sample_params(x_std, n)
        finally:
            self.train(was_training)
        theta = self.theta_transform.inverse(u.to(torch.float64)).cpu()
        return theta[:, 0] if single else theta

    def posterior(self, x: Tensor | np.ndarray) -> Distribution:
        """The posterior over physical ``theta`` as a torch distribution (cINN only).

        Args:
            x: shape (m,) (event shape (d,)) or (b, m) (batch shape (b,)), in the features' units.

        Returns:
            A distribution with ``sample``, ``rsample`` and exact ``log_prob`` (float64).

        Raises:
            UserError: for the INN, whose density over ``theta`` alone is not exact.
        """
        if not isinstance(self.network, CINN):
            raise UserError(
                "posterior densities need the 'cinn' architecture: the padded INN does not give an exact "
                "log_prob over theta alone"
            )
        self.eval()
        x_std, single = self._standardize_x(x)
        if single:
            x_std = x_std[0]
        transform = ComposedTransform(
            self.theta_transform.as_distribution_transform(),
            self.network.conditioned_transform(x_std),
        )
        shape = (*x_std.shape[:-1], self.network.n_params)
        base = DiagNormal(
            torch.zeros(shape, dtype=torch.float64, device=x_std.device),
            torch.ones(shape, dtype=torch.float64, device=x_std.device),
        )
        return NormalizingFlow(transform, base)

    def log_prob(self, theta: Tensor | np.ndarray, x: Tensor | np.ndarray) -> Tensor:
        """Exact posterior log-density ``log p(theta | x)`` in physical units (cINN only).

        Args:
            theta: shape (..., d), in the parameters' units; for a batch of observations the
                trailing batch dimension must match (or broadcast to) b.
            x: shape (m,) or (b, m), in the features' units.

        Returns:
            float64 tensor of shape ``theta.shape[:-1]`` (broadcast with the batch), in
            log(1 / parameter units).
        """
        distribution = self.posterior(x)
        device = distribution.base.base_dist.loc.device
        theta_t = torch.as_tensor(np.asarray(theta) if not isinstance(theta, Tensor) else theta)
        with torch.no_grad():
            return distribution.log_prob(theta_t.to(device=device, dtype=torch.float64)).cpu()


class UniformMixture(Distribution):
    """Equal-weight mixture of K distributions with the same batch and event shapes.

    ``log_prob`` is ``logsumexp_k log p_k(theta) - log K``; ``sample`` draws each value's component
    uniformly at random. There is no ``rsample`` (the component choice is discrete).

    Args:
        components: the K >= 1 distributions.

    Raises:
        ValueError: for no components or components of different shapes.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, components: Sequence[Distribution]) -> None:
        components = list(components)
        if not components:
            raise ValueError("a mixture needs at least one component")
        batch, event = components[0].batch_shape, components[0].event_shape
        for k, component in enumerate(components[1:], start=1):
            if component.batch_shape != batch or component.event_shape != event:
                raise ValueError(
                    f"component {k} has batch/event shape {tuple(component.batch_shape)}/{tuple(component.event_shape)}, "
                    f"component 0 {tuple(batch)}/{tuple(event)}"
                )
        self.components = components
        super().__init__(batch, event, validate_args=False)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return self.components[0].support

    def sample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape)
        with torch.no_grad():
            draws = torch.stack([c.sample(shape) for c in self.components])  # (K, *shape, *batch, *event)
            which = torch.randint(len(self.components), shape + self.batch_shape, device=draws.device)
            index = which.reshape(1, *which.shape, *([1] * len(self.event_shape)))
            index = index.expand(1, *draws.shape[1:])
            return draws.gather(0, index)[0]

    def log_prob(self, value: Tensor) -> Tensor:
        logs = torch.stack([c.log_prob(value) for c in self.components])
        return torch.logsumexp(logs, dim=0) - float(np.log(len(self.components)))


def _member_seed(seed: int, member: int) -> int:
    """Independent draw seed of ensemble member ``member`` for a call with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(member)]).generate_state(1)[0])


class EnsembleModel(nn.Module):
    """A deep ensemble: K trained posterior models pooled as an equal-weight mixture.

    Lakshminarayanan, Pritzel and Blundell (2017, "Simple and scalable predictive uncertainty
    estimation using deep ensembles"): networks trained alike from different random seeds disagree
    where the data leave them uncertain, so their mixture is better calibrated than any one of them
    (a single maximum-likelihood flow trained on a finite set of simulations is typically
    overconfident), and its median is a better point estimate.

    Args:
        members: K >= 1 :class:`PosteriorModel` with the same parameters (names and units) and
            feature count.

    Raises:
        ValueError: for no members or members that disagree on parameters or features.
    """

    def __init__(self, members: Sequence[PosteriorModel]) -> None:
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        for k, member in enumerate(members[1:], start=1):
            if (member.param_names, member.param_units) != (first.param_names, first.param_units):
                raise ValueError(
                    f"member {k} has parameters {list(member.param_names)} ({list(member.param_units)}), member 0 "
                    f"{list(first.param_names)} ({list(first.param_units)})"
                )
            if member.n_features != first.n_features:
                raise ValueError(f"member {k} takes {member.n_features} features, member 0 {first.n_features}")
        self.members = nn.ModuleList(members)
        self.param_names = first.param_names
        self.param_units = first.param_units

    @property
    def architecture(self) -> str:
        """``"ensemble of K <architecture>"``, e.g. ``"ensemble of 3 cinn"``."""
        kinds = sorted({m.architecture for m in self.members})
        return f"ensemble of {len(self.members)} {'/'.join(kinds)}"

    @property
    def n_features(self) -> int:
        """Number m of observation features the members take."""
        return self.members[0].n_features

    @torch.no_grad()
    def sample(self, x: Tensor | np.ndarray, n: int, *, seed: int | None = None) -> Tensor:
        """Posterior draws in physical units, pooled over the members.

        The n draws are split as evenly as possible between the K members (member k gives
        ``n // K`` draws, one more for the first ``n % K``), which is stratified sampling of the
        equal-weight mixture, then put in random order so that any subset is a fair sample.

        Args:
            x: one observation, shape (m,), or a batch, shape (b, m), in the features' units.
            n: number of draws per observation.
            seed: seed for the draws (``None``: torch's global generator).

        Returns:
            float64 tensor of shape (n, d) for one observation, (n, b, d) for a batch.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise UserError(f"number of draws must be an int >= 1, got {n!r}")
        k_members = len(self.members)
        parts = []
        for k, member in enumerate(self.members):
            count = n // k_members + (1 if k < n % k_members else 0)
            if count:
                parts.append(member.sample(x, count, seed=None if seed is None else _member_seed(seed, k)))
        theta = torch.cat(parts, dim=0)
        if seed is None:
            order = torch.randperm(n)
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_member_seed(seed, k_members)))
        return theta[order]

    def posterior(self, x: Tensor | np.ndarray) -> Distribution:
        """The mixture posterior over physical ``theta`` (cINN members only; see
        :meth:`PosteriorModel.posterior`)."""
        return UniformMixture([member.posterior(x) for member in self.members])

    def log_prob(self, theta: Tensor | np.ndarray, x: Tensor | np.ndarray) -> Tensor:
        """Mixture log-density ``log p(theta | x)`` (cINN members only; see :meth:`PosteriorModel.log_prob`)."""
        logs = torch.stack([member.log_prob(theta, x) for member in self.members])
        return torch.logsumexp(logs, dim=0) - float(np.log(len(self.members)))
