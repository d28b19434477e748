"""Ocean-acoustic propagation: environments, engines (KRAKEN, BELLHOP) and analytic references.

Physics only: this package never imports torch or :mod:`acoustic_inv`.

Public API (see :mod:`propagation.api`): :func:`pressure`, :func:`pressure_positions`, :func:`tl_field`, :func:`modes`,
:func:`arrivals`, :func:`engines`, :func:`get_engine`; the environment classes of
:mod:`propagation.environment`; the errors of :mod:`propagation.errors`. Engine back-ends live in
:mod:`propagation.backends`.
"""

from propagation.api import arrivals, engines, get_engine, modes, pressure, pressure_positions, tl_field
from propagation.backends.base import EngineInfo
from propagation.environment import (Environment, FluidLayer, HalfSpace, SoundSpeedProfile, check_frequencies,
                                     check_geometry, db_per_m_khz_to_db_per_wavelength,
                                     db_per_wavelength_to_db_per_m_khz)
from propagation.errors import (EngineError, EngineNotFoundError, InvalidEnvironmentError, LostModeError,
                                PropagationError, UnsupportedEnvironmentError)

__all__ = [
    "EngineError", "EngineInfo", "EngineNotFoundError", "Environment", "FluidLayer", "HalfSpace",
    "InvalidEnvironmentError", "LostModeError", "PropagationError", "SoundSpeedProfile",
    "UnsupportedEnvironmentError", "arrivals", "check_frequencies", "check_geometry",
    "db_per_m_khz_to_db_per_wavelength", "db_per_wavelength_to_db_per_m_khz", "engines", "get_engine",
    "modes", "pressure", "pressure_positions", "tl_field",
]
