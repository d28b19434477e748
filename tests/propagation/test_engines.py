"""Engine registry, options, error propagation and the lost-mode check."""

import dataclasses
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import propagation
from propagation.backends import get_engine, modecheck
from propagation.backends.kraken import KrakenEngine
from propagation.environment import (Environment, FluidLayer, HalfSpace, SoundSpeedProfile,
                                     db_per_wavelength_to_db_per_m_khz)
from propagation.errors import (EngineError, EngineNotFoundError, LostModeError,
                                UnsupportedEnvironmentError)
from propagation.io import load_environment
from propagation.pekeris import PekerisWaveguide

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
PEKERIS = Environment(100.0, SoundSpeedProfile.isovelocity(1500.0),
                      HalfSpace(1700.0, 1.8, db_per_wavelength_to_db_per_m_khz(0.5, 1700.0)), name="Pekeris")
LAYERED = PEKERIS.replace(layers=(FluidLayer(20.0, 1600.0, 1650.0, 1.6, 0.2),))


@pytest.fixture(scope="module")
def swellex():
    return load_environment(DATA_DIR / "scenarios" / "swellex96.toml")


# -- registry and options ---------------------------------------------------------------------------


def test_registry_lists_every_engine_with_version_and_detail():
    infos = {info.name: info for info in propagation.engines()}
    assert list(infos) == ["kraken", "krakenc", "bellhop", "bellhop-fortran"]
    for name in ("kraken", "krakenc", "bellhop"):
        assert infos[name].available and infos[name].version.startswith("pelagic ")
        assert infos[name].detail
    assert get_engine("krakenc").solver == "krakenc"


def test_unknown_engine_names_the_known_ones():
    with pytest.raises(EngineNotFoundError, match=r"unknown engine 'ram': expected one of kraken, krakenc, "
                                                  r"bellhop, bellhop-fortran"):
        propagation.pressure(PEKERIS, 30.0, [50.0], 1000.0, [100.0], engine="ram")
    with pytest.raises(EngineNotFoundError):
        propagation.get_engine(None)


def test_unknown_option_and_bad_option_values_are_named():
    with pytest.raises(TypeError, match=r"engine 'kraken': unknown option 'beams' for pressure; options: "
                                        r"points_per_wavelength"):
        propagation.pressure(PEKERIS, 30.0, [50.0], 1000.0, [100.0], beams=100)
    with pytest.raises(ValueError, match=r"option mesh_scale = -1: expected a number in \(0, 100\]"):
        propagation.pressure(PEKERIS, 30.0, [50.0], 1000.0, [100.0], mesh_scale=-1)
    with pytest.raises(ValueError, match=r"points_per_wavelength \* mesh_scale = 9.6: expected at least 10"):
        propagation.pressure(PEKERIS, 30.0, [50.0], 1000.0, [100.0], mesh_scale=0.2)
    with pytest.raises(ValueError, match=r"option check_modes = 1: expected True or False"):
        propagation.pressure(PEKERIS, 30.0, [50.0], 1000.0, [100.0], check_modes=1)
    with pytest.raises(ValueError, match=r"engine 'bellhop': option beams = 2.5: expected an integer"):
        propagation.pressure(PEKERIS, 30.0, [50.0], 1000.0, [100.0], engine="bellhop", beams=2.5)


def test_capabilities_are_checked_before_running():
    with pytest.raises(EngineError, match=r"kraken: this engine does not compute arrivals; engines that do: "
                                          r"bellhop, bellhop-fortran"):
        propagation.arrivals(PEKERIS, 30.0, 50.0, 1000.0, 100.0, engine="kraken")
    with pytest.raises(EngineError, match=r"bellhop: this engine does not compute modes"):
        propagation.modes(PEKERIS, 100.0, engine="bellhop")


def test_meshes_follow_wavelength_scale_and_floor(swellex):
    engine = get_engine("kraken")
    options = engine.resolve_options({}, "pressure")
    meshes, densities = engine._meshes(swellex, (100.0,), options)
    assert densities == [48.0, 24.0, 24.0]
    # water: 216.5 m at 1487.7 m/s min speed and 100 Hz is 14.55 wavelengths
    assert meshes[0] == math.ceil(48.0 * 216.5 * 100.0 / min(swellex.ssp.speed_mps))
    assert meshes[1] == math.ceil(24.0 * 23.5 * 100.0 / 1572.368)
    low, _ = engine._meshes(swellex, (30.0,), options)
    assert low[1] == 20  # 23.5 m of sediment at 30 Hz: the floor
    doubled, _ = engine._meshes(swellex, (100.0,), {**options, "mesh_scale": 2.0})
    assert doubled[0] == math.ceil(96.0 * 216.5 * 100.0 / min(swellex.ssp.speed_mps))
    # KRAKEN scales meshes by f / f_max: the floor holds at the lowest frequency
    spread, _ = engine._meshes(swellex, (50.0, 400.0), options)
    assert spread[1] * 50.0 / 400.0 >= 20


# -- environments an engine cannot take; failures carry the engine's diagnostics ----------------------


@pytest.mark.parametrize("engine", ["bellhop", "bellhop-fortran"])
def test_bellhop_refuses_sediment_layers(engine):
    with pytest.raises(UnsupportedEnvironmentError, match=rf"{engine}: the environment has 1 sediment layer"):
        propagation.pressure(LAYERED, 30.0, [50.0], 1000.0, [100.0], engine=engine)


def test_kraken_refuses_a_halfspace_slower_than_the_water():
    slow = PEKERIS.replace(halfspace=HalfSpace(1450.0, 1.8, 0.1))
    with pytest.raises(UnsupportedEnvironmentError, match=r"kraken: half-space speed 1450 m/s .* no mode is trapped"):
        propagation.pressure(slow, 30.0, [50.0], 1000.0, [100.0])


def test_pelagic_errors_become_engine_errors_with_diagnostics(monkeypatch):
    original = KrakenEngine.document

    def coarse(self, *args, **kwargs):
        doc = original(self, *args, **kwargs)
        doc["media"][0]["mesh"] = 3  # below pelagic's minimum of 10
        return doc

    monkeypatch.setattr(KrakenEngine, "document", coarse)
    with pytest.raises(EngineError, match=r"kraken: pelagic ValidationError \[KR0201\]") as info:
        propagation.pressure(PEKERIS, 30.0, [50.0], 1000.0, [100.0])
    assert info.value.engine == "kraken"
    assert "media[0].mesh" in info.value.details


def test_pelagic_warnings_become_engine_errors(monkeypatch):
    import pelagic
    from pelagic.errors import Diagnostic

    engine = get_engine("kraken")
    run = KrakenEngine._run

    def warn_first(self, doc):
        real = pelagic.kraken.Case.from_dict

        def from_dict(document):
            import warnings
            warnings.warn(pelagic.PelagicWarning(Diagnostic("KR9999", "warning", "media", "a test warning")))
            return real(document)

        monkeypatch.setattr(pelagic.kraken.Case, "from_dict", staticmethod(from_dict))
        return run(self, doc)

    monkeypatch.setattr(KrakenEngine, "_run", warn_first)
    with pytest.raises(EngineError, match=r"pelagic warned about the case") as info:
        engine.pressure(PEKERIS, 30.0, np.array([50.0]), 1000.0, (100.0,),
                        **engine.resolve_options({}, "pressure"))
    assert "KR9999: a test warning" in info.value.details


def _fake_bellhop(directory: Path) -> Path:
    """A stand-in bellhop.exe that fails the way BELLHOP does: a .prt with a fatal error."""
    path = directory / "fake-bellhop"
    path.write_text("#!/bin/sh\n"
                    "printf ' BELLHOP (fake)\\n\\n *** FATAL ERROR ***\\n Generated by program or subroutine: "
                    "FakeRead\\n Nothing works today\\n' > \"$1.prt\"\n"
                    "exit 1\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_failing_bellhop_run_raises_with_the_prt_listing(tmp_path, monkeypatch):
    monkeypatch.setenv("ACOUSTIC_INV_BELLHOP", str(_fake_bellhop(tmp_path)))
    path_before = os.environ["PATH"]
    with pytest.raises(EngineError, match=r"bellhop-fortran: BELLHOP failed: Generated by program or "
                                          r"subroutine: FakeRead Nothing works today") as info:
        propagation.pressure(PEKERIS, 30.0, [50.0], 1000.0, [100.0], engine="bellhop-fortran")
    assert "*** FATAL ERROR ***" in info.value.details
    assert os.environ["PATH"] == path_before  # restored after the call


def test_missing_bellhop_binary_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("ACOUSTIC_INV_BELLHOP", str(tmp_path / "nowhere" / "bellhop.exe"))
    info = {i.name: i for i in propagation.engines()}["bellhop-fortran"]
    assert not info.available and "ACOUSTIC_INV_BELLHOP" in info.detail
    with pytest.raises(EngineNotFoundError, match=r"engine 'bellhop-fortran' is not available"):
        propagation.pressure(PEKERIS, 30.0, [50.0], 1000.0, [100.0], engine="bellhop-fortran")


@pytest.mark.bellhop
def test_real_bellhop_failure_carries_its_prt(requires_bellhop):
    # arlpy writes the frequency with 6 decimals: 1e-9 Hz becomes 0 and BELLHOP stops in its
    # attenuation routine; our validation accepts any positive frequency.
    with pytest.raises(EngineError, match=r"bellhop-fortran: BELLHOP failed") as info:
        propagation.pressure(PEKERIS, 30.0, [50.0], 1000.0, [1e-9], engine="bellhop-fortran")
    assert "*** FATAL ERROR ***" in info.value.details
    assert "BELLHOP" in info.value.details


# -- the lost-mode check ------------------------------------------------------------------------------


def test_zero_crossings_of_sine_modes():
    z = np.linspace(0.0, 100.0, 1001)
    shapes = np.stack([np.sin((m - 0.5) * np.pi * z / 100.0) for m in range(1, 8)], axis=1)
    np.testing.assert_array_equal(modecheck.zero_crossings(shapes), np.arange(7))
    # complex rotation and round-off tails do not change the count
    tail = shapes.copy()
    tail[-50:] = 1e-14 * np.cos(np.arange(50))[:, None]
    np.testing.assert_array_equal(modecheck.zero_crossings(tail * np.exp(0.7j)), np.arange(7))


def test_sturm_count_matches_the_analytic_pekeris_count():
    lossless = PEKERIS.replace(halfspace=HalfSpace(1700.0, 1.8, 0.0))
    oracle = PekerisWaveguide.from_environment(lossless)
    for freq in (20.0, 75.0, 200.0):
        exact = oracle.wavenumbers(freq).size
        k_cut2 = (2 * math.pi * freq / 1700.0) ** 2
        assert modecheck.sturm_count(lossless, freq, k_cut2) == exact
        verified, c_used = modecheck.verified_mode_count(lossless, freq, 1700.0)
        assert exact - 1 <= verified <= exact and c_used < 1700.0


def _modes_on_grid(env, freq_hz):
    """KRAKEN's wavenumbers and shapes on the mesh grid (what the engine checks)."""
    result = propagation.modes(env, freq_hz, check_modes=False)
    return result["wavenumber"].values, result["shape"].values.T


def test_check_passes_on_real_results_and_fires_on_a_dropped_mode(swellex):
    k, shapes = _modes_on_grid(swellex, 49.0)
    assert k.size == 42
    modecheck.check_modes("kraken", swellex, 49.0, k, shapes, 5200.0)
    # a mode lost from the middle: later modes have one zero crossing too many
    keep = np.delete(np.arange(k.size), 17)
    with pytest.raises(LostModeError, match=r"kraken: 49 Hz: at least 1 mode\(s\) lost of the 41 returned: mode 18 "
                                            r"\(phase speed [0-9.]+ m/s\) has 18 zero crossings, expected 17; an "
                                            r"independent Sturm count finds 42 modes"):
        modecheck.check_modes("kraken", swellex, 49.0, k[keep], shapes[:, keep], 5200.0)
    # two lost at the start
    with pytest.raises(LostModeError, match=r"at least 2 mode\(s\) lost of the 40 returned: mode 1 "):
        modecheck.check_modes("kraken", swellex, 49.0, k[2:], shapes[:, 2:], 5200.0)
    # the last mode lost (4830 m/s, well inside the 5200 m/s cutoff): only the Sturm count sees it
    with pytest.raises(LostModeError, match=r"1 mode\(s\) lost: the engine returned 41 modes, an independent "
                                            r"Sturm count finds 42"):
        modecheck.check_modes("kraken", swellex, 49.0, k[:-1], shapes[:, :-1], 5200.0)


def test_krakenc_losing_a_mode_on_a_real_case_is_caught(swellex):
    """pelagic 0.5.0's KRAKENC drops mode 12 of this perturbed SWellEx-96 seabed (found by a random scan:
    of 30 such cases it lost modes in 4 and failed outright in 7); KRAKEN solves it."""
    env = swellex.replace(water_depth_m=227.82,
                          layers=(FluidLayer(37.62, 1615.48, 1658.15, 1.557, 0.378), swellex.layers[1]))
    reference = propagation.modes(env, 79.0, engine="kraken", max_range_m=5000.0)
    assert reference.sizes["mode"] == 71
    with pytest.raises(LostModeError, match=r"krakenc: 79 Hz: at least 1 mode\(s\) lost of the 70 returned: "
                                            r"mode 12 \(phase speed 1702.3[0-9] m/s\)"):
        propagation.pressure(env, 54.0, [100.0, 150.0], 3000.0, [79.0], engine="krakenc")


def test_check_flags_duplicates_and_disorder_as_engine_errors(swellex):
    k, shapes = _modes_on_grid(swellex, 49.0)
    order = np.r_[np.arange(10), 9, np.arange(10, k.size)]
    perturbed = k[order] - 1e-9 * np.arange(order.size)  # keep the wavenumbers strictly decreasing
    with pytest.raises(EngineError, match=r"a duplicated or spurious mode among the 43 returned: mode 11 "
                                          r"\(phase speed [0-9.]+ m/s\) has 9 zero crossings, expected 10") as info:
        modecheck.check_modes("kraken", swellex, 49.0, perturbed, shapes[:, order], 5200.0)
    assert not isinstance(info.value, LostModeError)
    with pytest.raises(EngineError, match=r"not strictly decreasing"):
        modecheck.check_modes("kraken", swellex, 49.0, k[::-1], shapes[:, ::-1], 5200.0)


def test_a_lost_mode_in_an_engine_result_raises_from_the_api(swellex, monkeypatch):
    run = KrakenEngine._run

    def lose_mode_7(self, doc):
        result = run(self, doc)
        freqs = []
        for freq in result.frequencies:
            modes = freq.profiles[0].modes
            keep = np.delete(np.arange(modes.wavenumbers.size), 6)
            fewer = dataclasses.replace(
                modes, wavenumbers=modes.wavenumbers[keep], eigenfunctions=modes.eigenfunctions[:, keep],
                phase_speed_mps=modes.phase_speed_mps[keep], group_speed_mps=modes.group_speed_mps[keep],
                attenuation_nepers_per_m=modes.attenuation_nepers_per_m[keep])
            profile = dataclasses.replace(freq.profiles[0], modes=fewer)
            freqs.append(dataclasses.replace(freq, profiles=(profile,)))
        return dataclasses.replace(result, frequencies=tuple(freqs))

    monkeypatch.setattr(KrakenEngine, "_run", lose_mode_7)
    with pytest.raises(LostModeError, match=r"kraken: 49 Hz: at least 1 mode\(s\) lost of the 41 returned: "
                                            r"mode 7 ") as info:
        propagation.pressure(swellex, 54.0, [100.0, 150.0], 3000.0, [49.0])
    assert isinstance(info.value, EngineError) and info.value.engine == "kraken"
    # switched off, the same damaged result is passed on (the option exists for diagnosis only)
    p = propagation.pressure(swellex, 54.0, [100.0, 150.0], 3000.0, [49.0], check_modes=False)
    assert p.shape == (1, 2)


def test_a_lost_mode_is_retried_on_finer_meshes_before_it_is_raised(swellex, monkeypatch):
    scales = []

    def solve_once(self, env, freqs_hz, source_depth_m, receiver_depths_m, ranges_m, options, *args):
        scales.append(options["mesh_scale"])
        if options["mesh_scale"] < 1.9:
            raise LostModeError(self.name, "49 Hz: at least 1 mode(s) lost")
        return solve(self, env, freqs_hz, source_depth_m, receiver_depths_m, ranges_m, options, *args)

    solve = KrakenEngine._solve_once
    monkeypatch.setattr(KrakenEngine, "_solve_once", solve_once)
    p = propagation.pressure(PEKERIS, 30.0, [50.0], 2000.0, [100.0], engine="kraken")
    assert np.all(np.isfinite(p.values)) and scales == [1.0, 1.5, 2.0]
    scales.clear()
    propagation.pressure(PEKERIS, 30.0, [50.0], 2000.0, [100.0], engine="kraken", mesh_scale=2.0)
    assert scales == [2.0]
    scales.clear()
    with pytest.raises(LostModeError, match="49 Hz"):
        propagation.pressure(PEKERIS, 30.0, [50.0], 2000.0, [100.0], engine="kraken", lost_mode_retries=1)
    assert scales == [1.0, 1.5]


@pytest.mark.slow
def test_a_swellex96_draw_that_lost_a_mudstone_mode_is_recovered(swellex):
    """Draw 0 of the 1,180 lost-mode failures of the 20,000-sample swellex96 dataset (seed 0): KRAKEN
    loses mode 116 at 148 Hz (3860 m/s, in the mudstone) on the default mesh; a 1.5x finer one finds it."""
    top, thickness = 1639.0866629123752, 9.267620663904662
    sediment = swellex.layers[0]
    gradient = (sediment.sound_speed_bottom_mps - sediment.sound_speed_top_mps) / sediment.thickness_m
    env = swellex.replace(water_depth_m=237.10373445600186, layers=(
        FluidLayer(thickness, top, top + gradient * thickness, 2.1408695194615093, 0.06630624726589719),
        swellex.layers[1]))
    receivers = np.linspace(94.125, 212.25, 21)
    args = (env, 112.39748715639287, receivers, 7037.902516295687, [49.0, 79.0, 112.0, 148.0, 235.0])
    with pytest.raises(LostModeError, match=r"148 Hz: at least 1 mode\(s\) lost of the 129 returned: mode 116"):
        propagation.pressure(*args, engine="kraken", lost_mode_retries=0)
    retried = propagation.pressure(*args, engine="kraken")
    finer = propagation.pressure(*args, engine="kraken", mesh_scale=1.5, lost_mode_retries=0)
    np.testing.assert_allclose(retried.values, finer.values)
