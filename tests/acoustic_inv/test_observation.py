"""Tests of acoustic_inv.observation: invariance of the features, the noise model, snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from acoustic_inv.errors import DataError
from acoustic_inv.observation import ObservationModel, add_noise, noise_variance, principal_vectors

FREQS = (49.0, 112.0, 235.0)
DEPTHS = (94.0, 110.0, 130.0, 150.0, 170.0, 212.0)


def _pressure(rng: np.random.Generator, *lead: int) -> np.ndarray:
    shape = (*lead, len(FREQS), len(DEPTHS))
    return 1e-3 * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def _scalars(rng: np.random.Generator, *lead: int) -> np.ndarray:
    """Arbitrary per-tone complex factors: level over 6 decades, any phase."""
    shape = (*lead, len(FREQS), 1)
    return 10.0 ** rng.uniform(-3, 3, shape) * np.exp(2j * np.pi * rng.random(shape))


@pytest.mark.parametrize("kind", ["unit_pressure", "csdm"])
def test_features_do_not_depend_on_source_level_and_phase(kind: str) -> None:
    rng = np.random.default_rng(0)
    model = ObservationModel(FREQS, DEPTHS, kind, reference_receiver=2)
    p = _pressure(rng, 50)
    x = model.features_from_pressure(p)
    assert x.shape == (50, model.n_features)
    x_scaled = model.features_from_pressure(p * _scalars(rng, 50))
    np.testing.assert_allclose(x_scaled, x, atol=1e-12)
    # The features do depend on the shape of the field.
    p2 = p.copy()
    p2[:, 0, 3] *= 2.0
    assert not np.allclose(model.features_from_pressure(p2), x)


def test_raw_pressure_features_are_not_invariant() -> None:
    rng = np.random.default_rng(1)
    model = ObservationModel(FREQS, DEPTHS, "pressure")
    p = _pressure(rng)
    x = model.features_from_pressure(p)
    assert x.shape == (2 * len(FREQS) * len(DEPTHS),)
    np.testing.assert_array_equal(x[: len(DEPTHS)], p[0].real)
    assert not np.allclose(model.features_from_pressure(2j * p), x)


def test_unit_pressure_layout() -> None:
    rng = np.random.default_rng(2)
    ref = 4
    model = ObservationModel(FREQS, DEPTHS, "unit_pressure", reference_receiver=ref)
    p = _pressure(rng)
    x = model.features_from_pressure(p).reshape(len(FREQS), 2 * len(DEPTHS) - 1)
    n = len(DEPTHS)
    real, imag = x[:, :n], x[:, n:]
    imag_full = np.insert(imag, ref, 0.0, axis=1)
    unit = real + 1j * imag_full
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0)
    assert np.all(real[:, ref] > 0)
    # unit is p up to a complex factor per tone
    ratio = unit / p
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones((1, n)), rtol=1e-12)
    names = model.feature_names()
    assert len(names) == model.n_features == len(FREQS) * (2 * n - 1)
    assert names[0] == "re[49Hz,r0]" and f"im[49Hz,r{ref}]" not in names


def test_one_snapshot_gives_the_pressure_features_and_many_average() -> None:
    rng = np.random.default_rng(3)
    for kind in ("unit_pressure", "csdm"):
        model = ObservationModel(FREQS, DEPTHS, kind)
        p = _pressure(rng)
        np.testing.assert_allclose(model.features_from_snapshots(p[None]), model.features_from_pressure(p),
                                   atol=1e-12)
        # Snapshots of one coherent field with fluctuating level and phase give the same features.
        snapshots = p[None] * _scalars(rng, 8)
        np.testing.assert_allclose(model.features_from_snapshots(snapshots), model.features_from_pressure(p),
                                   atol=1e-10)


def test_principal_vector_of_a_rank_one_csdm() -> None:
    rng = np.random.default_rng(4)
    p = _pressure(rng)
    v = principal_vectors(p[None])
    for f in range(len(FREQS)):
        overlap = abs(np.vdot(v[f], p[f])) / (np.linalg.norm(v[f]) * np.linalg.norm(p[f]))
        assert overlap == pytest.approx(1.0)
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), np.linalg.norm(p, axis=-1))


def test_noise_has_the_requested_snr_per_tone() -> None:
    rng = np.random.default_rng(5)
    p = _pressure(rng) * np.array([1.0, 10.0, 0.01])[:, None]  # very different levels per tone
    snr_db = 12.0
    noise = np.stack([add_noise(p, snr_db, rng) - p for _ in range(4000)])
    measured = np.mean(np.abs(noise) ** 2, axis=(0, 2))
    expected = np.mean(np.abs(p) ** 2, axis=-1) / 10 ** (snr_db / 10)
    np.testing.assert_allclose(measured, expected, rtol=0.05)
    np.testing.assert_allclose(noise_variance(p, snr_db), expected)
    # circular: real and imaginary parts carry half the power each, uncorrelated
    assert np.mean(noise.real ** 2) == pytest.approx(np.mean(noise.imag ** 2), rel=0.05)
    assert abs(np.mean(noise.real * noise.imag)) < 0.05 * np.mean(noise.real ** 2)


def test_noisy_features_are_invariant_too() -> None:
    # The noise scales with each tone's level, so the same noise draw on a louder tone gives the same
    # features; a phase factor rotates the (circular) noise's distribution onto itself, so with
    # complex factors the invariance holds in distribution, draw by draw only for level factors.
    rng = np.random.default_rng(6)
    model = ObservationModel(FREQS, DEPTHS)
    p = _pressure(rng)
    a = np.abs(_scalars(rng))
    x = model.features_from_pressure(add_noise(p, 10.0, np.random.default_rng(9)))
    x_scaled = model.features_from_pressure(add_noise(a * p, 10.0, np.random.default_rng(9)))
    np.testing.assert_allclose(x_scaled, x, atol=1e-12)


def test_degenerate_inputs_give_finite_features() -> None:
    model = ObservationModel(FREQS, DEPTHS, reference_receiver=0)
    p = _pressure(np.random.default_rng(7))
    p[0, 0] = 0.0  # reference element in a null
    p[1] = 0.0  # a silent tone
    x = model.features_from_pressure(p)
    assert np.all(np.isfinite(x))


def test_bad_shapes_and_settings() -> None:
    model = ObservationModel(FREQS, DEPTHS)
    with pytest.raises(DataError, match="trailing shape"):
        model.features_from_pressure(np.ones((2, 3)))
    with pytest.raises(DataError, match="reference_receiver = 6"):
        ObservationModel(FREQS, DEPTHS, reference_receiver=6)
    with pytest.raises(DataError, match="features = 'beam'"):
        ObservationModel(FREQS, DEPTHS, features="beam")
    assert ObservationModel(FREQS, DEPTHS, "csdm").n_features == len(FREQS) * len(DEPTHS) ** 2
