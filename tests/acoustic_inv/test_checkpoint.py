"""Model files: round trip, safe loading, and clear errors for old or foreign files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from acoustic_inv import checkpoint
from acoustic_inv.checkpoint import FORMAT_VERSION, load_checkpoint, load_model, save_model
from acoustic_inv.errors import DataError
from acoustic_inv.sources import InMemorySource, ParamInfo
from acoustic_inv.train_config import TrainConfig
from acoustic_inv.training import fit


@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks: one thread is fastest, and immune to oversubscription on a shared CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_source(n: int = 200) -> InMemorySource:
    rng = np.random.default_rng(0)
    theta = np.column_stack([rng.uniform(0.0, 2.0, n), rng.normal(size=n)])
    x = np.column_stack([theta[:, 0] + theta[:, 1], theta[:, 1] ** 2, np.sin(theta[:, 0])]) + 0.1 * rng.normal(size=(n, 3))
    return InMemorySource(theta, x, [ParamInfo("a", "m", 0.0, 2.0), ParamInfo("b", "s")])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    config = TrainConfig(architecture="cinn", n_blocks=2, hidden_width=16, embed_dim=4, epochs=2, batch_size=50)
    result = fit(tiny_source(), config, out=path)
    torch.set_num_threads(threads)
    return path, result


def test_model_file_round_trip(trained: tuple[Path, object]) -> None:
    path, result = trained
    model = load_model(path)
    x = np.array([1.0, 0.5, 0.3])
    assert torch.equal(model.sample(x, 20, seed=1), result.model.sample(x, 20, seed=1))
    theta = torch.tensor([[0.5, 0.1], [1.5, -1.0]], dtype=torch.float64)
    assert torch.equal(model.log_prob(theta, x), result.model.log_prob(theta, x))
    assert model.config == result.config and model.param_names == ("a", "b") and model.param_units == ("m", "s")
    assert len(model.history) == 2
    record = load_checkpoint(path)
    assert record["versions"] == {"torch": str(torch.__version__), "acoustic_inv": "0.1.0", "format": FORMAT_VERSION}
    # what the issue asks: a plain torch.load(weights_only=True) reads it
    assert isinstance(torch.load(path, weights_only=True)["state_dict"], dict)


def test_training_state_serves_as_a_model_file(trained: tuple[Path, object]) -> None:
    path, result = trained
    model = load_model(path.with_name(path.name + ".resume"))
    x = np.array([1.0, 0.5, 0.3])
    assert torch.equal(model.sample(x, 5, seed=0), result.model.sample(x, 5, seed=0))


def test_save_model_is_atomic_and_overwrites(trained: tuple[Path, object], tmp_path: Path) -> None:
    _, result = trained
    target = tmp_path / "sub" / "m.pt"
    save_model(target, result.model, result.config)
    save_model(target, result.model, result.config)
    assert [p.name for p in target.parent.iterdir()] == ["m.pt"], "no temporary file is left behind"


def test_foreign_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.pt: no such file"):
        load_model(tmp_path / "missing.pt")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(DataError, match=r"notes\.pt: not a readable acoustic-inv file"):
        load_model(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(DataError, match=r"other\.pt: not an acoustic-inv file"):
        load_model(other)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "acoustic-inv", "thing": Path("x")}, pickled)
    with pytest.raises(DataError, match=r"pickled\.pt: not an acoustic-inv file: a safe .*PosixPath"):
        load_model(pickled)


def test_old_or_newer_format_and_wrong_kind(trained: tuple[Path, object], tmp_path: Path) -> None:
    path, _ = trained
    record = torch.load(path, weights_only=True)
    for version, word in ((0, "older"), (FORMAT_VERSION + 1, "newer")):
        old = tmp_path / f"v{version}.pt"
        torch.save({**record, "versions": {**record["versions"], "format": version}}, old)
        with pytest.raises(DataError, match=rf"v{version}\.pt: format version {version} \({word}"):
            load_model(old)
    with pytest.raises(DataError, match="expected a training state file, found kind 'model'"):
        load_checkpoint(path, kind="training_state")
    broken = tmp_path / "broken.pt"
    torch.save({k: v for k, v in record.items() if k != "state_dict"}, broken)
    with pytest.raises(DataError, match=r"broken\.pt: incomplete file, missing \['state_dict'\]"):
        load_model(broken)
    mismatched = tmp_path / "mismatch.pt"
    torch.save({**record, "config": {**record["config"], "n_blocks": 3}}, mismatched)
    with pytest.raises(DataError, match=r"mismatch\.pt: weights do not match the stored config"):
        load_model(mismatched)
    bad_config = tmp_path / "badconfig.pt"
    torch.save({**record, "config": {**record["config"], "colour": "red"}}, bad_config)
    with pytest.raises(DataError, match=r"badconfig\.pt.*unknown key 'colour'"):
        load_model(bad_config)


def test_build_network_follows_config() -> None:
    inn = checkpoint.build_network(TrainConfig(architecture="inn", noise_mode="theta_pad", noise_std=0.1, latent_dim=3), 2, 4)
    assert inn.dim == 7 and inn.n_pad == 1 and inn.noise_mode == "theta_pad"
    cinn = checkpoint.build_network(TrainConfig(embed_dim=7, n_blocks=3), 2, 4)
    assert cinn.embed_dim == 7 and cinn.dim == 2
