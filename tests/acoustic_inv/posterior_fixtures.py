"""A tiny trained model for the posterior, invert, synth and plot tests (built once per test session).

The scenario is a Pekeris-like guide with 3 receivers and 2 tones; its dataset comes from the fake
engine of ``fake_engine.py`` (fast and smooth), and the model is trained through the ``acoustic-inv
train`` command, so that the model file carries the inversion metadata exactly as users get it.
Recordings for these tests are synthesized with the same fake engine, so the posterior has something
to find.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from fake_engine import fake_pressure

TINY_SCENARIO = """\
[scenario]
name = "tiny-pekeris"
description = "3 receivers, 2 tones; posterior tests"

[environment]
water_depth_m = 100.0
[environment.ssp]
depth_m = [0.0]
speed_mps = [1500.0]
[environment.halfspace]
sound_speed_mps = 1700.0
density_g_cm3 = 1.8
attenuation_db_per_m_khz = 0.1

[array]
receiver_depths_m = [25.0, 50.0, 75.0]

[tones]
freqs_hz = [50.0, 80.0]

[source]
depth_m = 30.0
range_m = 2000.0

[engine]
name = "kraken"

[noise]
model = "complex_gaussian"
snr_db = { distribution = "uniform", low = 10.0, high = 25.0 }

[observation]
features = "unit_pressure"
reference_receiver = 0

[prior.source_range_m]
low = 1500.0
high = 2500.0

[prior.water_depth_m]
low = 90.0
high = 110.0

[simulation]
chunk_size = 500
"""

TRAIN_CONFIG = """\
architecture = "cinn"
n_blocks = 3
hidden_width = 32
subnet_depth = 1
embed_dim = 8
epochs = 30
patience = 0
batch_size = 100
lr = 3e-3
val_fraction = 0.2
seed = 0
"""

N_SAMPLES = 1000


@dataclass(frozen=True)
class TinyModel:
    """Paths of the tiny scenario, dataset and model."""

    root: Path
    scenario_path: Path
    dataset: Path
    model: Path


_CACHE: dict[str, TinyModel] = {}


def tiny_model(factory: pytest.TempPathFactory) -> TinyModel:
    """Builds (once per process) the scenario file, the fake-engine dataset and the trained model."""
    if "tiny" in _CACHE:
        return _CACHE["tiny"]
    from acoustic_inv.cli import main
    from acoustic_inv.datasets import generate

    root = factory.mktemp("tiny-model")
    scenario_path = root / "tiny-pekeris.toml"
    scenario_path.write_text(TINY_SCENARIO, encoding="utf-8")
    dataset = root / "data"
    generate(scenario_path, dataset, N_SAMPLES, seed=0, progress=False, runner=fake_pressure)
    config = root / "train.toml"
    config.write_text(TRAIN_CONFIG, encoding="utf-8")
    model = root / "model.pt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["train", "--data", str(dataset), "--config", str(config), "--out", str(model), "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    _CACHE["tiny"] = TinyModel(root, scenario_path, dataset, model)
    return _CACHE["tiny"]
