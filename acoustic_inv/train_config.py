"""The training configuration: a frozen, validated dataclass, read from TOML or JSON.

A config file holds the fields of :class:`TrainConfig` at top level; ``losses`` is a table
(``[losses]`` in TOML, an object in JSON) of ``name = weight``. Every key not named here is an error
that names the key, and every value is checked (the error names field, value and expectation)::

    architecture = "cinn"
    n_blocks = 6
    lr = 1e-3
    [losses]
    ml_z = 1.0
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from acoustic_inv.errors import ConfigError

__all__ = ["ARCHITECTURES", "DEFAULT_LOSSES", "TrainConfig", "load_train_config"]

ARCHITECTURES = ("inn", "cinn")
LR_SCHEDULES = ("cosine", "plateau", "constant")
DEVICES = ("cpu", "cuda", "auto")

#: Losses used when a config names none.
DEFAULT_LOSSES: dict[str, dict[str, float]] = {
    "cinn": {"ml_z": 1.0},
    "inn": {"mse_y": 50.0, "ml_z": 1.0},
}


@dataclass(frozen=True)
class TrainConfig:
    """How to build and train a network.

    Attributes:
        architecture: ``"cinn"`` (conditional INN, maximum likelihood) or ``"inn"`` (INN with
            latent padding).
        n_blocks: number of coupling blocks.
        hidden_width: width of the coupling subnetworks (and of the cINN embedding net).
        subnet_depth: hidden layers of each subnetwork.
        clamp: soft bound on the coupling log-scales.
        actnorm: put an ActNorm layer before each coupling.
        latent_dim: size of ``z`` for the INN (``None``: the number of parameters); unused by the
            cINN, whose ``z`` has the size of ``theta``.
        embed_dim: size of the cINN's learned embedding of ``x``.
        noise_mode: INN only: ``"theta_pad"`` (the noise realization is carried on the parameter
            side, so the forward map is deterministic: the simulator's own noise variables when
            the data source supplies them, e.g. ``InMemorySource(theta, x, noise=eps)``, and the
            trainer's added noise when ``noise_std > 0``; at least one of the two is needed, which
            :func:`~acoustic_inv.training.fit` checks) or ``"y"`` (noise on the observations only;
            the forward map can only predict the mean of ``x``, so with ``mse_y``/``ml_z`` the
            posterior collapses on noisy data; see :mod:`acoustic_inv.models`).
        noise_std: standard deviation of the Gaussian noise added to ``x`` in each batch, in the
            features' units (0: none; the data are used as they are). It adds to any noise
            already in the data, so set it only for noise-free simulations.
        pad_std: standard deviation of the INN's padding entries (standardized units).
        losses: ``{name: weight}``, names from :data:`acoustic_inv.losses.LOSSES`; empty means
            :data:`DEFAULT_LOSSES` for the architecture.
        f_divergence: divergence of the ``fdiv_*`` terms (``kl``, ``reverse_kl``, ``js``,
            ``pearson``, ``hellinger``, ``gan``).
        critic_hidden_width: width of the critic network.
        critic_depth: hidden layers of the critic.
        critic_lr: critic learning rate.
        critic_steps: critic updates per network update.
        lr: learning rate (Adam).
        weight_decay: Adam weight decay.
        lr_schedule: ``"cosine"`` (to zero over ``epochs``, stepped per epoch), ``"plateau"``
            (halve after ``max(1, patience // 3)`` epochs without validation progress) or
            ``"constant"``.
        batch_size: pairs per batch.
        epochs: maximum number of passes over the training split.
        patience: stop after this many epochs without validation improvement (0: never stop early).
            The validation score is the weighted sum of the non-adversarial losses; a run whose only
            weighted losses are ``fdiv_*`` has no score: it neither stops early nor picks a best
            epoch (it keeps its last weights), since a critic's bound does not rank epochs.
        clip_grad_norm: clip the gradient norm to this (0: no clipping).
        seed: seed of initialization, split, shuffles and draws.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda if available).
        val_fraction: fraction of the pairs held out for validation, in (0, 1).
        shuffle_buffer_chunks: for chunked datasets, chunks shuffled together.
        renoise: for chunked datasets, noise augmentation: fresh SNR and noise each epoch from the
            scenario's noise model, features recomputed from the stored noise-free pressure.
    """

    architecture: str = "cinn"
    n_blocks: int = 6
    hidden_width: int = 128
    subnet_depth: int = 2
    clamp: float = 2.0
    actnorm: bool = True
    latent_dim: int | None = None
    embed_dim: int = 32
    noise_mode: str = "y"
    noise_std: float = 0.0
    pad_std: float = 0.01
    losses: Mapping[str, float] = field(default_factory=dict)
    f_divergence: str = "js"
    critic_hidden_width: int = 128
    critic_depth: int = 2
    critic_lr: float = 1e-3
    critic_steps: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    batch_size: int = 256
    epochs: int = 100
    patience: int = 15
    clip_grad_norm: float = 10.0
    seed: int = 0
    device: str = "cpu"
    val_fraction: float = 0.1
    shuffle_buffer_chunks: int = 4
    renoise: bool = False

    def __post_init__(self) -> None:
        def fail(name: str, expected: str) -> None:
            raise ConfigError(f"TrainConfig.{name} = {getattr(self, name)!r}: expected {expected}")

        def check_int(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                fail(name, f"an integer >= {minimum}")

        def check_float(name: str, minimum: float, *, strict: bool = False, below: float | None = None) -> None:
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and (value > minimum if strict else value >= minimum) and (below is None or value < below)
            if not ok:
                bound = f"{'>' if strict else '>='} {minimum}" + (f" and < {below}" if below is not None else "")
                fail(name, f"a finite number {bound}")

        def check_choice(name: str, choices: tuple[str, ...]) -> None:
            if getattr(self, name) not in choices:
                fail(name, f"one of {list(choices)}")

        check_choice("architecture", ARCHITECTURES)
        for name in ("n_blocks", "hidden_width", "subnet_depth", "embed_dim", "critic_hidden_width",
                     "critic_depth", "critic_steps", "batch_size", "epochs", "shuffle_buffer_chunks"):
            check_int(name, 1)
        check_int("patience", 0)
        check_int("seed", 0)
        if self.latent_dim is not None:
            check_int("latent_dim", 1)
        if not isinstance(self.actnorm, bool):
            fail("actnorm", "true or false")
        if not isinstance(self.renoise, bool):
            fail("renoise", "true or false")
        check_float("clamp", 0.0, strict=True)
        check_float("noise_std", 0.0)
        check_float("pad_std", 0.0, strict=True)
        check_float("critic_lr", 0.0, strict=True)
        check_float("lr", 0.0, strict=True)
        check_float("weight_decay", 0.0)
        check_float("clip_grad_norm", 0.0)
        check_float("val_fraction", 0.0, strict=True, below=1.0)
        check_choice("noise_mode", ("theta_pad", "y"))
        check_choice("lr_schedule", LR_SCHEDULES)
        check_choice("device", DEVICES)
        from acoustic_inv.losses import F_DIVERGENCES, LOSSES

        check_choice("f_divergence", tuple(sorted(F_DIVERGENCES)))
        if not isinstance(self.losses, Mapping):
            fail("losses", "a table of loss name = weight")
        losses = dict(self.losses) or dict(DEFAULT_LOSSES[self.architecture])
        for name, weight in losses.items():
            if name not in LOSSES:
                raise ConfigError(f"TrainConfig.losses: unknown loss {name!r}; expected one of {sorted(LOSSES)}")
            if self.architecture not in LOSSES[name].architectures:
                raise ConfigError(
                    f"TrainConfig.losses: loss {name!r} does not apply to architecture {self.architecture!r} "
                    f"(it applies to {sorted(LOSSES[name].architectures)})"
                )
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (math.isfinite(weight) and weight >= 0):
                raise ConfigError(f"TrainConfig.losses.{name} = {weight!r}: expected a finite number >= 0")
        if not any(w > 0 for w in losses.values()):
            raise ConfigError(f"TrainConfig.losses = {losses!r}: expected at least one positive weight")
        object.__setattr__(self, "losses", {name: float(w) for name, w in losses.items()})

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the inverse of :meth:`from_dict`)."""
        out = asdict(self)
        out["losses"] = dict(self.losses)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
        """Builds a config from a mapping; unknown keys are errors naming the key.

        Args:
            values: field name to value.
            source: what to call the mapping in errors (a file name).

        Raises:
            ConfigError: for an unknown key or a bad value.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: expected a table of settings, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"{source}: unknown key {key!r}; expected one of {sorted(known)}")
        try:
            return cls(**dict(values))
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None

    def differences(self, other: TrainConfig, *, ignore: tuple[str, ...] = ()) -> list[str]:
        """Fields where ``other`` differs, as ``"name: mine -> other"`` strings."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: {mine[k]!r} -> {theirs[k]!r}" for k in mine if k not in ignore and mine[k] != theirs[k]]


def load_train_config(path: str | Path) -> TrainConfig:
    """Reads a TOML (``.toml``) or JSON (``.json``) training config.

    Raises:
        ConfigError: naming the file for a missing file, a syntax error, an unknown key or a bad value.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            values = tomllib.loads(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            raise ConfigError(f"{path}: expected a .toml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: syntax error: {error}") from None
    return TrainConfig.from_dict(values, source=str(path))

