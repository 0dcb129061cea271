"""The generator's fast paths compute exactly what the plain numpy expressions they replaced did.

The speed work on ``spinescan synth`` (benchmarks/synth_speed.py) kept every film bit-identical.
Hashes of whole films depend on the numpy/OpenCV/libm build, so these tests pin the equivalences
themselves instead: each fast path against its plain formulation, bit for bit, on random inputs
in whatever environment runs the tests (the workers test in test_synth.py covers whole films).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinescan.synth import anatomy, ap, canvas, exposure, framing, geometry, presentation

RNG_SEEDS = range(300)


def test_pick_is_generator_choice_draw_for_draw() -> None:
    tables = [{k: v[0] for k, v in framing.FRAMINGS.items()}, *framing.EXTENTS.values()]
    for seed in RNG_SEEDS:
        table = tables[seed % len(tables)]
        mine, plain = np.random.default_rng(seed), np.random.default_rng(seed)
        names = list(table)
        probs = np.array([table[n] for n in names])
        expected = names[int(plain.choice(len(names), p=probs / probs.sum()))]
        assert framing._pick(mine, table) == expected
        assert mine.bit_generator.state == plain.bit_generator.state  # the stream advanced alike


def _ellipse_reference(centre: np.ndarray, axes: tuple[float, float], angle: float, n: int) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    a = math.radians(angle)
    x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
    pts = np.stack([x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)], axis=1)
    return pts + np.asarray(centre, dtype=np.float64).reshape(2)


@pytest.mark.parametrize("n", [12, 36])
def test_ellipse_points_match_the_rotation_formula(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(200):
        centre = rng.normal(0.0, 300.0, 2)
        axes = (float(rng.uniform(1.0, 120.0)), float(rng.uniform(1.0, 120.0)))
        angle = float(rng.uniform(-180.0, 180.0))
        got = canvas.ellipse_points(centre, axes, angle, n)
        assert np.array_equal(got, _ellipse_reference(centre, axes, angle, n))


def _stack_reference(start, below_phi, phis, heights, widths, discs) -> np.ndarray:
    out = np.zeros((len(phis), 4, 2))
    p, below = np.asarray(start, dtype=np.float64), below_phi
    for i, phi in enumerate(phis):
        pb = p + discs[i] * geometry.normal((below + phi) / 2.0)
        pt = pb + heights[i] * geometry.normal(phi)
        half = widths[i] / 2.0 * geometry.along(phi)
        out[i] = [pt - half, pt + half, pb - half, pb + half]
        p, below = pt, phi
    return out


def test_cervical_stack_in_python_floats_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    for _ in range(100):
        start, below = rng.normal(0.0, 200.0, 2), float(rng.normal(0.0, 20.0))
        phis = below - np.cumsum(rng.uniform(0.0, 8.0, 6))
        sizes = [rng.uniform(3.0, 30.0, 6) for _ in range(3)]
        assert np.array_equal(
            anatomy.stack(start, below, phis, *sizes), _stack_reference(start, below, phis, *sizes)
        )


def test_frame_points_in_python_floats_match_numpy() -> None:
    rng = np.random.default_rng(11)
    for _ in range(100):
        origin, e, n = rng.normal(0.0, 100.0, 2), rng.normal(0.0, 1.0, 2), rng.normal(0.0, 1.0, 2)
        s = float(rng.uniform(0.8, 1.2))
        pts = rng.normal(0.0, 150.0, (int(rng.integers(1, 10)), 2))
        p = pts * s
        assert np.array_equal(ap._Scaled(origin, e, n, s)(pts.tolist()), origin + p[:, :1] * e + p[:, 1:] * n)


def test_tone_curve_prefix_and_linspace_shortcut_are_exact() -> None:
    rng = np.random.default_rng(5)
    for _ in range(100):
        exp = exposure.sample_exposure(rng)
        d_max = float(exp.soft * 1.2 + exp.bone * rng.uniform(0.8, 1.25) * 6.0)
        full = exposure._tone_curve(exp, d_max)
        entries = int(rng.integers(1, exposure._LUT_SIZE + 1))
        assert np.array_equal(exposure._tone_curve(exp, d_max, entries), full[:entries])
        d = np.linspace(0.0, d_max, exposure._LUT_SIZE, dtype=np.float64)
        signal = 1.0 - np.exp(-exp.gain * d)
        ref = 1.0 - np.exp(-exp.gain * (exp.soft + 1.8 * exp.bone))
        x = np.clip((signal / ref - exp.low) / (exp.high - exp.low), 0.0, 1.0) ** exp.gamma
        if exp.contrast > 0.0:
            c = exp.contrast
            lo, hi = np.tanh(-0.5 * c), np.tanh(0.5 * c)
            x = (np.tanh(c * (x - 0.5)) - lo) / (hi - lo)
        assert np.array_equal(full, x.astype(np.float32))


def test_largest_cobb_without_triu() -> None:
    rng = np.random.default_rng(3)
    for _ in range(100):
        phi = rng.normal(0.0, 15.0, geometry.N_ENDPLATES)
        top, bottom = phi[geometry._TOPS], phi[geometry._BOTTOMS]
        expected = float(np.triu(np.abs(top[:, None] - bottom[None, :])).max())
        assert geometry.max_cobb_from_phi(phi) == expected


def _random_text_reference(rng: np.random.Generator) -> str:
    import string

    kind = int(rng.integers(4))
    if kind == 0:
        return f"{rng.integers(1990, 2025)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
    if kind == 1:
        return "ID " + "".join(rng.choice(list(string.digits), size=int(rng.integers(5, 9))))
    if kind == 2:
        return "".join(rng.choice(list(presentation._CHARS), size=int(rng.integers(3, 10))))
    return f"{rng.integers(60, 125)}KV {rng.integers(5, 40)}MAS"


def test_burned_in_text_is_generator_choice_draw_for_draw() -> None:
    for seed in RNG_SEEDS:
        mine, plain = np.random.default_rng(seed), np.random.default_rng(seed)
        assert presentation._random_text(mine) == _random_text_reference(plain)
        assert mine.bit_generator.state == plain.bit_generator.state
