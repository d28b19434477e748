"""Where the project's shipped files live (scenarios, default model) and how names resolve to them."""

from __future__ import annotations

from pathlib import Path

from acoustic_inv.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SCENARIO_DIR = DATA_DIR / "scenarios"


def scenario_names() -> list[str]:
    """Names of the scenarios shipped in ``data/scenarios``."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def resolve_scenario(name_or_path: str | Path) -> Path:
    """A scenario file from a path or a shipped scenario's name (``swellex96``).

    Raises:
        ConfigError: when neither a file nor a shipped scenario has that name.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SCENARIO_DIR / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"scenario '{name_or_path}': no such file, and no shipped scenario of that name "
                      f"(shipped: {', '.join(scenario_names())})")
