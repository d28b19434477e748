"""Errors of the propagation layer.

Each message names the object and field, the offending value and what was expected, so a user can fix
the input without reading the code. Engine failures carry the engine's own diagnostic text (BELLHOP's
``.prt`` file, pelagic's diagnostics).
"""

from __future__ import annotations


class PropagationError(Exception):
    """Base class of every error raised by :mod:`propagation`."""


class InvalidEnvironmentError(PropagationError, ValueError):
    """An environment, source or receiver value is out of range or inconsistent."""


class UnsupportedEnvironmentError(PropagationError, ValueError):
    """The chosen engine cannot represent this environment (e.g. sediment layers in BELLHOP)."""


class EngineNotFoundError(PropagationError, LookupError):
    """An engine name is unknown, or its program or package is not installed."""


class EngineError(PropagationError, RuntimeError):
    """An engine run failed.

    Attributes:
        engine: Engine name.
        details: The engine's own diagnostic text (BELLHOP ``.prt`` file, pelagic diagnostics).
    """

    def __init__(self, engine: str, message: str, details: str = "") -> None:
        self.engine = engine
        self.details = details
        text = f"{engine}: {message}"
        if details:
            text += "\n--- engine output ---\n" + details.strip()
        super().__init__(text)


class LostModeError(EngineError):
    """A normal-mode run returned fewer modes than the phase-speed limit implies."""
