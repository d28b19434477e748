"""The Pekeris waveguide, solved analytically: the project's test oracle for the engines.

An isovelocity water layer (speed c1, density rho1, depth D) with a pressure-release surface lies over a
homogeneous fluid half-space (speed c2 > c1, density rho2, optional attenuation). The trapped normal
modes follow from the characteristic equation (Pekeris 1948, "Theory of propagation of explosive sound
in shallow water"; Jensen, Kuperman, Porter & Schmidt, *Computational Ocean Acoustics*, 2nd ed., ch. 2
and 5):

    psi(z) = sin(g1 z)                       0 <= z <= D,    g1 = sqrt(k1^2 - kr^2)
    psi(z) = sin(g1 D) exp(-g2 (z - D))      z > D,          g2 = sqrt(kr^2 - k2^2), Re g2 > 0

and continuity of pressure and of (1/rho) dp/dz at z = D gives

    F(kr) = rho1 g2 sin(g1 D) + rho2 g1 cos(g1 D) = 0.

Modes are normalized with the non-conjugated inner product of KRAKEN, int psi^2 / rho dz = 1. With time
dependence exp(-i omega t) (Im kr > 0) the field of a point source is the far-field mode sum

    p(r, z) = 4 pi * i exp(-i pi/4) / (rho(zs) sqrt(8 pi r)) * sum_m psi_m(zs) psi_m(z) exp(i kr_m r) / sqrt(kr_m)

where the factor 4 pi makes the free-field |p| = 1 at 1 m, so TL = -20 log10 |p| re 1 m. The project's
phase convention is the one the Acoustics Toolbox KRAKEN writes (checked against it): the complex
conjugate of the above times -1, with wavenumbers of negative imaginary part. This module returns
wavenumbers and pressure in that convention so they compare directly with the engines. Only trapped modes (k2 < Re kr < k1) are summed; the branch-cut
(continuous-spectrum) contribution is negligible beyond a few water depths, as in KRAKEN.

With bottom attenuation the roots are complex. They are found for the lossless problem first (one root
per interval of g1 D between (m - 1/2) pi and m pi, bracketed and refined), then followed by Newton
steps while the attenuation is switched on gradually.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from propagation.environment import Environment, db_per_m_khz_to_db_per_wavelength
from propagation.errors import InvalidEnvironmentError, UnsupportedEnvironmentError

# 40 pi log10(e): converts an attenuation in dB per wavelength to the loss tangent delta of
# k = (omega / c) (1 + i delta) (Acoustics Toolbox convention for the 'W' unit).
_DB_PER_WAVELENGTH_TO_DELTA = 1.0 / (40.0 * math.pi * math.log10(math.e))


@dataclass(frozen=True)
class PekerisWaveguide:
    """Isovelocity water over a fluid half-space.

    Attributes:
        water_depth_m: Water depth D, m.
        water_speed_mps: Water sound speed c1, m/s.
        bottom_speed_mps: Half-space sound speed c2, m/s; must exceed c1 for trapped modes.
        bottom_density_g_cm3: Half-space density, g/cm^3.
        bottom_attenuation_db_per_wavelength: Half-space attenuation, dB per wavelength.
        water_density_g_cm3: Water density, g/cm^3.
    """

    water_depth_m: float
    water_speed_mps: float
    bottom_speed_mps: float
    bottom_density_g_cm3: float
    bottom_attenuation_db_per_wavelength: float = 0.0
    water_density_g_cm3: float = 1.0

    def __post_init__(self) -> None:
        for name in ("water_depth_m", "water_speed_mps", "bottom_speed_mps", "bottom_density_g_cm3",
                     "water_density_g_cm3"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidEnvironmentError(f"PekerisWaveguide.{name} = {value!r}: expected a positive number")
        if self.bottom_speed_mps <= self.water_speed_mps:
            raise InvalidEnvironmentError(
                f"PekerisWaveguide.bottom_speed_mps = {self.bottom_speed_mps!r}: expected a speed above "
                f"the water's {self.water_speed_mps!r} m/s (otherwise no mode is trapped)")
        if not (math.isfinite(self.bottom_attenuation_db_per_wavelength)
                and self.bottom_attenuation_db_per_wavelength >= 0):
            raise InvalidEnvironmentError(
                f"PekerisWaveguide.bottom_attenuation_db_per_wavelength = "
                f"{self.bottom_attenuation_db_per_wavelength!r}: expected a non-negative number")

    @classmethod
    def from_environment(cls, env: Environment) -> "PekerisWaveguide":
        """The Pekeris waveguide equal to ``env``; refuses layered or non-isovelocity environments."""
        if env.layers:
            raise UnsupportedEnvironmentError(
                f"pekeris: environment '{env.name}' has {len(env.layers)} sediment layer(s); the analytic "
                "solution needs water directly over a half-space")
        depth, speed = env.water_ssp()
        if np.ptp(speed) > 0:
            raise UnsupportedEnvironmentError(
                f"pekeris: environment '{env.name}' water speed varies ({speed.min():g}-{speed.max():g} "
                "m/s); the analytic solution needs isovelocity water")
        hs = env.halfspace
        return cls(
            water_depth_m=env.water_depth_m,
            water_speed_mps=float(speed[0]),
            bottom_speed_mps=hs.sound_speed_mps,
            bottom_density_g_cm3=hs.density_g_cm3,
            bottom_attenuation_db_per_wavelength=db_per_m_khz_to_db_per_wavelength(
                hs.attenuation_db_per_m_khz, hs.sound_speed_mps),
            water_density_g_cm3=env.water_density_g_cm3,
        )

    # -- wavenumbers ---------------------------------------------------------------------------------

    def _k(self, freq_hz: float, attenuation_scale: float = 1.0) -> tuple[float, complex]:
        omega = 2.0 * math.pi * freq_hz
        k1 = omega / self.water_speed_mps
        delta = attenuation_scale * self.bottom_attenuation_db_per_wavelength * _DB_PER_WAVELENGTH_TO_DELTA
        k2 = (omega / self.bottom_speed_mps) / (1.0 - 1j * delta)
        return k1, k2

    def _characteristic(self, kr: complex, k1: float, k2: complex) -> tuple[complex, complex]:
        """F(kr) and dF/dkr."""
        d = self.water_depth_m
        rho1, rho2 = self.water_density_g_cm3, self.bottom_density_g_cm3
        g1 = np.sqrt(complex(k1 * k1 - kr * kr))
        g2 = np.sqrt(complex(kr * kr - k2 * k2))
        if g2.real < 0:
            g2 = -g2
        s, c = np.sin(g1 * d), np.cos(g1 * d)
        f = rho1 * g2 * s + rho2 * g1 * c
        dg1 = -kr / g1
        dg2 = kr / g2
        df = rho1 * (dg2 * s + g2 * c * d * dg1) + rho2 * (dg1 * c - g1 * s * d * dg1)
        return f, df

    def wavenumbers(self, freq_hz: float) -> np.ndarray:
        """Horizontal wavenumbers of the trapped modes, rad/m.

        Args:
            freq_hz: Frequency, Hz.

        Returns:
            Complex array, shape (n_mode,), ordered from mode 1 (largest real part) down, in the
            Acoustics Toolbox convention (imaginary parts <= 0).
        """
        return np.conj(self._wavenumbers(freq_hz))

    def _wavenumbers(self, freq_hz: float) -> np.ndarray:
        """Wavenumbers in the exp(-i omega t) convention (imaginary parts >= 0)."""
        if not (math.isfinite(freq_hz) and freq_hz > 0):
            raise InvalidEnvironmentError(f"PekerisWaveguide: freq_hz = {freq_hz!r}: expected a positive number")
        d = self.water_depth_m
        rho1, rho2 = self.water_density_g_cm3, self.bottom_density_g_cm3
        k1, k2_lossless = self._k(freq_hz, 0.0)
        k2r = k2_lossless.real
        g_max = math.sqrt(k1 * k1 - k2r * k2r)

        def g(gamma1: float) -> float:
            return rho1 * math.sqrt(max(g_max * g_max - gamma1 * gamma1, 0.0)) * math.sin(gamma1 * d) \
                + rho2 * gamma1 * math.cos(gamma1 * d)

        roots = []
        m = 1
        while True:
            lo = (m - 0.5) * math.pi / d
            hi = min(m * math.pi / d, g_max)
            if lo >= g_max:
                break
            # g changes sign between (m - 1/2) pi / D (cos = 0, sin = +-1) and m pi / D (sin = 0).
            if g(lo) * g(hi) < 0:
                gamma1 = brentq(g, lo, hi, xtol=1e-15, rtol=1e-15, maxiter=200)
                roots.append(math.sqrt(k1 * k1 - gamma1 * gamma1))
            m += 1
        kr = np.array(roots, dtype=complex)
        if self.bottom_attenuation_db_per_wavelength > 0 and kr.size:
            for scale in np.linspace(0.1, 1.0, 10):
                _, k2 = self._k(freq_hz, scale)
                for i in range(kr.size):
                    x = kr[i]
                    for _ in range(50):
                        f, df = self._characteristic(x, k1, k2)
                        step = f / df
                        x = x - step
                        if abs(step) < 1e-14 * abs(x):
                            break
                    kr[i] = x
        return kr

    # -- modes and field -----------------------------------------------------------------------------

    def mode_shapes(self, freq_hz: float, depths_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalized mode shapes at the given depths.

        Args:
            freq_hz: Frequency, Hz.
            depths_m: Depths, shape (n_depth,), m; water and bottom both allowed.

        Returns:
            kr: Wavenumbers, shape (n_mode,), rad/m (complex), exp(-i omega t) convention (Im >= 0).
            psi: Mode shapes, shape (n_depth, n_mode), normalized so int psi^2 / rho dz = 1 with rho in
                g/cm^3 (non-conjugated, as KRAKEN), same convention.
        """
        kr = self._wavenumbers(freq_hz)
        k1, k2 = self._k(freq_hz)
        d = self.water_depth_m
        rho1, rho2 = self.water_density_g_cm3, self.bottom_density_g_cm3
        g1 = np.sqrt(k1 * k1 - kr * kr + 0j)
        g2 = np.sqrt(kr * kr - k2 * k2 + 0j)
        g2 = np.where(g2.real < 0, -g2, g2)
        s = np.sin(g1 * d)
        norm = (d / 2.0 - np.sin(2.0 * g1 * d) / (4.0 * g1)) / rho1 + s * s / (2.0 * g2 * rho2)
        amp = 1.0 / np.sqrt(norm)
        z = np.asarray(depths_m, dtype=float)[:, None]
        psi = np.where(z <= d, np.sin(g1 * z), s * np.exp(-g2 * (z - d))) * amp
        return kr, psi

    def pressure(self, freq_hz: float, source_depth_m: float, receiver_depths_m: np.ndarray,
                 ranges_m: np.ndarray) -> np.ndarray:
        """Complex pressure of a unit point source, 4 pi normalized, Acoustics Toolbox phase convention.

        Args:
            freq_hz: Frequency, Hz.
            source_depth_m: Source depth, m (in the water).
            receiver_depths_m: Receiver depths, shape (n_depth,), m.
            ranges_m: Ranges, shape (n_range,), m, positive.

        Returns:
            Pressure, shape (n_depth, n_range), complex.
        """
        ranges = np.atleast_1d(np.asarray(ranges_m, dtype=float))
        if np.any(ranges <= 0):
            raise InvalidEnvironmentError(f"PekerisWaveguide.pressure: ranges_m = {ranges_m!r}: expected positive ranges")
        kr, psi = self.mode_shapes(freq_hz, np.concatenate([[source_depth_m], np.atleast_1d(receiver_depths_m)]))
        psi_s, psi_r = psi[0], psi[1:]
        rho_s = self.water_density_g_cm3 if source_depth_m <= self.water_depth_m else self.bottom_density_g_cm3
        phase = np.exp(1j * np.outer(kr, ranges)) / np.sqrt(kr)[:, None]  # (n_mode, n_range)
        total = (psi_r * psi_s) @ phase
        p = 4.0 * math.pi * 1j * np.exp(-1j * math.pi / 4.0) / (rho_s * np.sqrt(8.0 * math.pi * ranges)) * total
        return -np.conj(p)

    def transmission_loss_db(self, freq_hz: float, source_depth_m: float, receiver_depths_m: np.ndarray,
                             ranges_m: np.ndarray) -> np.ndarray:
        """TL = -20 log10 |p| in dB re 1 m, shape (n_depth, n_range)."""
        return -20.0 * np.log10(np.abs(self.pressure(freq_hz, source_depth_m, receiver_depths_m, ranges_m)))
