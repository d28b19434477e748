"""``acoustic-inv invert``: a synthetic recording end to end, and one clear line for each kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import posterior_fixtures
from acoustic_inv import posterior as posterior_module
from acoustic_inv import simulation
from acoustic_inv.cli import main
from acoustic_inv.posterior import read_posterior
from acoustic_inv.recordings import Recording, write_wav
from acoustic_inv.scenario import load_scenario
from acoustic_inv.synth import synthesize, write_synthetic
from fake_engine import fake_pressure

TRUTH = {"source_range_m": 2100.0, "water_depth_m": 101.0}


@pytest.fixture(autouse=True)
def _restore_threads():
    """`invert` sets torch's thread count (--threads, default 1); leave other tests the count they found."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> posterior_fixtures.TinyModel:
    return posterior_fixtures.tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def recording(tiny: posterior_fixtures.TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    scenario = load_scenario(tiny.scenario_path)
    synthetic = synthesize(scenario, TRUTH, duration_s=60.0, sample_rate_hz=400.0, snr_db=15.0, seed=5,
                           runner=fake_pressure)
    return write_synthetic(tmp_path_factory.mktemp("recording") / "rec.wav", synthetic)


def test_invert_end_to_end(tiny, recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "res" / "post.nc"
    args = ["invert", "--model", str(tiny.model), str(recording), "--samples", "3000", "--out", str(out),
            "--seed", "11"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines[1].startswith("tones (SNR per snapshot): 50 Hz (1") and "80 Hz (1" in lines[1]
    header = lines.index("3000 posterior draws (seed 11):") + 1
    assert lines[header].split() == ["parameter", "units", "mean", "median", "90%", "interval", "95%", "interval"]
    assert [line.split()[:2] for line in lines[header + 2:header + 4]] == [["source_range_m", "m"], ["water_depth_m", "m"]]
    assert lines[-1] == f"wrote {out} and {out.with_suffix('.json')}"
    document = json.loads(out.with_suffix(".json").read_text())
    assert document["seed"] == 11 and document["warnings"] == [] and document["n_draws"] == 3000
    assert document["observation"]["source_file"] == str(recording)
    for name, value in TRUTH.items():
        low, high = document["summary"]["parameters"][name]["eti_95"]
        assert low < value < high, (name, low, high)
    samples = read_posterior(out).samples
    assert samples.shape == (3000, 2)
    # the same seed gives the same draws
    assert main(args[:-4] + ["--out", str(tmp_path / "again.nc"), "--seed", "11"]) == 0
    np.testing.assert_array_equal(read_posterior(tmp_path / "again.nc").samples.values, samples.values)


def test_window_and_predictive_check(tiny, recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulation, "default_runner", lambda: fake_pressure)
    out = tmp_path / "post.nc"
    assert main(["invert", "-m", str(tiny.model), str(recording), "--start", "10", "--duration", "30",
                 "-n", "500", "-o", str(out), "--seed", "0", "--check", "6", "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2
    captured = capsys.readouterr()
    assert "10-40 s, 14 snapshots of 4 s" in captured.out.splitlines()[0]
    assert "posterior predictive check: 6 draws re-simulated with kraken" in captured.out
    assert "predictive check: 6/6 simulated" in captured.err
    document = json.loads(out.with_suffix(".json").read_text())
    assert document["observation"]["start_time_s"] == 10.0 and document["observation"]["duration_s"] == 30.0
    check = document["predictive_check"]
    assert check["n_draws"] == 6 and [t["freq_hz"] for t in check["tones"]] == [50.0, 80.0]
    assert all(0.5 < t["median"] <= 1.0 for t in check["tones"])
    assert read_posterior(out).check["bartlett"].shape == (6, 2)


def _write(path: Path, pressure: np.ndarray, fs: float, depths=(25.0, 50.0, 75.0), tones=(50.0, 80.0)) -> Path:
    return write_wav(path, Recording(pressure, fs, depths, tones), sidecar=True)


def _noise(n_channels: int = 3, fs: float = 400.0, seconds: float = 20.0) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(int(fs * seconds), n_channels))


def _bad_inputs(tiny: posterior_fixtures.TinyModel, recording: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Each case: (arguments after `invert`, a fragment of the one-line error)."""
    model = str(tiny.model)
    cases: dict[str, tuple[list[str], str]] = {}

    two = _write(tmp / "two.wav", _noise(2), 400.0, depths=(25.0, 50.0))
    cases["channel count"] = ([str(two)], "two.wav: 2 channels, but model")

    slow = _write(tmp / "slow.wav", _noise(3, fs=120.0), 120.0)
    cases["sample rate too low"] = ([str(slow)], "slow.wav: tone 80 Hz (+- 0.5 Hz search) is not inside (0, 60) Hz")

    disagree = tmp / "disagree.wav"
    disagree.write_bytes(recording.read_bytes())
    side = json.loads(recording.with_suffix(".json").read_text())
    disagree.with_suffix(".json").write_text(json.dumps({**side, "sample_rate_hz": 500.0}))
    cases["sample rate disagrees"] = ([str(disagree)], "sample_rate_hz = 500 from the sidecar disagrees")

    nan = tmp / "nan.wav"
    data = bytearray(recording.read_bytes())
    start = data.find(b"data") + 8
    data[start + 400:start + 404] = np.array([np.nan], dtype="<f4").tobytes()
    nan.write_bytes(bytes(data))
    nan.with_suffix(".json").write_text(recording.with_suffix(".json").read_text())
    cases["NaN samples"] = ([str(nan)], "nan.wav: ")

    truncated = tmp / "truncated.wav"
    truncated.write_bytes(recording.read_bytes()[:5000])
    truncated.with_suffix(".json").write_text(recording.with_suffix(".json").read_text())
    cases["truncated file"] = ([str(truncated)], "truncated.wav: truncated WAV file")

    corrupt = tmp / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(1).bytes(4096))
    cases["corrupt file"] = ([str(corrupt)], "corrupt.wav: ")

    quiet = _write(tmp / "quiet.wav", _noise(), 400.0)
    cases["tones absent"] = ([str(quiet)], "quiet.wav: tones absent in 0-20 s")

    moved = _write(tmp / "moved.wav", _noise(), 400.0, depths=(30.0, 60.0, 90.0))
    cases["depths differ from the model's scenario"] = (
        [str(moved)], "moved.wav: receiver depths [30, 60, 90] m do not match the depths [25, 50, 75] m of model")

    other_tones = _write(tmp / "tones.wav", _noise(), 400.0, tones=(49.0, 112.0))
    cases["tones differ from the model's scenario"] = ([str(other_tones)], "tones.wav: its source tones [49, 112] Hz lack")

    text_model = tmp / "notes.pt"
    text_model.write_text("not a model")
    cases["unreadable checkpoint"] = (["--model", str(text_model), str(recording)],
                                      "notes.pt: not a readable acoustic-inv file")

    record = torch.load(tiny.model, weights_only=True)
    key = next(iter(record["state_dict"]))
    record["state_dict"][key] = record["state_dict"][key] * 1.001 + 1e-6
    tampered = tmp / "tampered.pt"
    torch.save(record, tampered)
    cases["tampered checkpoint"] = (["--model", str(tampered), str(recording)], "tampered.pt: content check failed")

    cases["missing model"] = (["--model", str(tmp / "none.pt"), str(recording)], "none.pt: no such file")
    cases["missing recording"] = ([str(tmp / "none.wav")], "none.wav: no such file")
    cases["window outside"] = ([str(recording), "--start", "100"], "window start 100 s is outside the recording")
    for name, (arguments, fragment) in list(cases.items()):
        if "--model" not in arguments:
            cases[name] = (["--model", model, *arguments], fragment)
    return cases


CASES = ["channel count", "sample rate too low", "sample rate disagrees", "NaN samples", "truncated file",
         "corrupt file", "tones absent", "depths differ from the model's scenario",
         "tones differ from the model's scenario", "unreadable checkpoint", "tampered checkpoint",
         "missing model", "missing recording", "window outside"]


@pytest.fixture(scope="module")
def bad_inputs(tiny, recording: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[str], str]]:
    return _bad_inputs(tiny, recording, tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_and_exit_2(case: str, bad_inputs, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    arguments, fragment = bad_inputs[case]
    assert main(["invert", *arguments, "--out", str(tmp_path / "post.nc")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("acoustic-inv invert: error: "), captured.err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "post.nc").exists()


def test_missing_default_model_says_how_to_train(recording: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(posterior_module, "DEFAULT_MODEL_PATH", tmp_path / "models" / "swellex96.pt")
    assert main(["invert", str(recording), "--out", str(tmp_path / "post.nc")]) == 2
    err = capsys.readouterr().err
    assert "the default SWellEx-96 model is not installed. Train it" in err and "acoustic-inv train" in err
    assert len(err.strip().splitlines()) == 1


def test_command_start_up_does_not_import_torch() -> None:
    code = ("import sys; from acoustic_inv.cli import build_parser; build_parser(); "
            "import acoustic_inv.invert_cli, acoustic_inv.plot_posterior_cli, acoustic_inv.posterior, acoustic_inv.synth; "
            "print(sorted(m for m in ('torch', 'propagation', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_real_engine_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """KRAKEN all the way: simulate, train, synthesize a recording at a known truth, invert, check.

    About 30 s: 3000 KRAKEN samples of the tiny scenario, 30 epochs of the tiny cINN.
    """
    from acoustic_inv.datasets import generate
    from acoustic_inv.posterior import bartlett_power
    from acoustic_inv.simulation import Simulator

    scenario_path = tmp_path / "tiny-pekeris.toml"
    scenario_path.write_text(posterior_fixtures.TINY_SCENARIO)
    generate(scenario_path, tmp_path / "data", 3000, seed=0, progress=False)
    config = tmp_path / "train.toml"
    config.write_text(posterior_fixtures.TRAIN_CONFIG)
    model = tmp_path / "model.pt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--data", str(tmp_path / "data"), "--config", str(config), "--out", str(model),
                     "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    scenario = load_scenario(scenario_path)
    synthetic = synthesize(scenario, TRUTH, duration_s=40.0, sample_rate_hz=400.0, snr_db=15.0, seed=1)
    recording = write_synthetic(tmp_path / "rec.wav", synthetic)
    out = tmp_path / "post.nc"
    assert main(["invert", "--model", str(model), str(recording), "-n", "4000", "--seed", "0", "--check", "10",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    document = json.loads(out.with_suffix(".json").read_text())
    assert document["warnings"] == []
    for name, value in TRUTH.items():
        low, high = document["summary"]["parameters"][name]["eti_95"]
        assert low < value < high, (name, low, high)
    tones = document["predictive_check"]["tones"]
    assert document["predictive_check"]["n_failed"] == 0 and all(t["median"] > 0.85 for t in tones), tones
    # the posterior explains the data better than the prior does
    simulator = Simulator(scenario)
    prior = scenario.prior.sample(np.random.default_rng(0), 10)
    observed = read_posterior(out).observed
    d = observed["pressure_real"].values + 1j * observed["pressure_imag"].values
    prior_power = np.array([bartlett_power(simulator.run_engine(t), d) for t in prior])
    assert np.median(prior_power) < min(t["median"] for t in tones) - 0.1


def test_demo_runs_the_whole_chain_with_a_given_model(tmp_path_factory, monkeypatch, capsys):
    """`acoustic-inv demo`: synthesize at a known truth, invert, plot (tiny model, fake engine)."""
    import posterior_fixtures

    import acoustic_inv.synth as synth
    from acoustic_inv.cli import main
    from fake_engine import fake_pressure

    tiny = posterior_fixtures.tiny_model(tmp_path_factory)
    real = synth.synthesize
    monkeypatch.setattr(synth, "synthesize", lambda *a, **k: real(*a, **{**k, "runner": fake_pressure}))
    out = tmp_path_factory.mktemp("demo")
    code = main(["demo", "--model", str(tiny.model), "--out", str(out), "--duration", "20",
                 "--samples", "2000", "--truth", "water_depth_m=101.5"])
    assert code == 0
    text = capsys.readouterr().out
    assert "truth water_depth_m = 101.5 m" in text and "90% interval" in text
    for name in ("recording.wav", "recording.json", "posterior.nc", "posterior.json", "marginals.png"):
        assert (out / name).stat().st_size > 0
    assert main(["demo", "--model", str(tiny.model), "--out", str(out), "--truth", "depth=3"]) == 2
