"""Small scenario texts shared by the dataset-generation tests (cheap: a Pekeris guide at low frequency)."""

from __future__ import annotations

from pathlib import Path

# 100 m of 1500 m/s water over a 1700 m/s half-space, 4 receivers, 2 tones at 50-80 Hz: a handful of
# modes, so KRAKEN runs a sample in a few hundredths of a second.
PEKERIS = """\
[scenario]
name = "pekeris-test"
description = "cheap test scenario"

[environment]
name = "Pekeris test"
water_depth_m = 100.0
[environment.ssp]
depth_m = [0.0]
speed_mps = [1500.0]
[environment.halfspace]
sound_speed_mps = 1700.0
density_g_cm3 = 1.8
attenuation_db_per_m_khz = 0.1

[array]
receiver_depths_m = [20.0, 40.0, 60.0, 80.0]

[tones]
freqs_hz = [50.0, 80.0]

[source]
depth_m = 30.0
range_m = 2000.0

[engine]
name = "kraken"

[noise]
model = "complex_gaussian"
snr_db = { distribution = "uniform", low = 5.0, high = 20.0 }

[observation]
features = "unit_pressure"
reference_receiver = 1

[prior.source_range_m]
distribution = "uniform"
low = 1000.0
high = 5000.0

[prior.water_depth_m]
low = 90.0
high = 110.0

[prior.bottom_sound_speed_mps]
distribution = "truncated_normal"
mean = 1700.0
std = 50.0
low = 1600.0
high = 1800.0

[simulation]
chunk_size = 4
"""

# The same guide with a sediment layer, for the sediment parameters.
LAYERED = PEKERIS.replace("""[environment.halfspace]""", """[[environment.layers]]
thickness_m = 10.0
sound_speed_top_mps = 1550.0
sound_speed_bottom_mps = 1570.0
density_g_cm3 = 1.6
attenuation_db_per_m_khz = 0.2
[environment.halfspace]""")


def write(tmp_path: Path, text: str = PEKERIS, name: str = "pekeris-test.toml") -> Path:
    """Writes a scenario file and returns its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
