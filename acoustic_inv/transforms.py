"""Fitted, invertible pre-processing of parameters ``theta`` and observations ``x``.

Networks train on well-scaled, unbounded numbers. A bounded parameter ``low < theta < high`` is first
mapped to the real line with the logit of its scaled value, ``logit((theta - low) / (high - low))``;
an unbounded one (``low = -inf``, ``high = +inf``) is left as is. The result is then standardized
(zero mean, unit standard deviation on the training split). Observations ``x`` are standardized per
feature.

Both transforms are :class:`torch.nn.Module` objects whose fitted statistics are buffers, so they
travel in a model's ``state_dict`` and are loaded with ``torch.load(weights_only=True)``. The
parameter transform also knows its log-Jacobian, so posterior densities can be given in physical
units, and it can be wrapped as a :class:`torch.distributions.Transform` for use in a distribution.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Transform, constraints

from acoustic_inv.errors import DataError

__all__ = ["RunningMoments", "ThetaTransform", "XTransform"]

# Scaled values are kept this far inside (0, 1): a parameter that sits exactly on its bound (a grid
# corner of a simulated dataset) must not map to an infinite logit.
_EDGE = 1e-9
# A feature whose spread on the training split is below this is constant: scale it by 1, not 1/0.
_MIN_STD = 1e-12


class RunningMoments:
    """Streaming per-column mean and variance (Chan et al. parallel update), in float64.

    Used to fit the transforms on a training split that may not fit in memory.
    """

    def __init__(self, n_columns: int) -> None:
        self.count = 0
        self.mean = np.zeros(n_columns)
        self._m2 = np.zeros(n_columns)

    def update(self, values: np.ndarray) -> None:
        """Adds a block of rows.

        Args:
            values: shape (n, n_columns); must be finite.
        """
        values = np.asarray(values, dtype=np.float64)
        n = values.shape[0]
        if n == 0:
            return
        block_mean = values.mean(axis=0)
        block_m2 = ((values - block_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = block_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self._m2 = self._m2 + block_m2 + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per column, shape (n_columns,)."""
        if self.count == 0:
            raise ValueError("no rows were added")
        return np.sqrt(self._m2 / self.count)


class ThetaTransform(nn.Module):
    """Physical parameters to standardized unbounded values: ``u = (g(theta) - mean) / std``.

    ``g`` is the logit of the scaled value for bounded parameters and the identity for unbounded
    ones. Construct with the bounds, then :meth:`fit` on training parameters (or load a state dict).

    Args:
        low: lower bounds, shape (d,), in the parameters' units; ``-inf`` for none.
        high: upper bounds, shape (d,), same units; ``+inf`` for none. A parameter must have both
            bounds finite or both infinite.
    """

    def __init__(self, low: Iterable[float], high: Iterable[float]) -> None:
        super().__init__()
        low_t = torch.as_tensor(list(low), dtype=torch.float64)
        high_t = torch.as_tensor(list(high), dtype=torch.float64)
        if low_t.ndim != 1 or low_t.shape != high_t.shape or low_t.numel() == 0:
            raise ValueError(
                f"low and high must be 1-d of equal, non-zero length, got shapes "
                f"{tuple(low_t.shape)} and {tuple(high_t.shape)}"
            )
        finite_low, finite_high = torch.isfinite(low_t), torch.isfinite(high_t)
        if not torch.equal(finite_low, finite_high):
            bad = int(torch.nonzero(finite_low != finite_high)[0])
            raise ValueError(
                f"parameter {bad}: bounds must be both finite or both infinite, got "
                f"low={low_t[bad].item()}, high={high_t[bad].item()}"
            )
        if bool((finite_low & (high_t <= low_t)).any()):
            bad = int(torch.nonzero(finite_low & (high_t <= low_t))[0])
            raise ValueError(
                f"parameter {bad}: low must be below high, got low={low_t[bad].item()}, "
                f"high={high_t[bad].item()}"
            )
        self.register_buffer("low", low_t)
        self.register_buffer("high", high_t)
        self.register_buffer("bounded", finite_low)
        self.register_buffer("mean", torch.zeros_like(low_t))
        self.register_buffer("std", torch.ones_like(low_t))

    @property
    def dim(self) -> int:
        """Number of parameters d."""
        return int(self.low.numel())

    def _check(self, theta: Tensor) -> None:
        if theta.shape[-1:] != (self.dim,):
            raise ValueError(f"expected parameters of shape (..., {self.dim}), got {tuple(theta.shape)}")

    def _unbound(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Bounded columns to logits; returns the values and their per-element log-derivative."""
        low = self.low.to(theta)
        width = torch.where(self.bounded, self.high - self.low, torch.ones_like(self.low)).to(theta)
        scaled = ((theta - torch.where(self.bounded, low, torch.zeros_like(low))) / width).clamp(_EDGE, 1 - _EDGE)
        logit = torch.log(scaled) - torch.log1p(-scaled)
        # d logit(p)/d theta = 1 / (width * p * (1 - p))
        log_deriv = -(torch.log(width) + torch.log(scaled) + torch.log1p(-scaled))
        bounded = self.bounded.expand_as(theta)
        values = torch.where(bounded, logit, theta)
        log_deriv = torch.where(bounded, log_deriv, torch.zeros_like(theta))
        return values, log_deriv

    def fit(self, batches: Iterable[np.ndarray | Tensor]) -> ThetaTransform:
        """Sets the standardization from training parameters.

        Args:
            batches: blocks of parameters, each shape (n, d), physical units.

        Returns:
            self.

        Raises:
            DataError: when no rows are given or a value is outside its bounds or not finite.
        """
        moments = RunningMoments(self.dim)
        for block in batches:
            self.partial_fit(moments, block)
        return self.finish_fit(moments)

    def partial_fit(self, moments: RunningMoments, block: np.ndarray | Tensor) -> None:
        """Adds a block (n, d) of training parameters to ``moments`` (for one-pass fitting)."""
        theta = torch.as_tensor(np.asarray(block, dtype=np.float64))
        self._check(theta)
        if not bool(torch.isfinite(theta).all()):
            raise DataError("training parameters contain a NaN or infinite value")
        low, high, bounded = self.low.cpu(), self.high.cpu(), self.bounded.cpu()
        outside = bounded & ((theta < low) | (theta > high))
        if bool(outside.any()):
            column = int(torch.nonzero(outside.any(dim=0))[0])
            raise DataError(
                f"training parameter {column} has values outside its bounds "
                f"[{low[column].item()}, {high[column].item()}]"
            )
        moments.update(self._unbound(theta.to(self.low.device))[0].cpu().numpy())

    def finish_fit(self, moments: RunningMoments) -> ThetaTransform:
        """Sets mean and standard deviation from the accumulated ``moments``; returns self."""
        if moments.count == 0:
            raise DataError("cannot fit the parameter transform: the training split is empty")
        std = np.where(moments.std > _MIN_STD, moments.std, 1.0)
        self.mean.copy_(torch.as_tensor(moments.mean))
        self.std.copy_(torch.as_tensor(std))
        return self

    def forward(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Physical to standardized.

        Args:
            theta: shape (..., d), physical units.

        Returns:
            ``u`` of shape (..., d) (dimensionless) and ``log|det du/dtheta|`` of shape (...,).
        """
        self._check(theta)
        values, log_deriv = self._unbound(theta)
        u = (values - self.mean.to(theta)) / self.std.to(theta)
        logdet = log_deriv.sum(-1) - torch.log(self.std.to(theta)).sum()
        return u, logdet

    def inverse(self, u: Tensor) -> Tensor:
        """Standardized to physical.

        Args:
            u: shape (..., d), dimensionless.

        Returns:
            ``theta`` of shape (..., d), physical units, strictly inside finite bounds.
        """
        self._check(u)
        values = u * self.std.to(u) + self.mean.to(u)
        low, high = self.low.to(u), self.high.to(u)
        width = torch.where(self.bounded, high - low, torch.ones_like(low))
        squashed = torch.where(self.bounded, low, torch.zeros_like(low)) + width * torch.sigmoid(values)
        return torch.where(self.bounded.expand_as(values), squashed, values)

    def as_distribution_transform(self) -> Transform:
        """This transform as a :class:`torch.distributions.Transform` (physical to standardized)."""
        return _TorchThetaTransform(self)


class _TorchThetaTransform(Transform):
    """Adapter so :class:`ThetaTransform` composes with zuko / torch distributions."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, module: ThetaTransform) -> None:
        super().__init__()
        self.module = module

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TorchThetaTransform) and other.module is self.module

    def _call(self, x: Tensor) -> Tensor:
        return self.module(x)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        return self.module.inverse(y)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.module(x)[1]

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.module(x)


class XTransform(nn.Module):
    """Per-feature standardization of observations: ``(x - mean) / std``.

    Args:
        n_features: number of features m.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        self.register_buffer("mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("std", torch.ones(n_features, dtype=torch.float64))

    @property
    def dim(self) -> int:
        """Number of features m."""
        return int(self.mean.numel())

    def fit(self, batches: Iterable[np.ndarray | Tensor]) -> XTransform:
        """Sets mean and standard deviation per feature from training observations.

        Args:
            batches: blocks of observations, each shape (n, m), in the features' units.

        Returns:
            self.

        Raises:
            DataError: when no rows are given or a value is not finite.
        """
        moments = RunningMoments(self.dim)
        for block in batches:
            self.partial_fit(moments, block)
        return self.finish_fit(moments)

    def partial_fit(self, moments: RunningMoments, block: np.ndarray | Tensor) -> None:
        """Adds a block (n, m) of training observations to ``moments`` (for one-pass fitting)."""
        values = np.asarray(block, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.dim:
            raise ValueError(f"expected observations of shape (n, {self.dim}), got {values.shape}")
        if not np.isfinite(values).all():
            raise DataError("training observations contain a NaN or infinite value")
        moments.update(values)

    def finish_fit(self, moments: RunningMoments) -> XTransform:
        """Sets mean and standard deviation from the accumulated ``moments``; returns self."""
        if moments.count == 0:
            raise DataError("cannot fit the observation transform: the training split is empty")
        std = np.where(moments.std > _MIN_STD, moments.std, 1.0)
        self.mean.copy_(torch.as_tensor(moments.mean))
        self.std.copy_(torch.as_tensor(std))
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Standardizes observations.

        Args:
            x: shape (..., m), in the features' units.

        Returns:
            Shape (..., m), dimensionless, in ``x``'s dtype.
        """
        if x.shape[-1:] != (self.dim,):
            raise ValueError(f"expected observations of shape (..., {self.dim}), got {tuple(x.shape)}")
        return ((x.to(torch.float64) - self.mean) / self.std).to(x.dtype)

    def scale_noise(self, noise_std: float) -> Tensor:
        """Standard deviation, per standardized feature, of additive noise of ``noise_std`` x-units.

        Returns:
            Shape (m,), float64.
        """
        return noise_std / self.std


def log_normal_constant(dim: int) -> float:
    """``-dim/2 * log(2 pi)``: the constant of a standard normal log-density in ``dim`` dimensions."""
    return -0.5 * dim * math.log(2 * math.pi)
