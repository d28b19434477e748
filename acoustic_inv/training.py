"""Training: :func:`fit` a network on a :class:`~acoustic_inv.sources.DataSource`.

One call does, in order:

1. fits the parameter and observation transforms on the training split (one streamed pass);
2. builds the network of the :class:`~acoustic_inv.train_config.TrainConfig` and the weighted
   :class:`~acoustic_inv.losses.Objective`; initializes ActNorm layers on the first batch;
3. trains with Adam (learning-rate schedule, gradient clipping), alternating critic updates (their
   own Adam) with network updates when an ``fdiv_*`` loss is selected;
4. after every epoch evaluates the validation split, keeps the best weights, writes a training
   state next to the output (``<out>.resume``: weights, optimizers, scheduler, RNG, history) and
   stops early after ``patience`` epochs without improvement;
5. writes the model file ``out`` with the best weights.

Run again with the same arguments, it continues from ``<out>.resume``: the data split and the epoch
shuffles are functions of ``(seed, epoch)``, and the RNG states are restored, so an interrupted and
resumed run on the CPU gives the same weights as an uninterrupted one.

Noise: when ``noise_std > 0`` each batch gets fresh Gaussian noise of that standard deviation (in
``x``'s units) added to ``x``. In the INN's ``theta_pad`` mode the parameter side carries every noise
realization behind ``y``: the simulator's own noise variables when the source holds them
(:attr:`~acoustic_inv.sources.DataSource.noise_dim` > 0, e.g. ``InMemorySource(theta, x,
noise=eps)``), standardized with moments fitted on the training split, then the unit-normal
realization of the added noise. With neither, ``theta_pad`` is refused; a source with simulator noise
and an INN in ``"y"`` mode is refused too (the noise would be silently unused and the posterior
would collapse); the cINN ignores the simulator noise.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from acoustic_inv.checkpoint import (
    build_posterior_model,
    load_checkpoint,
    model_record,
    save_checkpoint,
    save_model,
)
from acoustic_inv.errors import ConfigError, DataError, UserError
from acoustic_inv.losses import LossOptions, Objective, StepContext
from acoustic_inv.models import INN, PosteriorModel
from acoustic_inv.sources import DataSource, rebatch
from acoustic_inv.train_config import TrainConfig, load_train_config
from acoustic_inv.transforms import RunningMoments

__all__ = ["TrainResult", "fit", "load_train_config", "resolve_device", "resume_path"]

# Fields that may change between an interrupted run and its continuation.
_RESUMABLE_CHANGES = ("epochs", "patience", "device")


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model with the best validation weights, in eval mode, on the CPU.
        config: the configuration used.
        history: one dict per epoch: ``epoch`` (1-based), ``train`` and ``val`` (mean value of each
            loss term), ``val_score`` (early-stopping score), ``lr``, ``skipped_batches``.
        best_epoch: epoch (1-based) whose weights were kept.
        stopped_early: whether patience ran out before ``epochs``.
        resumed_from_epoch: epochs already done when this call started (0: fresh run).
        model_path: the model file written, or ``None``.
    """

    model: PosteriorModel
    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    model_path: Path | None = None


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` to a device.

    Raises:
        ConfigError: for ``"cuda"`` when CUDA is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but this torch has no usable CUDA device; use 'cpu' or 'auto'")
    return torch.device(name)


def resume_path(out: str | Path) -> Path:
    """Where the training state for model file ``out`` is kept: ``<out>.resume``."""
    out = Path(out)
    return out.with_name(out.name + ".resume")


def _rng_devices(device: torch.device) -> list[torch.device]:
    return [device] if device.type == "cuda" else []


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _inn_noise_size(source: DataSource, config: TrainConfig) -> int | None:
    """Noise entries on the INN's parameter side for this source and config (``None``: no INN).

    Raises:
        ConfigError: for ``theta_pad`` with no noise to carry, or ``"y"`` with simulator noise.
    """
    if config.architecture != "inn":
        return None
    k = source.noise_dim
    if config.noise_mode == "y":
        if k:
            raise ConfigError(
                f"TrainConfig.noise_mode = 'y': {source.description} holds the simulator's noise realization "
                f"({k} variables per row), which 'y' mode does not use (the posterior would collapse onto the "
                "mean of x); set noise_mode = 'theta_pad' to carry it on the parameter side, or give no noise"
            )
        return 0
    n_noise = k + (source.n_features if config.noise_std > 0 else 0)
    if n_noise == 0:
        raise ConfigError(
            f"TrainConfig.noise_mode = 'theta_pad' needs a noise realization to carry on the parameter side: "
            f"noise_std > 0 (noise added by the trainer to noise-free x) or a source that holds the simulator's "
            f"noise (InMemorySource(theta, x, noise=...)); {source.description} has none and noise_std = 0"
        )
    return n_noise


def _checked_noise(noise: np.ndarray, n_rows: int, source: DataSource) -> np.ndarray:
    """The noise block as float64, checked against the source's ``noise_dim``.

    Raises:
        DataError: when a block's noise does not have shape (n_rows, noise_dim) or is not finite.
    """
    noise = np.asarray(noise, dtype=np.float64)
    if noise.shape != (n_rows, source.noise_dim):
        raise DataError(
            f"{source.description}: a block's noise has shape {noise.shape}, expected ({n_rows}, {source.noise_dim})"
        )
    if not np.isfinite(noise).all():
        raise DataError(f"{source.description}: the simulator noise contains a NaN or infinite value")
    return noise


class _Trainer:
    """State of one training run (internal; use :func:`fit`)."""

    def __init__(self, source: DataSource, config: TrainConfig, device: torch.device) -> None:
        self.source = source
        self.config = config
        self.device = device
        torch.manual_seed(config.seed)
        n_noise = _inn_noise_size(source, config)
        # The simulator's noise enters the network only on the INN's parameter side.
        self.source_noise = config.architecture == "inn" and config.noise_mode == "theta_pad" and source.noise_dim > 0
        self.noise_mean: Tensor | None = None
        self.noise_std: Tensor | None = None
        self.model = build_posterior_model(config, source.params, source.n_features, n_noise)
        options = LossOptions(config.f_divergence, config.critic_hidden_width, config.critic_depth)
        try:
            self.objective = Objective(config.losses, self.model.network, options)
        except ValueError as error:
            raise ConfigError(f"TrainConfig.losses: {error}") from None
        self.n_train = 0
        self.epoch = 0
        self.best_score = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: dict[str, Tensor] | None = None
        self.history: list[dict[str, Any]] = []
        self.finished = False
        self.stopped_early = False

    # -- setup ---------------------------------------------------------------------------------

    def fit_transforms(self) -> None:
        theta_moments = RunningMoments(self.source.n_params)
        x_moments = RunningMoments(self.source.n_features)
        noise_moments = RunningMoments(self.source.noise_dim)
        for theta, x, noise in self.source.blocks_with_noise(
            "train", val_fraction=self.config.val_fraction, seed=self.config.seed
        ):
            try:
                self.model.theta_transform.partial_fit(theta_moments, theta)
                self.model.x_transform.partial_fit(x_moments, x)
            except DataError as error:
                raise DataError(f"{self.source.description}: {error}") from None
            if self.source_noise:
                noise_moments.update(_checked_noise(noise, len(theta), self.source))
        try:
            self.model.theta_transform.finish_fit(theta_moments)
            self.model.x_transform.finish_fit(x_moments)
        except DataError as error:
            raise DataError(f"{self.source.description}: {error}") from None
        if self.source_noise and noise_moments.count:
            # A constant noise column is scaled by 1 rather than by 1/0.
            std = np.where(noise_moments.std > 1e-12, noise_moments.std, 1.0)
            self.noise_mean = torch.as_tensor(noise_moments.mean, dtype=torch.float64)
            self.noise_std = torch.as_tensor(std, dtype=torch.float64)
        self.n_train = theta_moments.count
        if self.n_train < 2:
            raise DataError(f"{self.source.description}: the training split has {self.n_train} pairs; need at least 2")
        n_val = sum(len(t) for t, _ in self.source.blocks("val", val_fraction=self.config.val_fraction, seed=self.config.seed))
        if n_val == 0:
            raise DataError(
                f"{self.source.description}: the validation split is empty (val_fraction = "
                f"{self.config.val_fraction} of {self.n_train} pairs); use more data or a larger val_fraction"
            )

    def to_device(self) -> None:
        self.model.to(self.device)
        self.objective.to(self.device)
        config = self.config
        self.optimizer = torch.optim.Adam(self.model.network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.critic_optimizer = (
            torch.optim.Adam(self.objective.critic_parameters(), lr=config.critic_lr, betas=(0.5, 0.999))
            if self.objective.has_critic
            else None
        )
        if config.lr_schedule == "cosine":
            self.scheduler: Any = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs)
        elif config.lr_schedule == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=0.5, patience=max(1, config.patience // 3)
            )
        else:
            self.scheduler = None

    def initialize_actnorm(self) -> None:
        for theta, x, noise in self.batches("train", epoch=0):
            ctx = self.context(theta, x, noise, no_grad=True)
            self.model.network.train()
            _ = ctx.forward_pass
            return

    # -- batches -------------------------------------------------------------------------------

    def batches(self, split: str, epoch: int | None) -> Iterator[tuple[np.ndarray, ...]]:
        """``(theta, x, noise)`` batches; ``noise`` is (k, 0) for a source without simulator noise."""
        if self.source_noise:
            blocks: Iterator[tuple[np.ndarray, ...]] = self.source.blocks_with_noise(
                split, val_fraction=self.config.val_fraction, seed=self.config.seed, epoch=epoch
            )
        else:
            # Sources that hold noise the network does not use need not read it.
            blocks = (
                (theta, x, np.zeros((len(theta), 0)))
                for theta, x in self.source.blocks(
                    split, val_fraction=self.config.val_fraction, seed=self.config.seed, epoch=epoch
                )
            )
        return rebatch(blocks, self.config.batch_size, drop_last=split == "train")

    def context(
        self, theta_np: np.ndarray, x_np: np.ndarray, noise_np: np.ndarray, *, no_grad: bool = False
    ) -> StepContext:
        network = self.model.network
        dtype = next(network.parameters()).dtype
        theta = torch.from_numpy(np.ascontiguousarray(theta_np)).to(self.device, torch.float64)
        x = torch.from_numpy(np.ascontiguousarray(x_np)).to(self.device, torch.float64)
        u, _ = self.model.theta_transform(theta)
        carried: list[Tensor] = []
        if self.source_noise:
            assert self.noise_mean is not None and self.noise_std is not None
            noise = torch.from_numpy(np.ascontiguousarray(_checked_noise(noise_np, len(theta_np), self.source)))
            carried.append((noise.to(self.device) - self.noise_mean.to(self.device)) / self.noise_std.to(self.device))
        if self.config.noise_std > 0:
            added = torch.randn(x.shape, dtype=torch.float64, device=self.device)
            x = x + self.config.noise_std * added
            carried.append(added)
        x_std = self.model.x_transform(x)
        on_params = isinstance(network, INN) and network.noise_mode == "theta_pad"
        noise_side = torch.cat(carried, dim=1).to(dtype) if (on_params and carried) else None
        return StepContext(network, u.to(dtype), x_std.to(dtype), noise_side, no_grad=no_grad)

    # -- epochs --------------------------------------------------------------------------------

    def _clip(self, parameters: list[torch.nn.Parameter]) -> None:
        if self.config.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(parameters, self.config.clip_grad_norm)

    def train_epoch(self, progress: bool) -> tuple[dict[str, float], int]:
        config = self.config
        self.model.train()
        sums: dict[str, float] = {}
        count = skipped = batches = 0
        net_params = list(self.model.network.parameters())
        critic_params = self.objective.critic_parameters()
        total = max(1, self.n_train // config.batch_size)
        bar = tqdm(
            total=total,
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        for theta, x, noise in self.batches("train", epoch=self.epoch):
            bar.update(1)
            batches += 1
            if self.critic_optimizer is not None:
                critic_ctx = self.context(theta, x, noise, no_grad=True)
                for _ in range(config.critic_steps):
                    self.critic_optimizer.zero_grad(set_to_none=True)
                    critic_loss = self.objective.critic_loss(critic_ctx)
                    if torch.isfinite(critic_loss):
                        critic_loss.backward()
                        self._clip(critic_params)
                        self.critic_optimizer.step()
            ctx = self.context(theta, x, noise)
            loss, values = self.objective.generator_loss(ctx)
            if not torch.isfinite(loss):
                skipped += 1
                continue
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._clip(net_params)
            self.optimizer.step()
            n = len(theta)
            count += n
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value * n
            if progress:
                bar.set_postfix({name: f"{s / count:.4g}" for name, s in sums.items()}, refresh=False)
        bar.refresh()  # the last running means, even when the epoch was faster than a refresh interval
        bar.close()
        if batches and skipped > batches // 2:
            raise UserError(
                f"training diverged: {skipped} of {batches} batches of epoch {self.epoch + 1} gave a non-finite "
                "loss; lower lr, clamp or the loss weights"
            )
        return ({name: s / max(count, 1) for name, s in sums.items()}, skipped)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        sums: dict[str, float] = {}
        count = 0
        # The same noise and latent draws every epoch, without disturbing the training RNG.
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            torch.manual_seed(self.config.seed + 1)
            for theta, x, noise in self.batches("val", epoch=None):
                _, values = self.objective.generator_loss(self.context(theta, x, noise))
                n = len(theta)
                count += n
                for name, value in values.items():
                    sums[name] = sums.get(name, 0.0) + value * n
        return {name: s / count for name, s in sums.items()}

    # -- state ---------------------------------------------------------------------------------

    def state_record(self) -> dict[str, Any]:
        record = model_record(self.model, self.config, self.history)
        record.update(
            {
                "objective_state_dict": {k: v.detach().cpu() for k, v in self.objective.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict() if self.critic_optimizer else None,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "rng": _rng_state(self.device),
                "epoch": self.epoch,
                "n_train": self.n_train,
                "best_score": self.best_score,
                "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs,
                "best_state_dict": self.best_state,
                "finished": self.finished,
                "stopped_early": self.stopped_early,
                "noise_mean": self.noise_mean,
                "noise_std": self.noise_std,
            }
        )
        return record

    def restore(self, record: dict[str, Any], path: Path) -> None:
        try:
            self.model.load_state_dict(record["state_dict"])
            self.objective.load_state_dict(record["objective_state_dict"])
            self.to_device()
            self.optimizer.load_state_dict(record["optimizer"])
            if self.critic_optimizer is not None:
                self.critic_optimizer.load_state_dict(record["critic_optimizer"])
            if self.scheduler is not None and record["scheduler"] is not None:
                self.scheduler.load_state_dict(record["scheduler"])
                if self.config.lr_schedule == "cosine" and self.scheduler.T_max != self.config.epochs:
                    # A longer (or shorter) run: continue on the cosine of the new length.
                    self.scheduler.T_max = self.config.epochs
                    done = min(int(record["epoch"]), self.config.epochs)
                    factor = 0.5 * (1.0 + math.cos(math.pi * done / self.config.epochs))
                    for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
                        group["lr"] = base * factor
            _set_rng_state(record["rng"], self.device)
            self.epoch = int(record["epoch"])
            self.n_train = int(record["n_train"])
            self.best_score = float(record["best_score"])
            self.best_epoch = int(record["best_epoch"])
            self.bad_epochs = int(record["bad_epochs"])
            self.best_state = record["best_state_dict"]
            self.history = list(record["history"])
            self.stopped_early = bool(record["stopped_early"])
            self.noise_mean, self.noise_std = record.get("noise_mean"), record.get("noise_std")
            if self.source_noise and (self.noise_mean is None or self.noise_std is None):
                raise ValueError("it has no standardization of the simulator noise")
            self.finished = bool(record["finished"]) and not (
                self.epoch < self.config.epochs and not self.stopped_early
            )
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise DataError(f"{path}: training state does not fit this run ({str(error).splitlines()[0]})") from None


def fit(
    source: DataSource,
    config: TrainConfig,
    *,
    out: str | Path | None = None,
    resume: bool = True,
    progress: bool = False,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Trains a network on ``source`` as ``config`` says.

    Args:
        source: the training pairs.
        config: architecture, losses and optimization settings.
        out: model file to write (and ``<out>.resume`` for the training state); ``None``: keep in
            memory only (no resume).
        resume: continue from ``<out>.resume`` if it exists (``False``: start afresh, overwriting it).
        progress: show a tqdm bar per epoch with the running mean of each loss term, and one line per
            epoch.
        on_epoch_end: called with each epoch's history record, after the training state is written.

    Returns:
        The :class:`TrainResult`.

    Raises:
        ConfigError: for a config that does not fit the data, or a resume state made with another
            config (beyond ``epochs``, ``patience``, ``device``).
        DataError: for unreadable data or a bad training state.
    """
    device = resolve_device(config.device)
    out_path = Path(out) if out is not None else None
    state_path = resume_path(out_path) if out_path is not None else None
    trainer = _Trainer(source, config, device)
    resumed_from = 0
    if resume and state_path is not None and state_path.exists():
        record = load_checkpoint(state_path, kind="training_state")
        try:
            stored = TrainConfig.from_dict(record["config"], source=f"{state_path} (stored config)")
        except ConfigError as error:
            raise DataError(str(error)) from None
        changed = stored.differences(config, ignore=_RESUMABLE_CHANGES)
        if changed:
            raise ConfigError(
                f"{state_path}: was made with another config ({'; '.join(changed)}); start afresh (remove it or "
                "pass --restart) or use the original config"
            )
        stored_params = [p["name"] for p in record["params"]]
        network_noise = trainer.model.network.n_noise if isinstance(trainer.model.network, INN) else 0
        stored_noise = record.get("n_noise", network_noise)  # absent in states written before it was kept
        if stored_noise != network_noise:
            raise DataError(
                f"{state_path}: was made for {stored_noise} noise entries on the INN's parameter side, but "
                f"{source.description} with this config gives {network_noise}"
            )
        if stored_params != [p.name for p in source.params] or record["n_features"] != source.n_features:
            raise DataError(
                f"{state_path}: was made for parameters {stored_params} and {record['n_features']} features, "
                f"but {source.description} has {[p.name for p in source.params]} and {source.n_features}"
            )
        trainer.restore(record, state_path)
        resumed_from = trainer.epoch
    else:
        trainer.fit_transforms()
        # On the training device first: the data-dependent ActNorm initialization runs a batch there.
        trainer.to_device()
        trainer.initialize_actnorm()
        torch.manual_seed(config.seed)

    while not trainer.finished and trainer.epoch < config.epochs:
        started = time.perf_counter()
        train_values, skipped = trainer.train_epoch(progress)
        val_values = trainer.validate()
        score = trainer.objective.score(val_values)
        lr = trainer.optimizer.param_groups[0]["lr"]
        if trainer.scheduler is not None:
            if config.lr_schedule == "plateau":
                trainer.scheduler.step(score if score is not None else -trainer.epoch)
            else:
                trainer.scheduler.step()
        trainer.epoch += 1
        if score is None:
            trainer.best_epoch, trainer.best_state = trainer.epoch, None
        elif math.isfinite(score) and score < trainer.best_score:
            trainer.best_score, trainer.best_epoch, trainer.bad_epochs = score, trainer.epoch, 0
            trainer.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in trainer.model.state_dict().items()})
        else:
            trainer.bad_epochs += 1
        record = {
            "epoch": trainer.epoch,
            "train": train_values,
            "val": val_values,
            "val_score": score,
            "lr": lr,
            "skipped_batches": skipped,
            "seconds": time.perf_counter() - started,
        }
        trainer.history.append(record)
        if config.patience and trainer.bad_epochs >= config.patience:
            trainer.stopped_early = True
        if trainer.stopped_early or trainer.epoch >= config.epochs:
            trainer.finished = True
        if progress:
            terms = " ".join(f"{k}={v:.4g}" for k, v in val_values.items())
            shown = "n/a" if score is None else f"{score:.4g}"
            tqdm.write(f"epoch {trainer.epoch}/{config.epochs}: val {terms} (score {shown}, lr {lr:.3g})")
        if state_path is not None:
            save_checkpoint(state_path, trainer.state_record())
        if on_epoch_end is not None:
            on_epoch_end(record)

    if trainer.best_state is not None:
        trainer.model.load_state_dict(trainer.best_state)
    trainer.model.to("cpu").eval()
    model_path = save_model(out_path, trainer.model, config, trainer.history) if out_path is not None else None
    return TrainResult(
        model=trainer.model,
        config=config,
        history=trainer.history,
        best_epoch=trainer.best_epoch,
        stopped_early=trainer.stopped_early,
        resumed_from_epoch=resumed_from,
        model_path=model_path,
    )
