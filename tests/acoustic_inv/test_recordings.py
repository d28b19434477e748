"""Tests of acoustic_inv.recordings: WAV/netCDF/SIO readers and writers, windows, and bad input."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from acoustic_inv.errors import DataError
from acoustic_inv.recordings import Recording, read_recording, read_sio_header, write_netcdf, write_sio, write_wav

FS = 1500.0
DEPTHS = (94.125, 99.755, 105.38, 111.0, 116.62)
TONES = (49.0, 64.0)


@pytest.fixture(scope="module")
def rec() -> Recording:
    rng = np.random.default_rng(0)
    return Recording(0.3 * rng.normal(size=(3001, len(DEPTHS))), FS, DEPTHS, TONES)


def _counts_step(dtype: str, peak: float) -> float:
    """Quantization step of an integer dtype whose full scale is just above ``peak``."""
    bits = {"int16": 16, "int24": 24, "int32": 32}[dtype]
    return peak / (2 ** (bits - 1) - 1)


# --- WAV ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "int24", "int32"])
def test_wav_round_trip(tmp_path: Path, rec: Recording, dtype: str) -> None:
    path = write_wav(tmp_path / "r.wav", rec, dtype=dtype)
    back = read_recording(path)
    peak = float(np.abs(rec.pressure).max())
    tol = {"float32": 1e-7 * peak, "float64": 0.0}.get(dtype) if dtype.startswith("float") else \
        0.51 * _counts_step(dtype, peak)
    np.testing.assert_allclose(back.pressure, rec.pressure, rtol=0, atol=tol)
    assert back.sample_rate_hz == FS
    assert back.receiver_depths_m == DEPTHS
    assert back.source_tones_hz == TONES
    assert back.start_time_s == 0.0
    assert back.path == str(path)


@pytest.mark.parametrize("dtype", ["int16", "int24", "int32", "float32"])
def test_wav_written_here_reads_the_same_in_scipy(tmp_path: Path, rec: Recording, dtype: str) -> None:
    path = write_wav(tmp_path / "r.wav", rec, dtype=dtype)
    rate, data = wavfile.read(path)
    assert rate == int(FS) and data.shape == rec.pressure.shape
    ours = read_recording(path).pressure
    if dtype == "float32":
        np.testing.assert_array_equal(ours, data.astype(np.float64))
    else:
        # scipy returns left-justified integers: full scale is 2**31 for 24 and 32 bits.
        full = json.loads(path.with_suffix(".json").read_text())["full_scale"]
        top = 2.0**15 if dtype == "int16" else 2.0**31
        np.testing.assert_allclose(ours, data.astype(np.float64) / top * full, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.uint8])
def test_wav_written_by_scipy_reads_here(tmp_path: Path, dtype: type) -> None:
    rng = np.random.default_rng(3)
    if dtype is np.float32:
        data = rng.normal(size=(500, 3)).astype(np.float32)
        expected = data.astype(np.float64)
    elif dtype is np.uint8:
        data = rng.integers(0, 256, size=(500, 3)).astype(np.uint8)
        expected = (data.astype(np.float64) - 128) / 128
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, size=(500, 3), endpoint=True).astype(dtype)
        expected = data.astype(np.float64) / -float(info.min)
    wavfile.write(tmp_path / "s.wav", 2000, data)
    got = read_recording(tmp_path / "s.wav")
    assert got.sample_rate_hz == 2000.0 and got.receiver_depths_m is None
    np.testing.assert_array_equal(got.pressure, expected)


def test_wav_window_reads_only_that_span(tmp_path: Path, rec: Recording) -> None:
    path = write_wav(tmp_path / "r.wav", rec, dtype="int24")
    whole = read_recording(path)
    part = read_recording(path, start_s=0.5, duration_s=0.2)
    assert part.start_time_s == pytest.approx(0.5)
    np.testing.assert_array_equal(part.pressure, whole.pressure[750:1050])
    np.testing.assert_allclose(part.times_s()[[0, -1]], [0.5, 0.5 + 299 / FS])
    tail = read_recording(path, start_s=1.0)
    np.testing.assert_array_equal(tail.pressure, whole.pressure[1500:])


def test_wav_sidecar_channel_order_deep_to_shallow_is_flipped(tmp_path: Path, rec: Recording) -> None:
    path = write_wav(tmp_path / "r.wav", rec, dtype="float64", channel_order="deep_to_shallow")
    _, raw = wavfile.read(path)
    np.testing.assert_array_equal(raw[:, 0], rec.pressure[:, -1])  # the file starts with the deepest
    back = read_recording(path)
    np.testing.assert_array_equal(back.pressure, rec.pressure)
    assert back.receiver_depths_m == DEPTHS


def test_wav_without_sidecar_takes_caller_metadata(tmp_path: Path, rec: Recording) -> None:
    path = write_wav(tmp_path / "r.wav", rec, sidecar=False, dtype="float64")
    assert not path.with_suffix(".json").exists()
    bare = read_recording(path)
    assert bare.receiver_depths_m is None and bare.source_tones_hz is None
    given = read_recording(path, receiver_depths_m=DEPTHS, source_tones_hz=TONES, channel_order="deep_to_shallow")
    np.testing.assert_array_equal(given.pressure, rec.pressure[:, ::-1])
    assert given.receiver_depths_m == DEPTHS and given.source_tones_hz == TONES


def _sidecar(path: Path, **table: object) -> None:
    path.with_suffix(".json").write_text(json.dumps(table))


@pytest.mark.parametrize("table, message", [
    ({"sample_rate_hz": 1500, "colour": "red"}, r"r\.json: unknown sidecar key 'colour'"),
    ({"sample_rate_hz": 1600},
     r"r\.wav: sample_rate_hz = 1600 from the sidecar disagrees with the WAV header's 1500 Hz"),
    ({"receiver_depths_m": [10.0, 20.0]}, r"r\.wav: the file has 5 channels but receiver_depths_m lists 2 depths"),
    ({"receiver_depths_m": [50, 40, 30, 20, 10]},
     r"receiver_depths_m\[1\] = 40 m; expected depths listed shallow to deep"),
    ({"channel_order": "upside_down"}, r"channel_order = 'upside_down'; expected one of"),
    ({"source_tones_hz": [49, -1]}, r"source_tones_hz = .*expected positive frequencies"),
    ({"sample_rate_hz": "fast"}, r"sample_rate_hz = 'fast'; expected a positive number"),
])
def test_wav_bad_sidecar_raises_naming_the_problem(tmp_path: Path, rec: Recording, table: dict,
                                                   message: str) -> None:
    path = write_wav(tmp_path / "r.wav", rec, sidecar=False, dtype="float32")
    _sidecar(path, **table)
    with pytest.raises(DataError, match=message):
        read_recording(path)


def test_sidecar_that_is_not_json_raises(tmp_path: Path, rec: Recording) -> None:
    path = write_wav(tmp_path / "r.wav", rec, sidecar=False)
    path.with_suffix(".json").write_text("{\"sample_rate_hz\": 1500,\n oops}")
    with pytest.raises(DataError, match=r"r\.json: not valid JSON \(line 2"):
        read_recording(path)


def test_sidecar_sample_rate_may_refine_the_header_within_rounding(tmp_path: Path, rec: Recording) -> None:
    path = write_wav(tmp_path / "r.wav", rec, sidecar=False)
    _sidecar(path, sample_rate_hz=1500.2)
    assert read_recording(path).sample_rate_hz == 1500.2


def test_caller_metadata_disagreeing_with_sidecar_raises(tmp_path: Path, rec: Recording) -> None:
    path = write_wav(tmp_path / "r.wav", rec)
    with pytest.raises(DataError, match=r"receiver_depths_m = .* given, but the sidecar r\.json says"):
        read_recording(path, receiver_depths_m=[1, 2, 3, 4, 5])
    with pytest.raises(DataError, match=r"sample_rate_hz = 1000 from the caller disagrees"):
        read_recording(path, sample_rate_hz=1000)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_wav_with_non_finite_samples_raises(tmp_path: Path, bad: float) -> None:
    data = np.zeros((100, 3), dtype=np.float32)
    data[40, 2] = bad
    wavfile.write(tmp_path / "n.wav", 1500, data)
    with pytest.raises(DataError,
                       match=r"n\.wav: 1 non-finite samples \(NaN or Inf\), the first at sample 40 of channel 2"):
        read_recording(tmp_path / "n.wav")


def test_truncated_wav_raises(tmp_path: Path, rec: Recording) -> None:
    path = write_wav(tmp_path / "r.wav", rec, sidecar=False)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 1000])
    with pytest.raises(DataError,
                       match=r"r\.wav: truncated WAV file \(the data chunk declares \d+ bytes but \d+ follow\)"):
        read_recording(path)
    path.write_bytes(blob[:30])
    with pytest.raises(DataError, match=r"r\.wav: truncated WAV file \(the 'fmt ' chunk runs past the end"):
        read_recording(path)


def test_corrupt_wav_raises(tmp_path: Path) -> None:
    (tmp_path / "g.wav").write_bytes(b"this is not audio at all, just some text" * 10)
    with pytest.raises(DataError, match=r"g\.wav: not a readable WAV file \(no RIFF/WAVE header\)"):
        read_recording(tmp_path / "g.wav")


def test_unknown_format_and_missing_file_raise(tmp_path: Path) -> None:
    (tmp_path / "r.mp3").write_bytes(b"ID3")
    with pytest.raises(DataError, match=r"r\.mp3: unknown recording format '\.mp3'; expected one of \.wav"):
        read_recording(tmp_path / "r.mp3")
    with pytest.raises(DataError, match=r"nothere\.wav: no such file"):
        read_recording(tmp_path / "nothere.wav")


@pytest.mark.parametrize("start, duration, message", [
    (3.0, None, r"window start 3 s is outside the recording \(the recording spans 0-2.00067 s\)"),
    (-0.5, 1.0, r"window start -0.5 s is outside the recording"),
    (1.5, 1.0, r"window 1.5-2.5 s ends after the recording"),
    (0.0, 0.0, r"window duration 0.0 s; expected a positive time"),
    (0.0, 1e-5, r"window duration 1e-05 s is shorter than one sample"),
])
def test_window_outside_the_recording_raises(tmp_path: Path, rec: Recording, start: float,
                                             duration: float | None, message: str) -> None:
    path = write_wav(tmp_path / "r.wav", rec)
    with pytest.raises(DataError, match=r"r\.wav: " + message):
        read_recording(path, start_s=start, duration_s=duration)


def test_integer_writer_refuses_to_clip(tmp_path: Path, rec: Recording) -> None:
    from acoustic_inv.errors import ConfigError

    with pytest.raises(ConfigError, match=r"would clip at full_scale = 0.1"):
        write_wav(tmp_path / "r.wav", rec, dtype="int16", full_scale=0.1)


# --- SIO ----------------------------------------------------------------------------------------


def _handmade_sio(path: Path, order: str, samples: np.ndarray, spr: int, *, code: str = "f", ident: int = 7,
                  is_real: int = 1, constant: int = 32677) -> None:
    """An SIO file built byte by byte from the documented layout (independent of write_sio):
    header record, then records of ``spr`` samples, channel 0, 1, ... in turn. ``samples`` is
    (n, nc) in file channel order; the last group is zero-padded."""
    n, nc = samples.shape
    width = struct.calcsize(code)
    rl = spr * width
    groups = -(-n // spr)
    head = struct.pack(f"{order}8i", ident, groups * nc, rl, nc, width, is_real, n, constant)
    head += b"handmade.sio".ljust(24, b"\x00") + b"a comment".ljust(72, b"\x00")
    blob = bytearray(head.ljust(rl, b"\x00"))
    for g in range(groups):
        for c in range(nc):
            chunk = samples[g * spr:(g + 1) * spr, c]
            values = [v if code in "fd" else int(v) for v in chunk] + [0] * (spr - len(chunk))
            blob += struct.pack(f"{order}{spr}{code}", *values)
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("order", [">", "<"])
def test_sio_reader_follows_the_documented_layout(tmp_path: Path, order: str) -> None:
    # Sample value 1000 * channel + index makes any mix-up of records or channels visible.
    n, nc, spr = 300, 3, 64
    samples = np.array([[1000.0 * c + i for c in range(nc)] for i in range(n)])
    _handmade_sio(tmp_path / "h.sio", order, samples, spr)
    header = read_sio_header(tmp_path / "h.sio")
    assert (header.byte_order, header.id, header.n_channels, header.bytes_per_record, header.samples_per_channel,
            header.is_float, header.float_flag, header.name, header.comment) == (
        order, 7, nc, 256, n, True, 1, "handmade.sio", "a comment")
    got = read_recording(tmp_path / "h.sio", sample_rate_hz=100.0, channel_order="shallow_to_deep")
    np.testing.assert_array_equal(got.pressure, samples)
    # A window starting and ending inside records.
    part = read_recording(tmp_path / "h.sio", start_s=0.7, duration_s=1.5, sample_rate_hz=100.0,
                          channel_order="shallow_to_deep")
    np.testing.assert_array_equal(part.pressure, samples[70:220])
    # SIO files default to the SWellEx-96 VLA order: the first channel is the deepest.
    flipped = read_recording(tmp_path / "h.sio", sample_rate_hz=100.0, receiver_depths_m=[10, 20, 30])
    np.testing.assert_array_equal(flipped.pressure, samples[:, ::-1])


@pytest.mark.parametrize("order", [">", "<"])
def test_sio_integer_samples_are_scaled_to_full_scale(tmp_path: Path, order: str) -> None:
    counts = np.array([[-32768, 0], [16384, 32767], [1, -1]], dtype=float)
    _handmade_sio(tmp_path / "i.sio", order, counts, 64, code="h", is_real=0)
    got = read_recording(tmp_path / "i.sio", sample_rate_hz=10.0, channel_order="shallow_to_deep")
    np.testing.assert_array_equal(got.pressure, counts / 32768)


@pytest.mark.parametrize("byte_order", ["big", "little"])
@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_sio_round_trip(tmp_path: Path, rec: Recording, byte_order: str, dtype: str) -> None:
    path = write_sio(tmp_path / "r.sio", rec, dtype=dtype, byte_order=byte_order, samples_per_record=128)
    assert read_sio_header(path).byte_order == (">" if byte_order == "big" else "<")
    back = read_recording(path, start_s=0.3, duration_s=1.1)
    peak = float(np.abs(rec.pressure).max())
    tol = 1e-7 * peak if dtype == "float32" else 0.51 * _counts_step(dtype, peak)
    np.testing.assert_allclose(back.pressure, rec.pressure[450:2100], rtol=0, atol=tol)
    assert back.receiver_depths_m == DEPTHS and back.source_tones_hz == TONES
    assert back.start_time_s == pytest.approx(0.3)


def test_sio_written_deep_to_shallow_has_the_deepest_channel_first(tmp_path: Path, rec: Recording) -> None:
    path = write_sio(tmp_path / "r.sio", rec, samples_per_record=128, sidecar=False)
    first = np.frombuffer(path.read_bytes()[512:1024], dtype=">f4")  # record 1: channel 0, samples 0-127
    np.testing.assert_allclose(first, rec.pressure[:128, -1], rtol=1e-6)
    back = read_recording(path, sample_rate_hz=FS, receiver_depths_m=DEPTHS)
    np.testing.assert_allclose(back.pressure, rec.pressure, rtol=1e-6, atol=1e-7)


def test_sio_without_sample_rate_raises(tmp_path: Path, rec: Recording) -> None:
    path = write_sio(tmp_path / "r.sio", rec, samples_per_record=128, sidecar=False)
    with pytest.raises(DataError, match=r"r\.sio: an SIO header holds no sample rate; give sample_rate_hz"):
        read_recording(path)


def test_sio_wrong_channel_count_raises(tmp_path: Path, rec: Recording) -> None:
    path = write_sio(tmp_path / "r.sio", rec, samples_per_record=128, sidecar=False)
    with pytest.raises(DataError, match=r"r\.sio: the file has 5 channels but receiver_depths_m lists 21 depths"):
        read_recording(path, sample_rate_hz=FS, receiver_depths_m=np.linspace(94, 212, 21))


def test_truncated_sio_raises(tmp_path: Path, rec: Recording) -> None:
    path = write_sio(tmp_path / "r.sio", rec, samples_per_record=128)
    blob = path.read_bytes()
    path.write_bytes(blob[:-100])
    with pytest.raises(DataError, match=r"r\.sio: truncated SIO file \(\d+ bytes; its header declares 3001 samples"):
        read_recording(path)
    path.write_bytes(blob[:20])
    with pytest.raises(DataError, match=r"r\.sio: truncated SIO file \(20 bytes"):
        read_recording(path)


def test_sio_with_bad_byte_order_constant_or_header_raises(tmp_path: Path) -> None:
    samples = np.ones((10, 2))
    _handmade_sio(tmp_path / "c.sio", ">", samples, 64, constant=12345)
    with pytest.raises(DataError, match=r"c\.sio: not an SIO file \(byte-order constant at byte 28 is 12345; "
                                        r"expected 32677"):
        read_recording(tmp_path / "c.sio", sample_rate_hz=FS)
    _handmade_sio(tmp_path / "d.sio", "<", samples, 64, code="q")
    with pytest.raises(DataError, match=r"d\.sio: corrupt SIO header \(8 bytes per sample \(expected 2 for int16"):
        read_recording(tmp_path / "d.sio", sample_rate_hz=FS)


def test_sio_four_byte_samples_are_floats_whatever_the_flag_says(tmp_path: Path) -> None:
    # The sioread readers pick the sample type from its size alone; files may carry flag 0.
    samples = np.array([[0.25, -1.5], [3.0, 1e-3]])
    _handmade_sio(tmp_path / "f.sio", ">", samples, 64, is_real=0)
    got = read_recording(tmp_path / "f.sio", sample_rate_hz=FS, channel_order="shallow_to_deep")
    np.testing.assert_array_equal(got.pressure, samples.astype(np.float32))


# --- netCDF -------------------------------------------------------------------------------------


def test_netcdf_round_trip_and_window(tmp_path: Path, rec: Recording) -> None:
    path = write_netcdf(tmp_path / "r.nc", rec)
    back = read_recording(path)
    np.testing.assert_array_equal(back.pressure, rec.pressure)
    assert (back.sample_rate_hz, back.receiver_depths_m, back.source_tones_hz) == (FS, DEPTHS, TONES)
    part = read_recording(path, start_s=1.0, duration_s=0.5)
    np.testing.assert_array_equal(part.pressure, rec.pressure[1500:2250])
    assert part.start_time_s == 1.0


def test_netcdf_is_ordered_by_its_depth_coordinate(tmp_path: Path, rec: Recording) -> None:
    import xarray as xr

    order = [3, 0, 4, 1, 2]
    ds = xr.Dataset({"pressure": (("receiver", "time"), rec.pressure[:, order].T)},
                    coords={"depth": ("receiver", np.asarray(DEPTHS)[order])}, attrs={"sample_rate_hz": FS})
    ds.to_netcdf(tmp_path / "shuffled.nc")
    back = read_recording(tmp_path / "shuffled.nc")
    np.testing.assert_array_equal(back.pressure, rec.pressure)
    assert back.receiver_depths_m == DEPTHS and back.source_tones_hz is None


def test_netcdf_missing_pieces_raise(tmp_path: Path, rec: Recording) -> None:
    import xarray as xr

    xr.Dataset({"pressure": (("time", "receiver"), rec.pressure)}).to_netcdf(tmp_path / "norate.nc")
    with pytest.raises(DataError, match=r"norate\.nc: no 'sample_rate_hz' attribute"):
        read_recording(tmp_path / "norate.nc")
    xr.Dataset({"p": (("time", "receiver"), rec.pressure)}, attrs={"sample_rate_hz": FS}).to_netcdf(tmp_path / "nop.nc")
    with pytest.raises(DataError, match=r"nop\.nc: no 'pressure' variable \(found: p\)"):
        read_recording(tmp_path / "nop.nc")
    (tmp_path / "junk.nc").write_bytes(b"\x89HDF garbage" * 50)
    with pytest.raises(DataError, match=r"junk\.nc: cannot open as netCDF"):
        read_recording(tmp_path / "junk.nc")


# --- the Recording ------------------------------------------------------------------------------


def test_recording_to_xarray_has_dims_depth_and_units(rec: Recording) -> None:
    da = rec.to_xarray()
    assert da.dims == ("time", "receiver")
    assert da.shape == rec.pressure.shape
    np.testing.assert_array_equal(da["depth"].values, DEPTHS)
    assert da["depth"].attrs["units"] == "m" and da["time"].attrs["units"] == "s"
    assert {"units", "long_name"} <= set(da.attrs)
    assert da.attrs["sample_rate_hz"] == FS


def test_recording_validates_and_is_read_only() -> None:
    with pytest.raises(DataError, match=r"<recording>: 3 channels but receiver_depths_m lists 2 depths"):
        Recording(np.zeros((10, 3)), FS, (1.0, 2.0))
    with pytest.raises(DataError, match=r"sample_rate_hz = -1"):
        Recording(np.zeros((10, 3)), -1)
    with pytest.raises(DataError, match=r"pressure has shape \(10,\)"):
        Recording(np.zeros(10), FS)
    source = np.zeros((10, 2))
    r = Recording(source, FS)
    source[0, 0] = 5.0  # the recording took a copy
    assert r.pressure[0, 0] == 0.0
    with pytest.raises(ValueError):
        r.pressure[0, 0] = 1.0


def test_recording_select_uses_file_time(rec: Recording) -> None:
    part = rec.select(0.4, 1.0)
    sub = part.select(0.6, 0.2)
    assert sub.start_time_s == pytest.approx(0.6)
    np.testing.assert_array_equal(sub.pressure, rec.pressure[900:1200])
    with pytest.raises(DataError,
                       match=r"window start 0.2 s is outside the recording \(the recording spans 0.4-1.4 s\)"):
        part.select(0.2, 0.1)
