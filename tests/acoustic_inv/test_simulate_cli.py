"""Tests of the `simulate`, `dataset` and `plot dataset` commands, including a SIGKILL and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scenario_texts
from acoustic_inv.cli import main
from acoustic_inv.datasets import generate, open_dataset, read_meta
from acoustic_inv.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("old, new, expected", [
    ("[prior.water_depth_m]\nlow", "[prior.water_depth_m]\nlwo", "unknown key 'prior.water_depth_m.lwo'"),
    ("depth_m = 30.0", "depth_m = -5.0", "source.depth_m = -5: expected a depth below the surface"),
    ("low = 1000.0\nhigh = 5000.0", "low = 5000.0\nhigh = 1000.0",
     "prior.source_range_m: low = 5000 is not below high = 1000"),
    ('name = "kraken"', 'name = "krakn"', "engine.name = 'krakn': expected one of"),
])
def test_bad_scenario_is_one_line_and_exit_code_2(tmp_path: Path, capsys, old: str, new: str,
                                                  expected: str) -> None:
    path = scenario_texts.write(tmp_path, scenario_texts.PEKERIS.replace(old, new, 1))
    code, out, err = _run(capsys, "simulate", "--scenario", str(path), "-n", "3", "--out",
                          str(tmp_path / "ds"), "--no-progress")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("acoustic-inv simulate: error: ")
    assert expected in err and str(path) in err
    assert not (tmp_path / "ds").exists()


def test_bad_engine_option_names_the_option(tmp_path: Path, capsys) -> None:
    text = scenario_texts.PEKERIS.replace('name = "kraken"\n', 'name = "kraken"\n[engine.options]\nmesh_scal = 2.0\n')
    path = scenario_texts.write(tmp_path, text)
    code, _, err = _run(capsys, "simulate", "-s", str(path), "-n", "3", "--out", str(tmp_path / "ds"))
    assert code == 2 and "engine.options" in err and "mesh_scal" in err


def test_simulate_info_split_and_plot(tmp_path: Path, capsys) -> None:
    scenario = scenario_texts.write(tmp_path)
    out = tmp_path / "ds"
    code, stdout, _ = _run(capsys, "simulate", "--scenario", str(scenario), "-n", "8", "--out", str(out),
                           "--seed", "3", "--no-progress")
    assert code == 0 and "8 samples of pekeris-test (0 failed)" in stdout
    assert read_meta(out)["status"] == "complete"
    # the real engine ran: its version is recorded
    assert "pelagic" in json.loads(open_dataset(out).attrs["versions"])

    code, stdout, _ = _run(capsys, "dataset", "info", str(out))
    assert code == 0 and "8 ok, 0 failed" in stdout and "water_depth_m" in stdout

    code, stdout, _ = _run(capsys, "dataset", "split", str(out), "--fractions", "0.5", "0.5")
    assert code == 0 and "ds-train: 4 samples" in stdout and "ds-test: 4 samples" in stdout

    figure = tmp_path / "fig" / "ds.png"
    code, stdout, _ = _run(capsys, "plot", "dataset", str(out), "--out", str(figure), "--examples", "2")
    assert code == 0 and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, _, err = _run(capsys, "simulate", "--scenario", str(scenario), "-n", "8", "--out", str(out),
                        "--seed", "4", "--no-progress")
    assert code == 2 and "seed = 3, but this run asks for seed = 4" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "dataset", "info", str(tmp_path))
    assert code == 2 and "not an acoustic-inv dataset" in err


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    scenario = scenario_texts.write(tmp_path)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "acoustic_inv.cli", "simulate", "--scenario", str(scenario), "-n", "90",
               "--out", str(out), "--seed", "11", "--chunk-size", "3", "--no-progress"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list((out / "chunks").glob("chunk-*.nc"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    assert read_meta(out)["status"] == "running"
    done = len(list((out / "chunks").glob("chunk-*.nc")))
    assert 2 <= done < 30

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "chunk(s) kept from an earlier run" in resumed.stdout
    assert read_meta(out)["status"] == "complete"

    reference = tmp_path / "reference"
    generate(load_scenario(scenario), reference, 90, seed=11, chunk_size=3, progress=False)
    a, b = open_dataset(out), open_dataset(reference)
    for name in ("sample", "theta", "x", "pressure", "snr_db"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
