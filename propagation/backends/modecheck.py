"""Engine-independent checks that a normal-mode solver returned every trapped mode.

Two facts of Sturm-Liouville theory make a lost mode visible without trusting the solver:

1. **Zero crossings.** Ordered by decreasing horizontal wavenumber, mode ``m`` (counting from 0) of the
   depth-separated acoustic problem has exactly ``m`` zero crossings between the pressure-release
   surface and the top of the half-space. The solver's own shapes, sampled on a grid at least as fine
   as its crossings are apart (12 per wavelength), must show 0, 1, 2, ... crossings: a mode missing from
   the middle of the spectrum makes every later mode show one crossing too many.

2. **Sturm count.** The number of modes with ``kr^2 > mu`` equals the number of negative eigenvalues of
   the finite-element operator ``A(mu) = K - Q + mu M + B(mu)`` (stiffness, water-speed, mass and
   half-space impedance terms, all weighted by 1/rho), which a pivot count of its LDL^T factorization
   gives exactly (Sylvester's law of inertia; the same count that KRAKEN brackets its roots with,
   Porter & Reiss 1984, "A numerical method for ocean-acoustic normal modes", JASA 76). Evaluated just
   inside the half-space cutoff it bounds the number of trapped modes from below and catches a mode
   lost at the end of the spectrum, which the crossing test cannot see.

The finite-element operator here is our own linear-element, lumped-mass discretization on a fine grid;
it shares no code with the engine. Its eigenvalues err by about ``gamma^4 h^2 / 12`` in ``kr^2``, and
half-space attenuation (loss tangent delta) blurs the cutoff over about ``2 delta`` in ``kr^2``, so the
count is taken at a threshold moved inwards by twice both: a mode whose phase speed lies within that
margin below the half-space speed (0.4 % for SWellEx-96, 2 % for a 0.5 dB/wavelength Pekeris bottom)
cannot be verified and is not demanded; every mode before it is checked by its zero crossings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from propagation.environment import Environment
from propagation.errors import EngineError, LostModeError

# Points per wavelength of the Sturm-count grid: its 2nd-order error sets the unverifiable band.
STURM_POINTS_PER_WAVELENGTH = 80.0
# Samples per shortest wavelength of the zero-crossing grid. Consecutive zeros of a mode are at least
# half a (vertical) wavelength apart, and KRAKEN's piecewise-linear shapes on a mesh of >= 10 points per
# wavelength keep them so, so 12 samples per wavelength see every crossing.
CROSSING_POINTS_PER_WAVELENGTH = 12.0
# A sample of a mode shape counts for a sign only above this fraction of the mode's largest modulus:
# deep evanescent tails decay to round-off, whose signs are noise.
_SIGN_FLOOR = 1e-10


@dataclass(frozen=True)
class Medium:
    """One finite medium of the depth problem, from the surface down.

    Attributes:
        top_m: Depth of its top, m.
        bottom_m: Depth of its bottom, m.
        density_g_cm3: Density, g/cm^3.
        min_speed_mps: Smallest sound speed inside it, m/s (sets the wavelength of its mesh).
        speed: Sound speed (m/s) as a function of depth (m), vectorized.
    """

    top_m: float
    bottom_m: float
    density_g_cm3: float
    min_speed_mps: float
    speed: object

    @property
    def thickness_m(self) -> float:
        return self.bottom_m - self.top_m


def media(env: Environment) -> list[Medium]:
    """The water column and each sediment layer as finite media."""
    z, c = env.water_ssp()
    out = [Medium(0.0, env.water_depth_m, env.water_density_g_cm3, float(np.min(c)),
                  lambda d, z=z, c=c: np.interp(d, z, c))]
    top = env.water_depth_m
    for layer in env.layers:
        bottom = top + layer.thickness_m
        ct, cb = layer.sound_speed_top_mps, layer.sound_speed_bottom_mps
        out.append(Medium(top, bottom, layer.density_g_cm3, min(ct, cb),
                          lambda d, t=top, b=bottom, ct=ct, cb=cb: ct + (cb - ct) * (np.asarray(d) - t) / (b - t)))
        top = bottom
    return out


def medium_points(medium: Medium, freq_hz: float, points_per_wavelength: float, minimum: int) -> int:
    """Mesh intervals for a medium: ``points_per_wavelength`` per shortest wavelength, at least ``minimum``."""
    wavelength = medium.min_speed_mps / freq_hz
    return max(int(minimum), int(math.ceil(points_per_wavelength * medium.thickness_m / wavelength)))


def sample_grid(env: Environment, intervals: list[int]) -> np.ndarray:
    """Depths from the surface to the half-space top, uniform in each medium.

    Args:
        env: The environment.
        intervals: Number of intervals per medium (water first, then each layer).

    Returns:
        The mesh nodes, shape (sum(intervals) + 1,), m, strictly increasing.
    """
    parts = [np.linspace(m.top_m, m.bottom_m, n + 1)[:-1] for m, n in zip(media(env), intervals)]
    parts.append(np.array([env.bottom_depth_m]))
    return np.concatenate(parts)


def crossing_grid(env: Environment, freq_hz: float) -> np.ndarray:
    """Sample depths for the zero-crossing test at ``freq_hz`` and below, surface to half-space top, m."""
    return sample_grid(env, [medium_points(m, freq_hz, CROSSING_POINTS_PER_WAVELENGTH, 10) for m in media(env)])


def zero_crossings(shapes: np.ndarray) -> np.ndarray:
    """Sign changes of each mode along depth.

    Args:
        shapes: Mode shapes, shape (n_depth, n_mode), real or complex, sampled from the surface down.

    Returns:
        Number of sign changes per mode, shape (n_mode,), int. A complex mode is first rotated so that
        its largest sample is real; samples below :data:`_SIGN_FLOOR` of the largest carry no sign.
    """
    shapes = np.asarray(shapes)
    if np.iscomplexobj(shapes) and np.any(shapes.imag):
        re, im = shapes.real, shapes.imag
        peak = np.argmax(re * re + im * im, axis=0)
        columns = np.arange(shapes.shape[1])
        # Re(psi conj(psi_peak)): the sign of psi rotated so that its largest sample is real and positive
        real = re * re[peak, columns] + im * im[peak, columns]
    else:
        real = shapes.real
    magnitude = np.abs(real)
    sign = np.sign(real)
    sign[magnitude <= _SIGN_FLOOR * magnitude.max(axis=0)] = 0.0
    changes = (sign[1:] * sign[:-1] < 0).sum(axis=0)
    # Signless samples normally sit only at the ends (the surface, deep evanescent tails). Where one
    # falls between signed samples, carry the last sign over it: a zero between opposite signs counts
    # once, between equal signs not at all.
    signed = sign != 0
    n = sign.shape[0]
    first = np.argmax(signed, axis=0)
    last = n - 1 - np.argmax(signed[::-1], axis=0)
    gaps = np.flatnonzero(signed.sum(axis=0) < np.maximum(last - first + 1, 0))
    for j in gaps:
        column = sign[signed[:, j], j]
        changes[j] = int(np.count_nonzero(column[1:] != column[:-1]))
    return changes


def _assemble(env: Environment, freq_hz: float, points_per_wavelength: float):
    """Diagonal parts of the FE operator on the Sturm grid (surface node removed).

    Returns:
        stiffness_diag, off_diag, mass_diag, speed_diag arrays for nodes 1..n (the last is the
        half-space top), and the density of the half-space.
    """
    omega = 2.0 * math.pi * freq_hz
    z_parts, w_parts = [], []
    for medium in media(env):
        n = medium_points(medium, freq_hz, points_per_wavelength, 10)
        z_parts.append(np.linspace(medium.top_m, medium.bottom_m, n + 1))
        w_parts.append(np.full(n, 1.0 / medium.density_g_cm3))
    # Element endpoints per medium; nodes shared at interfaces.
    left = np.concatenate([z[:-1] for z in z_parts])
    right = np.concatenate([z[1:] for z in z_parts])
    weight = np.concatenate(w_parts)
    h = right - left
    speeds_left = np.concatenate([m.speed(z[:-1]) for m, z in zip(media(env), z_parts)])
    speeds_right = np.concatenate([m.speed(z[1:]) for m, z in zip(media(env), z_parts)])
    n_elements = h.size
    k_el = weight / h
    m_el = 0.5 * weight * h
    q_left = m_el * (omega / speeds_left) ** 2
    q_right = m_el * (omega / speeds_right) ** 2
    # Node i (0..n_elements) collects from element i-1 (as its right end) and element i (left end).
    stiff = np.zeros(n_elements + 1)
    mass = np.zeros(n_elements + 1)
    pot = np.zeros(n_elements + 1)
    stiff[:-1] += k_el
    stiff[1:] += k_el
    mass[:-1] += m_el
    mass[1:] += m_el
    pot[:-1] += q_left
    pot[1:] += q_right
    off = -k_el
    # Drop the surface node (pressure release): unknowns are nodes 1..n.
    return stiff[1:] - pot[1:], off[1:], mass[1:], 1.0 / env.halfspace.density_g_cm3


def sturm_count(env: Environment, freq_hz: float, kr2_threshold: float,
                points_per_wavelength: float = STURM_POINTS_PER_WAVELENGTH) -> int:
    """Number of modes with ``kr^2 > kr2_threshold`` of our own finite-element model of ``env``.

    Args:
        env: The environment (lossless part only is used).
        freq_hz: Frequency, Hz.
        kr2_threshold: Threshold on the squared horizontal wavenumber, (rad/m)^2; at least the
            half-space value ``(omega / c_halfspace)^2`` (the impedance condition is real there).
        points_per_wavelength: Grid density.
    """
    diag, off, mass, inv_rho_hs = _assemble(env, freq_hz, points_per_wavelength)
    omega = 2.0 * math.pi * freq_hz
    k_hs2 = (omega / env.halfspace.sound_speed_mps) ** 2
    if kr2_threshold < k_hs2:
        raise ValueError("the Sturm count needs a threshold inside the half-space cutoff")
    a = diag + kr2_threshold * mass
    a[-1] += inv_rho_hs * math.sqrt(kr2_threshold - k_hs2)
    b2 = (off * off).tolist()
    count = 0
    d = 1.0
    tiny = 1e-300
    for i, ai in enumerate(a.tolist()):
        d = ai - (b2[i - 1] / d if i else 0.0)
        if d == 0.0:
            d = tiny
        if d < 0.0:
            count += 1
    return count


def verified_mode_count(env: Environment, freq_hz: float, phase_speed_max_mps: float,
                        points_per_wavelength: float = STURM_POINTS_PER_WAVELENGTH) -> tuple[int, float]:
    """How many modes must exist below ``phase_speed_max_mps``, beyond doubt of discretization error.

    Returns:
        (count, phase speed in m/s of the threshold actually used).
    """
    omega = 2.0 * math.pi * freq_hz
    c_hs = env.halfspace.sound_speed_mps
    k_cut2 = (omega / min(phase_speed_max_mps, c_hs)) ** 2
    # Largest error in kr^2 of the grid (lumped linear elements): (omega / c)^4 h^2 / 12 with
    # h = c_min / (f P): the slowest medium dominates.
    c_slow = min(m.min_speed_mps for m in media(env))
    error = (omega / c_slow) ** 2 * (2.0 * math.pi / points_per_wavelength) ** 2 / 12.0
    # Half-space loss blurs the cutoff: k_hs^2 = (omega / c_hs)^2 (1 + 2 i delta), and a lossy solver
    # may push a mode that our lossless count keeps just past it (a Pekeris mode at 1698.9 m/s moves
    # to 1700.05 m/s at 0.5 dB per wavelength). Modes within twice that width are not demanded.
    db_per_wavelength = env.halfspace.attenuation_db_per_m_khz * c_hs / 1000.0
    delta = db_per_wavelength / (40.0 * math.pi * math.log10(math.e))
    threshold = k_cut2 * (1.0 + 4.0 * delta) + 2.0 * error
    return sturm_count(env, freq_hz, threshold, points_per_wavelength), omega / math.sqrt(threshold)


def check_modes(engine: str, env: Environment, freq_hz: float, wavenumber: np.ndarray, shapes: np.ndarray,
                phase_speed_max_mps: float) -> None:
    """Raises unless the modes are complete and consistent.

    Args:
        engine: Engine name, for the error.
        env: The environment solved.
        freq_hz: Frequency, Hz.
        wavenumber: Horizontal wavenumbers, shape (n_mode,), complex rad/m, in the solver's order.
        shapes: Mode shapes sampled from the surface to the half-space top on a grid at least as fine
            as the solver's mesh, shape (n_depth, n_mode).
        phase_speed_max_mps: Upper phase-speed limit the solver was given.

    Raises:
        LostModeError: a mode is missing (the crossing count jumps, or fewer modes than the Sturm
            count).
        EngineError: modes out of order, or a duplicated / spurious mode (a crossing count repeats).
    """
    kr = np.asarray(wavenumber).real
    n = kr.size
    if n and np.any(np.diff(kr) >= 0):
        raise EngineError(engine, f"{freq_hz:g} Hz: mode wavenumbers are not strictly decreasing")
    crossings = zero_crossings(shapes) if n else np.zeros(0, dtype=int)
    bad = np.flatnonzero(crossings != np.arange(n))
    required, c_used = verified_mode_count(env, freq_hz, phase_speed_max_mps)
    count = (f"an independent Sturm count finds {required} modes with phase speed below {c_used:.1f} m/s")
    if bad.size:
        m = int(bad[0])
        found = int(crossings[m])
        where = (f"mode {m + 1} (phase speed {2 * math.pi * freq_hz / kr[m]:.2f} m/s) has {found} zero "
                 f"crossings, expected {m}")
        if found > m:
            lost = max(found - m, required - n)
            raise LostModeError(engine, f"{freq_hz:g} Hz: at least {lost} mode(s) lost of the {n} returned: "
                                        f"{where}; {count}")
        raise EngineError(engine, f"{freq_hz:g} Hz: a duplicated or spurious mode among the {n} returned: "
                                  f"{where}; {count}")
    if n < required:
        raise LostModeError(engine, f"{freq_hz:g} Hz: {required - n} mode(s) lost: the engine returned {n} "
                                    f"modes, {count}")
