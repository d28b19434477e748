"""Invertible building blocks with exact inverses and log-determinants.

Contract shared by every block (checked by ``tests/acoustic_inv/test_blocks.py``):

- ``block.dim`` is the size of the vectors it maps, ``block.cond_dim`` the size of the condition
  ``c`` it needs (0: unconditioned). Both are checked when the block is built.
- ``block(u, c=None) -> (v, logdet)`` maps ``u`` of shape (n, dim) to ``v`` of shape (n, dim) with
  ``logdet = log|det dv/du|`` of shape (n,).
- ``block.inverse(v, c=None) -> (u, logdet)`` is the exact inverse, with ``logdet = log|det du/dv|``
  (the negative of the forward one at the matching point).
- ``c`` is a tensor of shape (n, cond_dim), passed as is (no list wrapping); a conditioned block
  refuses ``c=None`` and an unconditioned one refuses a ``c``.

Blocks are plain :class:`torch.nn.Module` objects; their state (including fixed permutations and the
ActNorm initialization flag) lives in the ``state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import zuko.transforms
from torch import Tensor, nn

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "InvertibleBlock",
    "InvertibleSequential",
    "Permutation",
    "coupling_stack",
    "mlp",
    "soft_clamp",
]


def soft_clamp(raw: Tensor, clamp: float) -> Tensor:
    """Smoothly limits a log-scale to ``(-clamp, clamp)``: ``clamp * 2/pi * atan(raw / clamp)``.

    Near zero it is linear with slope 2/pi, so small scales train as if unclamped (the FrEIA GLOW
    coupling convention).
    """
    return clamp * (2.0 / math.pi) * torch.atan(raw / clamp)


def mlp(in_dim: int, out_dim: int, hidden: int, depth: int, *, zero_last: bool = False) -> nn.Sequential:
    """A fully connected ReLU network with ``depth`` hidden layers of width ``hidden``.

    Args:
        in_dim: input size.
        out_dim: output size.
        hidden: hidden width (>= 1).
        depth: number of hidden layers (>= 1).
        zero_last: start the last layer at zero (so a coupling block starts as the identity).
    """
    if min(in_dim, out_dim, hidden, depth) < 1:
        raise ValueError(
            f"mlp sizes must be >= 1, got in_dim={in_dim}, out_dim={out_dim}, hidden={hidden}, depth={depth}"
        )
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), nn.ReLU()]
    last = nn.Linear(hidden, out_dim)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class InvertibleBlock(nn.Module):
    """Base class: states the shape contract and checks inputs.

    Args:
        dim: size of the vectors mapped (>= 1).
        cond_dim: size of the condition (>= 0; 0 means unconditioned).
    """

    def __init__(self, dim: int, cond_dim: int = 0) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{type(self).__name__}: dim must be an int >= 1, got {dim!r}")
        if not isinstance(cond_dim, int) or cond_dim < 0:
            raise ValueError(f"{type(self).__name__}: cond_dim must be an int >= 0, got {cond_dim!r}")
        self.dim = dim
        self.cond_dim = cond_dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}, cond_dim={self.cond_dim}"

    def _check(self, u: Tensor, c: Tensor | None) -> None:
        if u.ndim != 2 or u.shape[1] != self.dim:
            raise ValueError(f"{type(self).__name__}: expected input of shape (n, {self.dim}), got {tuple(u.shape)}")
        if self.cond_dim == 0:
            if c is not None:
                raise ValueError(f"{type(self).__name__}: block is unconditioned but a condition c was given")
        elif c is None:
            raise ValueError(f"{type(self).__name__}: block needs a condition c of shape (n, {self.cond_dim})")
        elif c.ndim != 2 or c.shape != (u.shape[0], self.cond_dim):
            raise ValueError(
                f"{type(self).__name__}: expected condition of shape ({u.shape[0]}, {self.cond_dim}), "
                f"got {tuple(c.shape)}"
            )

    def forward(self, u: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        """Maps ``u`` (n, dim) to ``(v, log|det dv/du|)`` with shapes (n, dim), (n,)."""
        raise NotImplementedError

    def inverse(self, v: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        """Maps ``v`` (n, dim) back to ``(u, log|det du/dv|)`` with shapes (n, dim), (n,)."""
        raise NotImplementedError


class AffineCoupling(InvertibleBlock):
    """GLOW-style affine coupling: both halves are transformed, one after the other.

    With ``u = [u1, u2]`` (``u1`` the first ``dim // 2`` entries)::

        v2 = u2 * exp(s2(u1, c)) + t2(u1, c)
        v1 = u1 * exp(s1(v2, c)) + t1(v2, c)

    and the log-scales soft-clamped to ``(-clamp, clamp)`` (:func:`soft_clamp`), as in Kingma &
    Dhariwal (2018, "Glow") and Ardizzone et al. (2019, "Guided image generation with conditional
    invertible neural networks"). The subnetworks start at zero, so the block starts as the identity.

    With ``dim == 1`` there is no first half: the single entry gets an affine map that depends on
    ``c`` only, so a condition is then required.

    Args:
        dim: vector size (>= 2, or 1 with ``cond_dim >= 1``).
        cond_dim: condition size (>= 0).
        hidden: subnetwork hidden width.
        depth: subnetwork hidden layers.
        clamp: bound on each log-scale (> 0).
    """

    def __init__(self, dim: int, cond_dim: int = 0, hidden: int = 128, depth: int = 2, clamp: float = 2.0) -> None:
        super().__init__(dim, cond_dim)
        if dim == 1 and cond_dim == 0:
            raise ValueError("AffineCoupling: dim=1 needs a condition (cond_dim >= 1); nothing to couple on")
        if not clamp > 0:
            raise ValueError(f"AffineCoupling: clamp must be > 0, got {clamp!r}")
        self.clamp = float(clamp)
        self.split = dim // 2
        n1, n2 = self.split, dim - self.split
        self.net2 = mlp(n1 + cond_dim, 2 * n2, hidden, depth, zero_last=True)
        self.net1 = mlp(n2 + cond_dim, 2 * n1, hidden, depth, zero_last=True) if n1 > 0 else None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, clamp={self.clamp}"

    def _scale_shift(self, net: nn.Module, given: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        inp = given if c is None else torch.cat([given, c], dim=1)
        raw_s, t = net(inp).chunk(2, dim=1)
        return soft_clamp(raw_s, self.clamp), t

    def forward(self, u: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(u, c)
        u1, u2 = u[:, : self.split], u[:, self.split :]
        s2, t2 = self._scale_shift(self.net2, u1, c)
        v2 = u2 * torch.exp(s2) + t2
        logdet = s2.sum(1)
        if self.net1 is None:
            return v2, logdet
        s1, t1 = self._scale_shift(self.net1, v2, c)
        v1 = u1 * torch.exp(s1) + t1
        return torch.cat([v1, v2], dim=1), logdet + s1.sum(1)

    def inverse(self, v: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(v, c)
        v1, v2 = v[:, : self.split], v[:, self.split :]
        logdet = v.new_zeros(v.shape[0])
        if self.net1 is not None:
            s1, t1 = self._scale_shift(self.net1, v2, c)
            u1 = (v1 - t1) * torch.exp(-s1)
            logdet = logdet - s1.sum(1)
        else:
            u1 = v1
        s2, t2 = self._scale_shift(self.net2, u1, c)
        u2 = (v2 - t2) * torch.exp(-s2)
        return torch.cat([u1, u2], dim=1), logdet - s2.sum(1)


class Permutation(InvertibleBlock):
    """A fixed random permutation of the entries, drawn from ``seed`` and kept as a buffer.

    The permutation itself is zuko's :class:`zuko.transforms.PermutationTransform`; this block adds
    the condition-aware interface. A condition, if the stack passes one, is refused unless
    ``cond_dim`` says so (then it is accepted and ignored).

    Args:
        dim: vector size (>= 1).
        seed: seed of the permutation (the same seed gives the same permutation everywhere).
        cond_dim: size of the (ignored) condition.
    """

    def __init__(self, dim: int, seed: int = 0, cond_dim: int = 0) -> None:
        super().__init__(dim, cond_dim)
        generator = torch.Generator().manual_seed(int(seed))
        self.register_buffer("order", torch.randperm(dim, generator=generator))

    def forward(self, u: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(u, c)
        return zuko.transforms.PermutationTransform(self.order).call_and_ladj(u)

    def inverse(self, v: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(v, c)
        return zuko.transforms.PermutationTransform(self.order).inv.call_and_ladj(v)


class ActNorm(InvertibleBlock):
    """Per-entry affine normalization ``v = (u + bias) * exp(log_scale)`` (Kingma & Dhariwal 2018).

    Data-dependent initialization: the first forward call in training mode sets ``bias`` and
    ``log_scale`` so that that batch comes out with zero mean and unit variance per entry. The
    ``initialized`` flag is a buffer, so a loaded model is not re-initialized.

    Args:
        dim: vector size (>= 1).
        cond_dim: size of the (ignored) condition.
    """

    def __init__(self, dim: int, cond_dim: int = 0) -> None:
        super().__init__(dim, cond_dim)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, u: Tensor) -> None:
        """Sets the parameters from a batch ``u`` of shape (n, dim), n >= 2."""
        if u.shape[0] < 2:
            raise ValueError(f"ActNorm: data-dependent initialization needs >= 2 samples, got {u.shape[0]}")
        std = u.std(dim=0).clamp_min(1e-6)
        self.bias.copy_(-u.mean(dim=0))
        self.log_scale.copy_(-torch.log(std))
        self.initialized.fill_(True)

    def forward(self, u: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(u, c)
        if self.training and not bool(self.initialized):
            self.initialize(u.detach())
        v = (u + self.bias) * torch.exp(self.log_scale)
        return v, self.log_scale.sum().expand(u.shape[0])

    def inverse(self, v: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(v, c)
        u = v * torch.exp(-self.log_scale) - self.bias
        return u, (-self.log_scale.sum()).expand(v.shape[0])


class InvertibleSequential(InvertibleBlock):
    """Blocks applied in order; log-determinants add up.

    Every block must share ``dim``; each gets the condition only if its ``cond_dim`` is non-zero.

    Args:
        blocks: the blocks, first applied first.
    """

    def __init__(self, blocks: Sequence[InvertibleBlock]) -> None:
        if len(blocks) == 0:
            raise ValueError("InvertibleSequential: needs at least one block")
        dims = {b.dim for b in blocks}
        if len(dims) != 1:
            raise ValueError(f"InvertibleSequential: blocks disagree on dim: {sorted(dims)}")
        cond_dims = {b.cond_dim for b in blocks} - {0}
        if len(cond_dims) > 1:
            raise ValueError(f"InvertibleSequential: blocks disagree on cond_dim: {sorted(cond_dims)}")
        super().__init__(dims.pop(), cond_dims.pop() if cond_dims else 0)
        self.blocks = nn.ModuleList(blocks)

    def forward(self, u: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(u, c)
        logdet = u.new_zeros(u.shape[0])
        for block in self.blocks:
            u, ld = block(u, c if block.cond_dim else None)
            logdet = logdet + ld
        return u, logdet

    def inverse(self, v: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(v, c)
        logdet = v.new_zeros(v.shape[0])
        for block in reversed(self.blocks):
            v, ld = block.inverse(v, c if block.cond_dim else None)
            logdet = logdet + ld
        return v, logdet


def coupling_stack(
    dim: int,
    cond_dim: int,
    n_blocks: int,
    hidden: int,
    depth: int,
    clamp: float,
    actnorm: bool,
    seed: int,
) -> InvertibleSequential:
    """``n_blocks`` times [ActNorm (optional), AffineCoupling, Permutation], permutations seeded.

    Args:
        dim: vector size.
        cond_dim: condition size fed to every coupling (0: none).
        n_blocks: number of coupling blocks (>= 1).
        hidden: subnetwork width.
        depth: subnetwork hidden layers.
        clamp: soft clamp of the log-scales.
        actnorm: put an ActNorm before each coupling.
        seed: seed of the permutations (block k uses ``seed * 1000 + k``).
    """
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
    blocks: list[InvertibleBlock] = []
    for k in range(n_blocks):
        if actnorm:
            blocks.append(ActNorm(dim))
        blocks.append(AffineCoupling(dim, cond_dim, hidden, depth, clamp))
        if dim > 1:
            blocks.append(Permutation(dim, seed=seed * 1000 + k))
    return InvertibleSequential(blocks)
