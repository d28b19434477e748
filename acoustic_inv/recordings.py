"""Hydrophone-array recordings: readers for WAV (+ JSON sidecar), netCDF and SIO files, and writers.

Every reader returns one :class:`Recording`, channels ordered shallow to deep whatever the file's
order, and reads only the requested time window where the format allows (WAV and SIO data are
memory-mapped; netCDF variables are read lazily), because recordings run to hundreds of MB.

Formats (details, with the sidecar keys, in ``docs/recordings.md``):

- **WAV** (``.wav``): RIFF/WAVE, integer PCM of 8/16/24/32 bits or IEEE float of 32/64 bits, plain
  or ``WAVE_FORMAT_EXTENSIBLE``. Integer samples are scaled to [-1, 1) and then multiplied by the
  sidecar's ``full_scale`` (default 1). An optional JSON sidecar with the same stem gives the depths,
  channel order and source tones.
- **netCDF** (``.nc``, ``.nc4``, ``.cdf``): variable ``pressure(time, receiver)``, optional
  coordinate ``depth(receiver)`` in m, attribute ``sample_rate_hz`` (on the file or on
  ``pressure``), optional attribute ``source_tones_hz``.
- **SIO** (``.sio``): the Scripps Marine Physical Laboratory format of the SWellEx-96 recordings
  (the layout of the ``sioread`` readers by A. Thode, G. Edelmann, J. Murray and J. Sarkar):
  the first record is a header of eight 32-bit integers (ID, records in file, bytes per record,
  channels, bytes per sample, 0 = integer / 1 = float, samples per channel, byte-order constant
  32677 at byte 28), a 24-byte file name and a 72-byte comment; after it come records of ``BpR``
  bytes, each holding consecutive samples of one channel, channels taking turns record by record.
  Big- or little-endian, told apart by the constant. As in those readers, 2-byte samples are
  16-bit integers and 4-byte samples 32-bit floats whatever the integer/float flag says. The header
  holds no sample rate, so it comes from a sidecar or the caller. SIO files default to
  ``channel_order = "deep_to_shallow"``: in the SWellEx-96 VLA files the first channel is the
  deepest element.

Pressure is uncalibrated (arbitrary units) unless the writer of the file scaled it.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acoustic_inv.errors import ConfigError, DataError
from acoustic_inv.fileio import atomic_write_bytes, atomic_write_netcdf

__all__ = [
    "CHANNEL_ORDERS",
    "Recording",
    "read_recording",
    "write_netcdf",
    "write_sio",
    "write_wav",
]

CHANNEL_ORDERS = ("shallow_to_deep", "deep_to_shallow")
SIDECAR_KEYS = ("sample_rate_hz", "receiver_depths_m", "channel_order", "source_tones_hz", "full_scale",
                "comment")
WAV_SUFFIXES = (".wav",)
NETCDF_SUFFIXES = (".nc", ".nc4", ".cdf")
SIO_SUFFIXES = (".sio",)
SIO_BYTE_ORDER_CONSTANT = 32677
SIO_HEADER_BYTES = 128  # eight int32 fields, 24-byte name, 72-byte comment
PRESSURE_UNITS = "arbitrary (uncalibrated)"

# WAV format tags, and the first two bytes of a WAVE_FORMAT_EXTENSIBLE sub-format GUID.
_WAV_PCM, _WAV_FLOAT, _WAV_EXTENSIBLE = 1, 3, 0xFFFE
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_WAV_DTYPES = {"int16": (_WAV_PCM, 2), "int24": (_WAV_PCM, 3), "int32": (_WAV_PCM, 4),
               "float32": (_WAV_FLOAT, 4), "float64": (_WAV_FLOAT, 8)}
_SIO_DTYPES = {"int16": (2, 0), "float32": (4, 1)}


# --- the recording ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Recording:
    """A multichannel hydrophone recording, channels ordered shallow to deep.

    Args:
        pressure: Samples, shape (n_time, n_receiver), float64, arbitrary units (uncalibrated unless
            the file was scaled). Stored read-only.
        sample_rate_hz: Sampling rate, Hz.
        receiver_depths_m: Receiver depths, shape (n_receiver,), m, strictly increasing; None when
            the file and the caller give none.
        source_tones_hz: Nominal frequencies of the source's tones, Hz; None when unknown.
        path: The file it was read from ("" for a recording made in memory).
        start_time_s: Time of the first sample from the start of the file, s.

    Raises:
        DataError: for a shape, rate, depth list or sample that is not as above, naming ``path``.
    """

    pressure: np.ndarray
    sample_rate_hz: float
    receiver_depths_m: tuple[float, ...] | None = None
    source_tones_hz: tuple[float, ...] | None = None
    path: str = ""
    start_time_s: float = 0.0

    def __post_init__(self) -> None:
        where = self.path or "<recording>"
        p = self.pressure
        # Readers hand over read-only arrays of their own; anything else is copied so that the
        # frozen recording cannot change under its owner's feet.
        if not (isinstance(p, np.ndarray) and p.dtype == np.float64 and not p.flags.writeable
                and p.flags.c_contiguous and p.flags.owndata):
            p = np.array(p, dtype=np.float64, copy=True, order="C")
        if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
            raise DataError(f"{where}: pressure has shape {p.shape}; expected (n_time, n_receiver), both >= 1")
        _check_finite(p, where)
        p.setflags(write=False)
        object.__setattr__(self, "pressure", p)
        fs = _positive_number(self.sample_rate_hz, "sample_rate_hz", where)
        object.__setattr__(self, "sample_rate_hz", fs)
        if self.receiver_depths_m is not None:
            depths = _depth_tuple(self.receiver_depths_m, where)
            if len(depths) != p.shape[1]:
                raise DataError(f"{where}: {p.shape[1]} channels but receiver_depths_m lists {len(depths)} depths")
            object.__setattr__(self, "receiver_depths_m", depths)
        if self.source_tones_hz is not None:
            object.__setattr__(self, "source_tones_hz", _tone_tuple(self.source_tones_hz, where))
        start = float(self.start_time_s)
        if not math.isfinite(start) or start < 0:
            raise DataError(f"{where}: start_time_s = {self.start_time_s!r}; expected a finite time >= 0 s")
        object.__setattr__(self, "start_time_s", start)
        object.__setattr__(self, "path", str(self.path))

    @property
    def n_time(self) -> int:
        """Number of samples per channel."""
        return int(self.pressure.shape[0])

    @property
    def n_receiver(self) -> int:
        """Number of channels (receivers)."""
        return int(self.pressure.shape[1])

    @property
    def duration_s(self) -> float:
        """Length of the recording, s."""
        return self.n_time / self.sample_rate_hz

    def times_s(self) -> np.ndarray:
        """Sample times from the start of the file, shape (n_time,), s."""
        return self.start_time_s + np.arange(self.n_time) / self.sample_rate_hz

    def select(self, start_s: float | None = None, duration_s: float | None = None) -> Recording:
        """The part of this recording from ``start_s`` (s from the start of the file) lasting
        ``duration_s`` (s); None means from this recording's start / to its end.

        Raises:
            DataError: for a window that is not inside the recording.
        """
        i0, i1 = window_indices(self.n_time, self.sample_rate_hz, start_s, duration_s, self.path,
                                origin_s=self.start_time_s)
        if (i0, i1) == (0, self.n_time):
            return self
        return Recording(self.pressure[i0:i1], self.sample_rate_hz, self.receiver_depths_m,
                         self.source_tones_hz, self.path, self.start_time_s + i0 / self.sample_rate_hz)

    def to_xarray(self) -> Any:
        """The recording as an ``xarray.DataArray`` with dims (time, receiver), a ``time`` coordinate
        in s, and a ``depth`` coordinate (m) on ``receiver`` when the depths are known."""
        import xarray as xr

        coords: dict[str, Any] = {
            "time": ("time", self.times_s(), {"units": "s", "long_name": "time from the start of the file"}),
            "receiver": ("receiver", np.arange(self.n_receiver),
                         {"units": "1", "long_name": "receiver index, shallow to deep"}),
        }
        if self.receiver_depths_m is not None:
            coords["depth"] = ("receiver", np.asarray(self.receiver_depths_m),
                               {"units": "m", "long_name": "receiver depth"})
        attrs: dict[str, Any] = {"units": PRESSURE_UNITS, "long_name": "acoustic pressure",
                                 "sample_rate_hz": self.sample_rate_hz, "source_file": self.path}
        if self.source_tones_hz is not None:
            attrs["source_tones_hz"] = list(self.source_tones_hz)
        return xr.DataArray(np.asarray(self.pressure), dims=("time", "receiver"), coords=coords,
                            name="pressure", attrs=attrs)


# --- reading ------------------------------------------------------------------------------------


def read_recording(path: str | os.PathLike[str], start_s: float | None = None, duration_s: float | None = None,
                   *, sample_rate_hz: float | None = None,
                   receiver_depths_m: Sequence[float] | None = None,
                   channel_order: str | None = None,
                   source_tones_hz: Sequence[float] | None = None) -> Recording:
    """Read a recording, or the window [start_s, start_s + duration_s) of it, from a WAV, netCDF or
    SIO file (chosen by the file's suffix).

    The keyword arguments supply what the file and its sidecar lack; where both give a value they
    must agree.

    Args:
        path: The file.
        start_s: Start of the window, s from the start of the file; None for the start.
        duration_s: Length of the window, s; None for the rest of the file.
        sample_rate_hz: Sampling rate, Hz (required for an SIO file without a sidecar).
        receiver_depths_m: Receiver depths, shape (n_receiver,), m, listed shallow to deep.
        channel_order: ``"shallow_to_deep"`` or ``"deep_to_shallow"``: the order of the channels in
            the file relative to the (shallow-to-deep) depth list. Default: the sidecar's value, else
            ``"deep_to_shallow"`` for SIO files (SWellEx-96 VLA convention) and
            ``"shallow_to_deep"`` for WAV. netCDF files are ordered by their ``depth`` coordinate.
        source_tones_hz: Nominal source tone frequencies, Hz.

    Returns:
        The recording, channels shallow to deep.

    Raises:
        DataError: for a missing, unknown, truncated or corrupt file, a bad sidecar, a channel count
            that does not match the depths, disagreeing sample rates, non-finite samples, or a
            window outside the recording; the message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    suffix = p.suffix.lower()
    given = {"sample_rate_hz": sample_rate_hz, "receiver_depths_m": receiver_depths_m,
             "channel_order": channel_order, "source_tones_hz": source_tones_hz}
    if given["channel_order"] is not None and given["channel_order"] not in CHANNEL_ORDERS:
        raise DataError(f"{p}: channel_order = {channel_order!r}; expected one of {CHANNEL_ORDERS}")
    if suffix in WAV_SUFFIXES:
        return _read_wav(p, start_s, duration_s, given)
    if suffix in NETCDF_SUFFIXES:
        return _read_netcdf(p, start_s, duration_s, given)
    if suffix in SIO_SUFFIXES:
        return _read_sio(p, start_s, duration_s, given)
    known = ", ".join(WAV_SUFFIXES + NETCDF_SUFFIXES + SIO_SUFFIXES)
    raise DataError(f"{p}: unknown recording format {suffix or '(no suffix)'!r}; expected one of {known}")


def window_indices(n_total: int, sample_rate_hz: float, start_s: float | None, duration_s: float | None,
                   path: str | os.PathLike[str] = "", *, origin_s: float = 0.0) -> tuple[int, int]:
    """Sample indices [i0, i1) of a time window in a recording of ``n_total`` samples whose first
    sample is at ``origin_s`` (s from the start of the file).

    Raises:
        DataError: for a window that is empty or not inside the recording.
    """
    where = str(path) or "<recording>"
    fs = float(sample_rate_hz)
    end_s = origin_s + n_total / fs
    span = f"the recording spans {origin_s:g}-{end_s:g} s"
    start = origin_s if start_s is None else float(start_s)
    if not math.isfinite(start):
        raise DataError(f"{where}: window start {start_s!r} s is not a finite time")
    # Rounding to the nearest sample lets times computed in floating point land on their sample.
    i0 = int(round((start - origin_s) * fs))
    if i0 < 0 or i0 >= n_total:
        raise DataError(f"{where}: window start {start:g} s is outside the recording ({span})")
    if duration_s is None:
        return i0, n_total
    duration = float(duration_s)
    if not math.isfinite(duration) or duration <= 0:
        raise DataError(f"{where}: window duration {duration_s!r} s; expected a positive time")
    i1 = i0 + int(round(duration * fs))
    if i1 == i0:
        raise DataError(f"{where}: window duration {duration:g} s is shorter than one sample ({1 / fs:g} s)")
    if i1 > n_total:
        raise DataError(f"{where}: window {start:g}-{start + duration:g} s ends after the recording ({span})")
    return i0, i1


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a JSON sidecar; returns only the keys present.

    Raises:
        DataError: for unreadable JSON, an unknown key (named) or a value of the wrong kind.
    """
    p = Path(path)
    try:
        table = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read the sidecar ({exc})") from None
    if not isinstance(table, dict):
        raise DataError(f"{p}: expected a JSON object of {', '.join(SIDECAR_KEYS)}; got {type(table).__name__}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in SIDECAR_KEYS:
            raise DataError(f"{p}: unknown sidecar key {key!r}; expected some of {', '.join(SIDECAR_KEYS)}")
        where = f"{p}: {key}"
        if key == "sample_rate_hz":
            out[key] = _positive_number(value, key, str(p))
        elif key == "receiver_depths_m":
            out[key] = _depth_tuple(_number_list(value, where), str(p))
        elif key == "source_tones_hz":
            out[key] = _tone_tuple(_number_list(value, where), str(p))
        elif key == "channel_order":
            if value not in CHANNEL_ORDERS:
                raise DataError(f"{where} = {value!r}; expected one of {CHANNEL_ORDERS}")
            out[key] = value
        elif key == "full_scale":
            out[key] = _positive_number(value, key, str(p))
        elif not isinstance(value, str):
            raise DataError(f"{where} = {value!r}; expected a string")
        else:
            out[key] = value
    return out


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar of a recording file: same directory and stem, suffix ``.json``."""
    return Path(path).with_suffix(".json")


def _metadata(path: Path, given: Mapping[str, Any], default_order: str) -> dict[str, Any]:
    """Sidecar values merged with the caller's; disagreement is a DataError."""
    side = sidecar_path(path)
    meta = read_sidecar(side) if side.is_file() else {}
    for key, value in given.items():
        if value is None:
            continue
        if key == "receiver_depths_m":
            value = _depth_tuple(value, str(path))
        elif key == "source_tones_hz":
            value = _tone_tuple(value, str(path))
        elif key == "sample_rate_hz":
            value = _positive_number(value, key, str(path))
        if key in meta and not _same(meta[key], value):
            raise DataError(f"{path}: {key} = {value!r} given, but the sidecar {side.name} says {meta[key]!r}")
        meta[key] = value
    meta.setdefault("channel_order", default_order)
    return meta


def _arrange(path: Path, raw: np.ndarray, fs: float, meta: Mapping[str, Any], start_time_s: float) -> Recording:
    """Reorder file channels shallow to deep and build the Recording."""
    depths = meta.get("receiver_depths_m")
    if depths is not None and len(depths) != raw.shape[1]:
        raise DataError(f"{path}: the file has {raw.shape[1]} channels but receiver_depths_m lists "
                        f"{len(depths)} depths")
    raw = np.ascontiguousarray(raw[:, ::-1] if meta["channel_order"] == "deep_to_shallow" else raw)
    raw.setflags(write=False)
    return Recording(raw, fs, depths, meta.get("source_tones_hz"), str(path), start_time_s)


# --- WAV ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WavLayout:
    format_tag: int
    n_channels: int
    sample_rate: int
    bytes_per_sample: int
    data_offset: int
    n_frames: int


def _wav_layout(path: Path) -> _WavLayout:
    """Parse the RIFF chunks of a WAV file up to its data chunk."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            kind = "big-endian RIFX, not supported" if head[:4] == b"RIFX" else "no RIFF/WAVE header"
            raise DataError(f"{path}: not a readable WAV file ({kind})")
        fmt: tuple[int, ...] | None = None
        pos = 12
        while True:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                what = "no 'fmt ' chunk" if fmt is None else "no 'data' chunk"
                raise DataError(f"{path}: truncated or corrupt WAV file ({what} before the end of the file)")
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            body = pos + 8
            if cid == b"fmt ":
                raw = f.read(csize)
                if len(raw) < csize:
                    raise DataError(f"{path}: truncated WAV file (the 'fmt ' chunk runs past the end of the file)")
                if csize < 16:
                    raise DataError(f"{path}: corrupt WAV file ('fmt ' chunk of {csize} bytes; expected >= 16)")
                tag, nch, rate, _, align, bits = struct.unpack("<HHIIHH", raw[:16])
                if tag == _WAV_EXTENSIBLE:
                    if len(raw) < 40 or raw[26:40] != _GUID_TAIL:
                        raise DataError(f"{path}: corrupt WAV file (WAVE_FORMAT_EXTENSIBLE without a known "
                                        f"sub-format)")
                    tag = struct.unpack("<H", raw[24:26])[0]
                fmt = (tag, nch, rate, align, bits)
            elif cid == b"data":
                if fmt is None:
                    raise DataError(f"{path}: corrupt WAV file ('data' chunk before the 'fmt ' chunk)")
                tag, nch, rate, align, bits = fmt
                if nch < 1 or rate < 1 or align < 1 or align % nch:
                    raise DataError(f"{path}: corrupt WAV header ({nch} channels, {rate} Hz, block align {align})")
                width = align // nch
                if tag not in (_WAV_PCM, _WAV_FLOAT) or (tag == _WAV_PCM and width not in (1, 2, 3, 4)) or (
                        tag == _WAV_FLOAT and width not in (4, 8)):
                    raise DataError(f"{path}: unsupported WAV sample format (format tag {tag}, {bits} bits in "
                                    f"{width} bytes); expected integer PCM of 8/16/24/32 bits or float of 32/64 bits")
                available = size - body
                if csize > available:
                    raise DataError(f"{path}: truncated WAV file (the data chunk declares {csize} bytes but "
                                    f"{available} follow)")
                if csize % align:
                    raise DataError(f"{path}: truncated WAV file (data chunk of {csize} bytes is not a whole "
                                    f"number of {align}-byte frames)")
                if csize == 0:
                    raise DataError(f"{path}: the WAV file holds no samples")
                return _WavLayout(tag, nch, rate, width, body, csize // align)
            pos = body + csize + (csize & 1)  # chunks are padded to even length
            if pos > size:
                raise DataError(f"{path}: truncated WAV file (chunk {cid!r} runs past the end of the file)")


def _read_wav(path: Path, start_s: float | None, duration_s: float | None, given: Mapping[str, Any]) -> Recording:
    layout = _wav_layout(path)
    meta = _metadata(path, {k: v for k, v in given.items() if k != "sample_rate_hz"}, "shallow_to_deep")
    fs = float(layout.sample_rate)
    for source, value in (("sidecar", meta.get("sample_rate_hz")), ("caller", given.get("sample_rate_hz"))):
        if value is None:
            continue
        value = _positive_number(value, "sample_rate_hz", str(path))
        # The header stores a whole number of Hz; a sidecar may refine it within that rounding.
        if abs(value - layout.sample_rate) > 0.5:
            raise DataError(f"{path}: sample_rate_hz = {value:g} from the {source} disagrees with the WAV "
                            f"header's {layout.sample_rate} Hz")
        fs = value
    i0, i1 = window_indices(layout.n_frames, fs, start_s, duration_s, path)
    w, nch = layout.bytes_per_sample, layout.n_channels
    frames = np.memmap(path, dtype=np.uint8, mode="r", offset=layout.data_offset,
                       shape=(layout.n_frames, nch * w))[i0:i1]
    if layout.format_tag == _WAV_FLOAT:
        data = np.ascontiguousarray(frames).view(f"<f{w}").reshape(i1 - i0, nch).astype(np.float64)
    else:
        data = _pcm_to_unit(np.ascontiguousarray(frames).reshape(i1 - i0, nch, w)) * meta.get("full_scale", 1.0)
    del frames
    return _arrange(path, data, fs, meta, i0 / fs)


def _pcm_to_unit(b: np.ndarray) -> np.ndarray:
    """Little-endian integer PCM bytes, shape (n, nch, width), as float64 in [-1, 1)."""
    width = b.shape[-1]
    if width == 1:  # 8-bit WAV is unsigned, offset by 128
        return (b[..., 0].astype(np.float64) - 128.0) / 128.0
    if width == 3:
        # Place the three bytes in the top of an int32 so the sign comes with them.
        v = (b[..., 0].astype(np.int32) << 8) | (b[..., 1].astype(np.int32) << 16) | (b[..., 2].astype(np.int32) << 24)
        return v.astype(np.float64) / 2.0**31
    v = np.ascontiguousarray(b).view(f"<i{width}")[..., 0]
    return v.astype(np.float64) / 2.0 ** (8 * width - 1)


def write_wav(path: str | os.PathLike[str], recording: Recording, sidecar: bool = True, dtype: str = "float32",
              *, full_scale: float | None = None, channel_order: str = "shallow_to_deep") -> Path:
    """Write a recording as a multichannel WAV file (atomically), with a JSON sidecar.

    Args:
        path: Output ``.wav`` path; the sidecar goes beside it with suffix ``.json``.
        recording: The recording.
        sidecar: Write the sidecar (sample rate, depths, channel order, tones, full scale).
        dtype: ``"float32"``, ``"float64"``, ``"int16"``, ``"int24"`` or ``"int32"``.
        full_scale: For integer dtypes, the pressure at integer full scale; default: the recording's
            peak (with a sidecar to record it) or 1 (without one).
        channel_order: Channel order in the file, ``"shallow_to_deep"`` or ``"deep_to_shallow"``.

    Returns:
        The path written.

    Raises:
        ConfigError: for an unknown dtype or channel order, or integer samples that would clip.
        DataError: for data too large for a WAV file (4 GiB).
    """
    if dtype not in _WAV_DTYPES:
        raise ConfigError(f"write_wav: dtype = {dtype!r}; expected one of {', '.join(_WAV_DTYPES)}")
    if channel_order not in CHANNEL_ORDERS:
        raise ConfigError(f"write_wav: channel_order = {channel_order!r}; expected one of {CHANNEL_ORDERS}")
    tag, width = _WAV_DTYPES[dtype]
    fs = recording.sample_rate_hz
    if fs != round(fs) and not sidecar:  # the header holds whole Hz; only a sidecar keeps the exact rate
        raise ConfigError(f"write_wav: sample rate {fs:g} Hz is not a whole number; write a sidecar to keep it")
    data = np.asarray(recording.pressure)
    if channel_order == "deep_to_shallow":
        data = data[:, ::-1]
    if tag == _WAV_FLOAT:
        payload = np.ascontiguousarray(data, dtype=f"<f{width}").tobytes()
        scale = None
    else:
        peak = float(np.max(np.abs(data)))
        top = 2 ** (8 * width - 1)
        if full_scale is None:
            full_scale = (peak * top / (top - 1) if peak > 0 else 1.0) if sidecar else 1.0
        scale = float(full_scale)
        counts = np.round(data / scale * top)
        if counts.max() > top - 1 or counts.min() < -top:
            raise ConfigError(f"write_wav: samples up to {peak:g} would clip at full_scale = {scale:g}")
        counts = counts.astype("<i4")
        if width == 3:
            payload = counts.view(np.uint8).reshape(*counts.shape, 4)[..., :3].tobytes()
        else:
            payload = counts.astype(f"<i{width}").tobytes()
    if len(payload) > 0xFFFFFFFF - 64:
        raise DataError(f"{path}: {len(payload)} bytes of samples exceed the 4 GiB a WAV file can hold")
    nch = recording.n_receiver
    align = nch * width
    bits = 8 * width
    guid = struct.pack("<H", tag) + _GUID_TAIL
    # WAVE_FORMAT_EXTENSIBLE for more than two channels or more than 16 bits, as the spec asks.
    fmt = struct.pack("<HHIIHHHHI", _WAV_EXTENSIBLE, nch, int(round(fs)), int(round(fs)) * align, align, bits, 22,
                      bits, 0) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if tag == _WAV_FLOAT:
        body += b"fact" + struct.pack("<II", 4, recording.n_time)
    body += b"data" + struct.pack("<I", len(payload))
    header = b"RIFF" + struct.pack("<I", len(body) + len(payload) + (len(payload) & 1)) + body
    out = Path(path)
    atomic_write_bytes(out, [header, payload, b"\x00" if len(payload) & 1 else b""])
    if sidecar:
        _write_sidecar(out, recording, channel_order, scale)
    return out


def _write_sidecar(path: Path, recording: Recording, channel_order: str, full_scale: float | None) -> None:
    table: dict[str, Any] = {"sample_rate_hz": recording.sample_rate_hz, "channel_order": channel_order}
    if recording.receiver_depths_m is not None:
        table["receiver_depths_m"] = list(recording.receiver_depths_m)
    if recording.source_tones_hz is not None:
        table["source_tones_hz"] = list(recording.source_tones_hz)
    if full_scale is not None:
        table["full_scale"] = full_scale
    atomic_write_bytes(sidecar_path(path), [(json.dumps(table, indent=2) + "\n").encode("utf-8")])


# --- netCDF -------------------------------------------------------------------------------------


def _read_netcdf(path: Path, start_s: float | None, duration_s: float | None,
                 given: Mapping[str, Any]) -> Recording:
    import xarray as xr

    try:
        ds = xr.open_dataset(path)
    except Exception as exc:  # the engines raise OSError, ValueError or their own errors
        raise DataError(f"{path}: cannot open as netCDF ({type(exc).__name__}: {exc})") from None
    with ds:
        if "pressure" not in ds.variables:
            raise DataError(f"{path}: no 'pressure' variable (found: {', '.join(map(str, ds.variables)) or 'none'})")
        var = ds["pressure"]
        if set(var.dims) != {"time", "receiver"}:
            raise DataError(f"{path}: pressure has dims {var.dims}; expected ('time', 'receiver')")
        var = var.transpose("time", "receiver")
        rate = var.attrs.get("sample_rate_hz", ds.attrs.get("sample_rate_hz"))
        if rate is None and given.get("sample_rate_hz") is None:
            raise DataError(f"{path}: no 'sample_rate_hz' attribute on the file or on 'pressure'")
        meta: dict[str, Any] = {}
        if rate is not None:
            meta["sample_rate_hz"] = _positive_number(np.asarray(rate).item(), "sample_rate_hz", str(path))
        tones = var.attrs.get("source_tones_hz", ds.attrs.get("source_tones_hz"))
        if tones is not None:
            meta["source_tones_hz"] = _tone_tuple(np.atleast_1d(tones).tolist(), str(path))
        order = np.arange(var.sizes["receiver"])
        if "depth" in ds.variables:
            depth = ds["depth"]
            if depth.dims != ("receiver",):
                raise DataError(f"{path}: 'depth' has dims {depth.dims}; expected ('receiver',)")
            d = np.asarray(depth.values, dtype=float)
            order = np.argsort(d, kind="stable")
            meta["receiver_depths_m"] = _depth_tuple(d[order], str(path))
        for key, value in given.items():
            if value is None or key == "channel_order":
                continue
            value = (_depth_tuple(value, str(path)) if key == "receiver_depths_m" else
                     _tone_tuple(value, str(path)) if key == "source_tones_hz" else
                     _positive_number(value, key, str(path)))
            if key in meta and not _same(meta[key], value):
                raise DataError(f"{path}: {key} = {value!r} given, but the file says {meta[key]!r}")
            meta[key] = value
        if given.get("channel_order") == "deep_to_shallow" and "depth" not in ds.variables:
            order = order[::-1]
        fs = meta["sample_rate_hz"]
        i0, i1 = window_indices(var.sizes["time"], fs, start_s, duration_s, path)
        try:
            data = np.asarray(var.isel(time=slice(i0, i1)).values, dtype=np.float64)
        except Exception as exc:
            raise DataError(f"{path}: cannot read 'pressure' ({type(exc).__name__}: {exc})") from None
    depths = meta.get("receiver_depths_m")
    if depths is not None and len(depths) != data.shape[1]:
        raise DataError(f"{path}: the file has {data.shape[1]} receivers but receiver_depths_m lists "
                        f"{len(depths)} depths")
    data = np.ascontiguousarray(data[:, order])
    data.setflags(write=False)
    return Recording(data, fs, depths, meta.get("source_tones_hz"), str(path), i0 / fs)


def write_netcdf(path: str | os.PathLike[str], recording: Recording) -> Path:
    """Write a recording as netCDF (atomically): ``pressure(time, receiver)``, ``time`` (s) and
    ``depth(receiver)`` (m) coordinates, ``sample_rate_hz`` and ``source_tones_hz`` attributes.

    The file's time origin is the recording's first sample.

    Returns:
        The path written.
    """
    da = recording.to_xarray()
    da = da.assign_coords(time=("time", np.arange(recording.n_time) / recording.sample_rate_hz,
                                {"units": "s", "long_name": "time from the start of the file"}))
    da.attrs.pop("source_file", None)
    ds = da.to_dataset()
    ds.attrs["sample_rate_hz"] = recording.sample_rate_hz
    if recording.source_tones_hz is not None:
        ds.attrs["source_tones_hz"] = np.asarray(recording.source_tones_hz)
    ds["pressure"].attrs.pop("source_tones_hz", None)
    return atomic_write_netcdf(path, ds)


# --- SIO ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SioHeader:
    """The header of an SIO file (its first record).

    Args:
        byte_order: ``">"`` (big-endian) or ``"<"`` (little-endian).
        id: ID number.
        n_records: Records in the file, as the header states it.
        bytes_per_record: Record length, bytes.
        n_channels: Channels.
        bytes_per_sample: 2 or 4.
        float_flag: The header's integer (0) / float (1) flag, as stored; the sample type follows
            from ``bytes_per_sample`` alone (see :attr:`dtype`).
        samples_per_channel: Samples of each channel.
        name: File name stored in the header.
        comment: Comment stored in the header.
    """

    byte_order: str
    id: int
    n_records: int
    bytes_per_record: int
    n_channels: int
    bytes_per_sample: int
    float_flag: int
    samples_per_channel: int
    name: str = ""
    comment: str = ""

    @property
    def samples_per_record(self) -> int:
        return self.bytes_per_record // self.bytes_per_sample

    @property
    def n_blocks(self) -> int:
        """Record groups (one record of each channel) holding the samples."""
        return -(-self.samples_per_channel // self.samples_per_record)

    @property
    def is_float(self) -> bool:
        """Whether samples are floats: 4-byte samples are, 2-byte ones are integers. The readers of
        SWellEx-96 data (``sioread``) decide so from the sample size and never consult the flag."""
        return self.bytes_per_sample == 4

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(f"{self.byte_order}{'f4' if self.is_float else 'i2'}")


def read_sio_header(path: str | os.PathLike[str]) -> SioHeader:
    """Parse and check the header of an SIO file.

    Raises:
        DataError: for a file that is not SIO (byte-order constant), a header of impossible values,
            or a file too short for the samples its header declares.
    """
    p = Path(path)
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(SIO_HEADER_BYTES)
    if len(head) < 32:
        raise DataError(f"{p}: truncated SIO file ({len(head)} bytes; the header alone needs 32)")
    for order in (">", "<"):
        if struct.unpack(f"{order}i", head[28:32])[0] == SIO_BYTE_ORDER_CONSTANT:
            break
    else:
        found = struct.unpack(">i", head[28:32])[0]
        raise DataError(f"{p}: not an SIO file (byte-order constant at byte 28 is {found}; expected "
                        f"{SIO_BYTE_ORDER_CONSTANT} in either byte order)")
    ident, nr, rl, nc, sl, flag, n_samples, _ = struct.unpack(f"{order}8i", head[:32])
    name = head[32:56].split(b"\x00")[0].decode("latin-1").strip() if len(head) >= 56 else ""
    comment = head[56:128].split(b"\x00")[0].decode("latin-1").strip() if len(head) >= 128 else ""
    problems = []
    if nc < 1:
        problems.append(f"{nc} channels")
    if sl not in (2, 4):
        problems.append(f"{sl} bytes per sample (expected 2 for int16 or 4 for float32)")
    if sl in (2, 4) and (rl < 32 or rl % sl):
        problems.append(f"record length {rl} bytes (expected >= 32 and a multiple of {sl})")
    if n_samples < 1:
        problems.append(f"{n_samples} samples per channel")
    if problems:
        raise DataError(f"{p}: corrupt SIO header ({'; '.join(problems)})")
    header = SioHeader(order, ident, nr, rl, nc, sl, flag, n_samples, name, comment)
    needed = rl * (1 + header.n_blocks * nc)
    if size < needed:
        raise DataError(f"{p}: truncated SIO file ({size} bytes; its header declares {n_samples} samples on "
                        f"{nc} channels in {rl}-byte records, {needed} bytes)")
    return header


def _read_sio(path: Path, start_s: float | None, duration_s: float | None, given: Mapping[str, Any]) -> Recording:
    header = read_sio_header(path)
    meta = _metadata(path, given, "deep_to_shallow")
    if "sample_rate_hz" not in meta:
        raise DataError(f"{path}: an SIO header holds no sample rate; give sample_rate_hz or a sidecar "
                        f"{sidecar_path(path).name} with one")
    fs = meta["sample_rate_hz"]
    i0, i1 = window_indices(header.samples_per_channel, fs, start_s, duration_s, path)
    spr, nc = header.samples_per_record, header.n_channels
    records = np.memmap(path, dtype=header.dtype, mode="r", offset=header.bytes_per_record,
                        shape=(header.n_blocks, nc, spr))
    b0, b1 = i0 // spr, -(-i1 // spr)
    # Records of one group hold the same span of samples, one channel each.
    block = np.asarray(records[b0:b1]).transpose(0, 2, 1).reshape((b1 - b0) * spr, nc)
    data = block[i0 - b0 * spr:i1 - b0 * spr].astype(np.float64)
    del records
    if not header.is_float:
        data *= meta.get("full_scale", 1.0) / 2.0 ** (8 * header.bytes_per_sample - 1)
    return _arrange(path, data, fs, meta, i0 / fs)


def write_sio(path: str | os.PathLike[str], recording: Recording, *, dtype: str = "float32",
              byte_order: str = "big", samples_per_record: int = 1024, channel_order: str = "deep_to_shallow",
              sidecar: bool = True, comment: str = "", full_scale: float | None = None) -> Path:
    """Write a recording as an SIO file (atomically), for tests and demos.

    Args:
        path: Output ``.sio`` path; the sidecar goes beside it with suffix ``.json``.
        recording: The recording.
        dtype: ``"float32"`` or ``"int16"`` (the two sample types SIO readers know).
        byte_order: ``"big"`` (the SWellEx-96 files') or ``"little"``.
        samples_per_record: Samples of one channel per record; a record must hold the 128-byte header.
        channel_order: Channel order in the file; ``"deep_to_shallow"`` as in the SWellEx-96 VLA files.
        sidecar: Write the JSON sidecar (sample rate, depths, order, tones, full scale).
        comment: Header comment (up to 72 ASCII characters).
        full_scale: For integer dtypes, the pressure at integer full scale; default as in
            :func:`write_wav`.

    Returns:
        The path written.

    Raises:
        ConfigError: for an unknown dtype, byte order or channel order, records too short for the
            header, a comment too long, or integer samples that would clip.
    """
    if dtype not in _SIO_DTYPES:
        raise ConfigError(f"write_sio: dtype = {dtype!r}; expected one of {', '.join(_SIO_DTYPES)}")
    if byte_order not in ("big", "little"):
        raise ConfigError(f"write_sio: byte_order = {byte_order!r}; expected 'big' or 'little'")
    if channel_order not in CHANNEL_ORDERS:
        raise ConfigError(f"write_sio: channel_order = {channel_order!r}; expected one of {CHANNEL_ORDERS}")
    width, is_real = _SIO_DTYPES[dtype]
    rl = int(samples_per_record) * width
    if rl < SIO_HEADER_BYTES:
        raise ConfigError(f"write_sio: samples_per_record = {samples_per_record!r}; a record must hold the "
                          f"{SIO_HEADER_BYTES}-byte header (>= {SIO_HEADER_BYTES // width} samples of {dtype})")
    note = comment.encode("ascii", "replace")
    if len(note) > 72:
        raise ConfigError(f"write_sio: comment of {len(note)} characters; at most 72 fit in the header")
    order = ">" if byte_order == "big" else "<"
    data = np.asarray(recording.pressure)
    if channel_order == "deep_to_shallow":
        data = data[:, ::-1]
    scale = None
    if is_real:
        samples = data.astype(f"{order}f4")
    else:
        peak = float(np.max(np.abs(data)))
        top = 2 ** (8 * width - 1)
        if full_scale is None:
            full_scale = (peak * top / (top - 1) if peak > 0 else 1.0) if sidecar else 1.0
        scale = float(full_scale)
        counts = np.round(data / scale * top)
        if counts.max() > top - 1 or counts.min() < -top:
            raise ConfigError(f"write_sio: samples up to {peak:g} would clip at full_scale = {scale:g}")
        samples = counts.astype(f"{order}i{width}")
    n, nc = samples.shape
    spr = int(samples_per_record)
    n_blocks = -(-n // spr)
    padded = np.zeros((n_blocks * spr, nc), dtype=samples.dtype)
    padded[:n] = samples
    records = padded.reshape(n_blocks, spr, nc).transpose(0, 2, 1)  # (group, channel, sample)
    out = Path(path)
    name = out.name.encode("ascii", "replace")[:24]
    header = struct.pack(f"{order}8i", 0, n_blocks * nc, rl, nc, width, is_real, n, SIO_BYTE_ORDER_CONSTANT)
    header += name.ljust(24, b"\x00") + note.ljust(72, b"\x00")
    header = header.ljust(rl, b"\x00")
    atomic_write_bytes(out, [header, np.ascontiguousarray(records).tobytes()])
    if sidecar:
        _write_sidecar(out, recording, channel_order, scale)
    return out


# --- helpers ------------------------------------------------------------------------------------


def _check_finite(p: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(p)
    if bad.any():
        t, c = np.argwhere(bad)[0]
        raise DataError(f"{where}: {int(bad.sum())} non-finite samples (NaN or Inf), the first at sample {t} "
                        f"of channel {c}")


def _positive_number(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DataError(f"{where}: {name} = {value!r}; expected a positive number")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise DataError(f"{where}: {name} = {value!r}; expected a positive number")
    return v


def _number_list(value: Any, where: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise DataError(f"{where} = {value!r}; expected a non-empty list of numbers")
    return [float(v) for v in value]


def _depth_tuple(values: Any, where: str) -> tuple[float, ...]:
    d = np.atleast_1d(np.asarray(values, dtype=float))
    if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d)) or np.any(d < 0):
        raise DataError(f"{where}: receiver_depths_m = {values!r}; expected finite depths >= 0 m")
    if np.any(np.diff(d) <= 0):
        i = int(np.argmax(np.diff(d) <= 0)) + 1
        raise DataError(f"{where}: receiver_depths_m[{i}] = {d[i]:g} m; expected depths listed shallow to deep "
                        f"(strictly increasing; the previous one is {d[i - 1]:g} m)")
    return tuple(float(x) for x in d)


def _tone_tuple(values: Any, where: str) -> tuple[float, ...]:
    f = np.atleast_1d(np.asarray(values, dtype=float))
    if f.ndim != 1 or f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise DataError(f"{where}: source_tones_hz = {values!r}; expected positive frequencies in Hz")
    return tuple(float(x) for x in f)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    a_arr, b_arr = np.atleast_1d(np.asarray(a, dtype=float)), np.atleast_1d(np.asarray(b, dtype=float))
    return a_arr.shape == b_arr.shape and bool(np.allclose(a_arr, b_arr, rtol=1e-9, atol=1e-6))
