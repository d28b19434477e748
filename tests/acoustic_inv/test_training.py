"""Training: config validation, the loop (early stopping, clipping, resume) and posterior accuracy.

The slow tests train on a linear-Gaussian problem with a closed-form posterior and compare the
network's posterior draws with exact ones by a classifier two-sample test (C2ST).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from acoustic_inv import training
from acoustic_inv.diagnostics import c2st
from acoustic_inv.errors import ConfigError, DataError
from acoustic_inv.sources import InMemorySource, ParamInfo
from acoustic_inv.train_config import DEFAULT_LOSSES, TrainConfig, load_train_config
from acoustic_inv.training import fit, resume_path


@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks: one thread is fastest, and immune to oversubscription on a shared CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(n_blocks=2, hidden_width=16, subnet_depth=1, embed_dim=4, batch_size=64, critic_hidden_width=16, critic_depth=1)


def tiny_source(n: int = 320, seed: int = 0) -> InMemorySource:
    rng = np.random.default_rng(seed)
    theta = np.column_stack([rng.uniform(1.0, 3.0, n), rng.normal(size=n)])
    x = np.column_stack([theta[:, 0] * theta[:, 1], theta[:, 1], theta[:, 0] ** 2]) + 0.1 * rng.normal(size=(n, 3))
    return InMemorySource(theta, x, [ParamInfo("a", "m", 1.0, 3.0), ParamInfo("b", "1")])


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# -- config ----------------------------------------------------------------------------------------


def test_default_config_is_valid_and_fills_losses() -> None:
    assert TrainConfig().losses == DEFAULT_LOSSES["cinn"]
    assert TrainConfig(architecture="inn").losses == DEFAULT_LOSSES["inn"]
    config = TrainConfig(losses={"ml_z": 2})
    assert config.losses == {"ml_z": 2.0} and isinstance(config.losses["ml_z"], float)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert hash(config) == hash(TrainConfig.from_dict(config.to_dict()))
    with pytest.raises(AttributeError):
        config.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"architecture": "gan"}, r"architecture = 'gan': expected one of \['inn', 'cinn'\]"),
        ({"n_blocks": 0}, r"n_blocks = 0: expected an integer >= 1"),
        ({"n_blocks": 2.5}, r"n_blocks = 2.5"),
        ({"batch_size": True}, r"batch_size = True"),
        ({"lr": 0.0}, r"lr = 0.0: expected a finite number > 0"),
        ({"lr": math.inf}, r"lr = inf"),
        ({"val_fraction": 1.0}, r"val_fraction = 1.0: expected a finite number > 0.0 and < 1.0"),
        ({"device": "tpu"}, r"device = 'tpu'"),
        ({"f_divergence": "tv"}, r"f_divergence = 'tv'"),
        ({"noise_mode": "x"}, r"noise_mode = 'x'"),
        ({"actnorm": "yes"}, r"actnorm = 'yes': expected true or false"),
        ({"losses": {"mse_y": 1.0}}, r"loss 'mse_y' does not apply to architecture 'cinn'"),
        ({"losses": {"mmd": 1.0}}, r"unknown loss 'mmd'"),
        ({"losses": {"ml_z": -1.0}}, r"losses.ml_z = -1.0"),
        ({"losses": {"ml_z": 0.0}}, r"at least one positive weight"),
    ],
)
def test_config_errors_name_field_value_and_expectation(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(values)


def test_config_files(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('architecture = "inn"\nnoise_mode = "theta_pad"\nnoise_std = 0.1\nlatent_dim = 3\n[losses]\nml_z = 1.0\nmse_y = 20\n')
    config = load_train_config(toml)
    assert config.architecture == "inn" and config.latent_dim == 3 and config.losses == {"ml_z": 1.0, "mse_y": 20.0}
    js = tmp_path / "c.json"
    js.write_text(json.dumps(config.to_dict()))
    assert load_train_config(js) == config
    toml.write_text("epochs = 3\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match=r"c\.toml: unknown key 'learning_rate'"):
        load_train_config(toml)
    toml.write_text("epochs = 0\n")
    with pytest.raises(ConfigError, match=r"c\.toml: TrainConfig.epochs = 0"):
        load_train_config(toml)
    toml.write_text("epochs = \n")
    with pytest.raises(ConfigError, match=r"c\.toml: syntax error"):
        load_train_config(toml)
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_train_config(tmp_path / "nope.toml")
    (tmp_path / "c.yaml").write_text("epochs: 3\n")
    with pytest.raises(ConfigError, match=r"\.toml or \.json"):
        load_train_config(tmp_path / "c.yaml")


# -- the loop --------------------------------------------------------------------------------------


def test_fit_trains_records_history_and_is_seeded(capsys: pytest.CaptureFixture[str]) -> None:
    config = TrainConfig(epochs=4, lr=3e-3, **TINY)
    result = fit(tiny_source(), config, progress=True)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4] and result.model_path is None
    assert set(result.history[0]["train"]) == {"ml_z"} == set(result.history[0]["val"])
    assert result.history[-1]["val"]["ml_z"] < result.history[0]["val"]["ml_z"] - 0.1
    assert result.history[-1]["lr"] < result.history[0]["lr"], "cosine schedule"
    assert not result.model.training
    captured = capsys.readouterr()
    assert "ml_z=" in captured.err and "epoch 4/4" in captured.err, "progress bar shows each loss term"
    assert "epoch 4/4: val ml_z=" in captured.out
    again = fit(tiny_source(), config)
    assert_same_weights(weights(result.model), weights(again.model))
    other_seed = fit(tiny_source(), TrainConfig(epochs=1, seed=1, **TINY))
    assert not torch.equal(weights(other_seed.model)["network.embed.0.weight"], weights(again.model)["network.embed.0.weight"])


def test_early_stopping_keeps_the_best_weights() -> None:
    config = TrainConfig(epochs=40, patience=2, lr=0.03, lr_schedule="constant", **TINY)
    result = fit(tiny_source(n=200), config)
    scores = [h["val_score"] for h in result.history]
    assert result.stopped_early and len(scores) < 40
    assert result.best_epoch == int(np.argmin(scores)) + 1 and len(scores) == result.best_epoch + 2
    best_only = fit(tiny_source(n=200), TrainConfig.from_dict({**config.to_dict(), "epochs": result.best_epoch, "patience": 0}))
    assert_same_weights(weights(result.model), weights(best_only.model))


CRITIC = dict(architecture="inn", noise_mode="theta_pad", noise_std=0.1, lr_schedule="plateau",
              losses={"mse_y": 5.0, "ml_z": 1.0, "fdiv_joint": 0.1, "fdiv_inverse": 0.1}, critic_steps=2)


@pytest.mark.parametrize("extra", [{}, CRITIC], ids=["cinn", "inn_with_critics"])
def test_interrupted_run_resumes_to_identical_weights(tmp_path: Path, extra: dict[str, Any]) -> None:
    config = TrainConfig(epochs=3, patience=0, noise_std=extra.get("noise_std", 0.05),
                         **{**TINY, **{k: v for k, v in extra.items() if k != "noise_std"}})
    straight = fit(tiny_source(), config, out=tmp_path / "a.pt")

    class Interrupt(Exception):
        pass

    def stop_after_first(record: dict[str, Any]) -> None:
        if record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(tiny_source(), config, out=tmp_path / "b.pt", on_epoch_end=stop_after_first)
    assert resume_path(tmp_path / "b.pt").exists() and not (tmp_path / "b.pt").exists()
    resumed = fit(tiny_source(), config, out=tmp_path / "b.pt")
    assert resumed.resumed_from_epoch == 1 and len(resumed.history) == 3
    assert_same_weights(weights(straight.model), weights(resumed.model))
    assert [h["val"] for h in resumed.history] == [h["val"] for h in straight.history]
    # finished: running again does nothing more
    assert fit(tiny_source(), config, out=tmp_path / "b.pt").resumed_from_epoch == 3


def test_resume_checks_config_and_allows_more_epochs(tmp_path: Path) -> None:
    config = TrainConfig(epochs=2, **TINY)
    fit(tiny_source(), config, out=tmp_path / "m.pt")
    with pytest.raises(ConfigError, match=r"m\.pt\.resume: was made with another config \(lr: 0.001 -> 0.002\)"):
        fit(tiny_source(), TrainConfig(epochs=2, lr=2e-3, **TINY), out=tmp_path / "m.pt")
    longer = fit(tiny_source(), TrainConfig(epochs=3, **TINY), out=tmp_path / "m.pt")
    assert longer.resumed_from_epoch == 2 and len(longer.history) == 3
    fresh = fit(tiny_source(), TrainConfig(epochs=1, lr=2e-3, **TINY), out=tmp_path / "m.pt", resume=False)
    assert fresh.resumed_from_epoch == 0 and len(fresh.history) == 1
    other_data = InMemorySource(np.zeros((50, 1)), np.zeros((50, 3)))
    with pytest.raises(DataError, match="was made for parameters"):
        fit(other_data, TrainConfig(epochs=1, lr=2e-3, **TINY), out=tmp_path / "m.pt")


@pytest.mark.parametrize(
    "extra",
    [
        {"architecture": "inn", "noise_mode": "y"},
        {"architecture": "inn", "noise_mode": "y", "noise_std": 0.1, "latent_dim": 3},
        {"architecture": "inn", "noise_mode": "theta_pad", "noise_std": 0.1, "f_divergence": "kl"},
        {"architecture": "cinn", "noise_std": 0.1, "f_divergence": "hellinger"},
    ],
    ids=["inn_y", "inn_y_noise", "inn_theta_pad", "cinn"],
)
def test_every_applicable_loss_trains_through_fit(extra: dict[str, Any]) -> None:
    from acoustic_inv.losses import LOSSES

    losses = {name: 1.0 for name, cls in LOSSES.items() if extra["architecture"] in cls.architectures}
    result = fit(tiny_source(n=160), TrainConfig(epochs=2, losses=losses, **{**TINY, **extra}))
    for record in result.history:
        assert set(record["train"]) == set(losses) == set(record["val"])
        assert all(math.isfinite(v) for v in [*record["train"].values(), *record["val"].values()])
        assert record["skipped_batches"] == 0


def test_gradient_clipping(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    original = torch.nn.utils.clip_grad_norm_

    def spy(parameters: Any, max_norm: float, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(max_norm)
        return original(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    fit(tiny_source(), TrainConfig(epochs=1, clip_grad_norm=0.5, **TINY))
    assert calls and set(calls) == {0.5}
    calls.clear()
    fit(tiny_source(), TrainConfig(epochs=1, clip_grad_norm=0.0, **TINY))
    assert calls == []


def test_fit_data_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="validation split is empty"):
        fit(InMemorySource(rng.normal(size=(8, 2)), rng.normal(size=(8, 3))), TrainConfig(epochs=1, val_fraction=0.05, **TINY))
    outside = np.column_stack([rng.uniform(0, 5, 50), rng.normal(size=50)])
    source = InMemorySource(outside, rng.normal(size=(50, 3)), [ParamInfo("a", "m", 0.0, 1.0), ParamInfo("b", "1")])
    with pytest.raises(DataError, match=r"in-memory arrays: training parameter 0 has values outside its bounds"):
        fit(source, TrainConfig(epochs=1, **TINY))


# -- the simulator's own noise on the INN's parameter side ------------------------------------------


def multiplicative_noise(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """theta ~ U(1, 3), x = theta (1 + 0.3 eps): noise that is not additive. Returns theta, eps, x."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(1.0, 3.0, (n, 1))
    eps = rng.normal(size=(n, 1))
    return theta, eps, theta * (1.0 + 0.3 * eps)


def multiplicative_posterior(x_o: float) -> tuple[float, float]:
    """Mean and standard deviation of p(theta | x_o) on a grid: prior flat on [1, 3], likelihood
    N(x_o; theta, (0.3 theta)^2)."""
    grid = np.linspace(1.0, 3.0, 4001)
    w = np.exp(-0.5 * ((x_o / grid - 1.0) / 0.3) ** 2) / grid
    w /= w.sum()
    mean = float((w * grid).sum())
    return mean, float(np.sqrt((w * (grid - mean) ** 2).sum()))


MULTIPLICATIVE = dict(architecture="inn", epochs=10, n_blocks=3, hidden_width=32, subnet_depth=1, batch_size=128, lr=3e-3)


@pytest.mark.parametrize("noise_mode", ["theta_pad", "y"])
def test_inn_posterior_spread_with_non_additive_noise(noise_mode: str) -> None:
    """With the simulator's noise carried on the parameter side, [theta, eps] -> x is deterministic
    and the INN's posterior has the right spread; in 'y' mode the forward fit regresses to the mean
    of x and the posterior collapses (the failure on sbibm's tasks)."""
    theta, eps, x = multiplicative_noise(2000)
    source = InMemorySource(theta, x, [ParamInfo("theta", "1", 1.0, 3.0)], noise=eps if noise_mode == "theta_pad" else None)
    result = fit(source, TrainConfig(noise_mode=noise_mode, **MULTIPLICATIVE))
    assert result.model.network.n_noise == (1 if noise_mode == "theta_pad" else 0)
    for k, x_o in enumerate((1.5, 2.0, 2.5)):
        draws = result.model.sample(np.array([x_o]), 2000, seed=k).numpy()[:, 0]
        mean, std = multiplicative_posterior(x_o)
        ratio = draws.std() / std
        if noise_mode == "theta_pad":
            assert 1 / 1.5 < ratio < 1.5, (x_o, ratio)
            assert abs(draws.mean() - mean) < 0.5 * std, (x_o, draws.mean(), mean)
        else:
            assert ratio < 0.67, (x_o, ratio)


def test_simulator_noise_travels_with_its_rows() -> None:
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(103, 2))
    noise = np.column_stack([theta[:, 0] * 10.0, np.arange(103.0)])
    source = InMemorySource(theta, rng.normal(size=(103, 3)), noise=noise)
    assert source.noise_dim == 2 and InMemorySource(theta, noise).noise_dim == 0
    from acoustic_inv.sources import rebatch

    blocks = source.blocks_with_noise("train", val_fraction=0.2, seed=1, epoch=3)
    batches = list(rebatch(blocks, 16, drop_last=False))
    assert [len(b) for b in batches] == [3] * len(batches)
    assert sum(len(t) for t, _, _ in batches) == 103 - 21
    for t, x, e in batches:
        assert np.array_equal(e[:, 0], t[:, 0] * 10.0) and np.array_equal(source.x[e[:, 1].astype(int)], x)
    plain = [t for t, _ in source.blocks("train", val_fraction=0.2, seed=1, epoch=3)]
    assert np.array_equal(np.concatenate(plain), np.concatenate([t for t, _, _ in batches])), "same split and shuffle"
    with pytest.raises(DataError, match=r"noise must be \(n, k\).*got shape \(102, 2\)"):
        InMemorySource(theta, theta, noise=noise[:-1])
    with pytest.raises(DataError, match=r"noise must be \(n, k\)"):
        InMemorySource(theta, theta, noise=noise[:, 0])
    with pytest.raises(DataError, match="NaN or infinite"):
        InMemorySource(theta, theta, noise=np.where(noise > 50, np.nan, noise))


def test_noise_mode_must_match_the_data() -> None:
    theta, eps, x = multiplicative_noise(200)
    tiny = {**TINY, "architecture": "inn", "epochs": 1}
    with pytest.raises(ConfigError, match=r"noise_mode = 'theta_pad' needs a noise realization.*noise_std = 0"):
        fit(InMemorySource(theta, x), TrainConfig(noise_mode="theta_pad", **tiny))
    with pytest.raises(ConfigError, match=r"noise_mode = 'y': in-memory arrays holds the simulator's noise.*'theta_pad'"):
        fit(InMemorySource(theta, x, noise=eps), TrainConfig(noise_mode="y", **tiny))
    both = fit(InMemorySource(theta, x, noise=eps), TrainConfig(noise_mode="theta_pad", noise_std=0.1, **tiny))
    assert both.model.network.n_noise == 2, "the simulator's noise, then the added noise"
    cinn = fit(InMemorySource(theta, x, noise=eps), TrainConfig(**{**tiny, "architecture": "cinn"}))
    assert cinn.model.architecture == "cinn", "the cINN ignores the simulator noise"


def test_simulator_noise_survives_save_and_resume(tmp_path: Path) -> None:
    """Three noise variables for one feature: the INN's latent size follows them (d + k - m = 3), and
    the model file and the training state keep the split and the noise standardization."""
    from acoustic_inv.checkpoint import load_model

    theta, eps, x = multiplicative_noise(300)
    rng = np.random.default_rng(1)
    noise = np.column_stack([eps, rng.uniform(0.0, 5.0, (300, 1)), rng.normal(3.0, 2.0, (300, 1))])
    source = InMemorySource(theta, x, noise=noise)
    config = TrainConfig(architecture="inn", noise_mode="theta_pad", epochs=2, patience=0, **{k: v for k, v in TINY.items() if k != "embed_dim"})
    straight = fit(source, config, out=tmp_path / "a.pt")
    network = straight.model.network
    assert (network.n_noise, network.latent_dim, network.n_pad) == (3, 3, 0)
    loaded = load_model(tmp_path / "a.pt")
    assert loaded.network.n_noise == 3
    assert torch.equal(loaded.sample(np.array([2.0]), 50, seed=0), straight.model.sample(np.array([2.0]), 50, seed=0))

    class Interrupt(Exception):
        pass

    def stop_after_first(record: dict[str, Any]) -> None:
        if record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(source, config, out=tmp_path / "b.pt", on_epoch_end=stop_after_first)
    resumed = fit(source, config, out=tmp_path / "b.pt")
    assert resumed.resumed_from_epoch == 1
    assert_same_weights(weights(straight.model), weights(resumed.model))
    with pytest.raises(DataError, match=r"was made for 3 noise entries.*gives 1"):
        fit(InMemorySource(theta, x, noise=eps), config, out=tmp_path / "b.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("architecture", ["cinn", "inn"])
def test_training_on_cuda_gives_a_model_that_samples(architecture: str, tmp_path) -> None:
    # Every step, the ActNorm initialization included, must run where the network lives.
    config = TrainConfig(architecture=architecture, epochs=2, device="cuda", **TINY)
    result = fit(tiny_source(), config, out=tmp_path / "m.pt")
    assert next(result.model.parameters()).device.type == "cuda"
    draws = result.model.sample(np.zeros(3), 50, seed=0)
    assert draws.shape == (50, 2) and torch.isfinite(draws).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="device = 'cuda'"):
        training.resolve_device("cuda")
    assert training.resolve_device("auto") == torch.device("cpu")


# -- posterior accuracy on a linear-Gaussian problem ----------------------------------------------

D, M, SIGMA = 3, 3, 0.3


def linear_gaussian(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """theta ~ N(0, I_3), x = A theta + N(0, 0.3^2 I_3); returns A, theta and the noiseless A theta."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(M, D)) / np.sqrt(D)
    theta = rng.normal(size=(n, D))
    return a, theta, theta @ a.T


def exact_posterior(a: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of p(theta | x) for the linear-Gaussian problem."""
    cov = np.linalg.inv(np.eye(D) + a.T @ a / SIGMA**2)
    return cov @ a.T @ x / SIGMA**2, cov


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [{"architecture": "cinn"}, {"architecture": "inn", "noise_mode": "theta_pad"}],
    ids=["cinn", "inn"],
)
def test_linear_gaussian_posterior_c2st(overrides: dict[str, Any]) -> None:
    """Defaults (but 30 epochs) on 10,000 pairs; noise N(0, 0.3^2) is added afresh in each batch."""
    a, theta, clean = linear_gaussian(10_000, seed=0)
    config = TrainConfig(epochs=30, noise_std=SIGMA, **overrides)
    result = fit(InMemorySource(theta, clean), config)
    rng = np.random.default_rng(123)
    scores = []
    for k in range(3):
        x_o = a @ rng.normal(size=D) + SIGMA * rng.normal(size=M)
        mean, cov = exact_posterior(a, x_o)
        reference = rng.multivariate_normal(mean, cov, size=2000)
        draws = result.model.sample(x_o, 2000, seed=k).numpy()
        scores.append(c2st(draws, reference, seed=k))
    print(f"C2ST {overrides['architecture']}: {[round(s, 3) for s in scores]}")
    assert max(scores) <= 0.55, scores
