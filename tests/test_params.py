"""SharpenParams and the control formulas of DESIGN.md section 5."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from astrosharp.errors import ParameterError
from astrosharp.params import (
    BETA_LIMITS,
    F_MIN,
    SharpenParams,
    correct_target,
    nonstellar_target,
    stellar_target,
)


def test_defaults_are_the_ones_users_know():
    p = SharpenParams()
    assert p.sharpen_stars == 0.25
    assert p.adjust_halos == 0.0
    assert p.psf_diameter is None
    assert p.sharpen_nonstellar == 0.90
    assert not (p.correct_only or p.correct_first or p.nonstellar_then_stellar)
    assert p.denoise == 0.0
    assert p.method == "nn"
    assert p.tile_size == 512 and p.overlap == 0.2


def test_frozen_and_replace_validates_again():
    p = SharpenParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.sharpen_stars = 0.5  # type: ignore[misc]
    q = p.replace(sharpen_stars=1.0)
    assert q.sharpen_stars == 1.0 and p.sharpen_stars == 0.25
    with pytest.raises(ParameterError, match="sharpen_stars must be from 0 to 1"):
        p.replace(sharpen_stars=1.5)
    assert hash(p) == hash(SharpenParams())  # usable as a key


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sharpen_stars": -0.1}, "sharpen_stars must be from 0 to 1"),
        ({"adjust_halos": 0.6}, "adjust_halos must be from -0.5 to 0.5"),
        ({"sharpen_nonstellar": 2}, "sharpen_nonstellar must be from 0 to 1"),
        ({"denoise": -1}, "denoise must be from 0 to 1"),
        ({"sharpen_stars": float("nan")}, "sharpen_stars must be a number"),
        ({"sharpen_stars": True}, "sharpen_stars must be a number"),
        ({"method": "magic"}, "method must be one of nn, rl, wiener"),
        ({"psf_diameter": -1.0}, "psf_diameter must be 'auto' or a number"),
        ({"correct_only": True, "correct_first": True}, "correct_only cannot be combined"),
        ({"tile_size": 32}, "tile_size must be an integer of at least 64"),
        ({"overlap": 0.6}, "overlap must be in"),
        ({"orientations": 3}, "orientations must be one of 1, 2, 4, 8"),
        ({"orientations": True}, "orientations must be one of"),
        ({"orientations": 2.5}, "orientations must be one of"),
    ],
)
def test_out_of_range_controls_are_refused(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        SharpenParams(**kwargs)


def test_psf_diameter_over_8_px_refused_with_binning_advice():
    with pytest.raises(ParameterError, match="bin the image 2x2"):
        SharpenParams(psf_diameter=9)
    assert SharpenParams(psf_diameter=8).psf_diameter == 8


@pytest.mark.parametrize("s, ratio", [(0.0, 1.0), (0.25, 0.875), (0.5, 0.75), (1.0, 0.5)])
def test_stellar_fwhm_target(s, ratio):
    f, b = stellar_target(4.0, 3.0, s, 0.0)
    assert f == pytest.approx(4.0 * ratio)
    assert b == pytest.approx(3.0)


def test_stellar_fwhm_target_floor_for_undersampled_stars():
    # stars shrink no further than F_MIN; stars already under F_MIN keep their size
    assert stellar_target(1.5, 3.0, 1.0, 0.0)[0] == pytest.approx(F_MIN)
    assert stellar_target(1.5, 3.0, 0.5, 0.0)[0] == pytest.approx(1.125)
    assert stellar_target(0.6, 3.0, 1.0, 0.0)[0] == pytest.approx(0.6)
    fa, _ = stellar_target(np.array([0.6, 1.5, 2.0, 5.0]), 3.0, 1.0, 0.0)
    np.testing.assert_allclose(fa, [0.6, F_MIN, 1.0, 2.5])


@pytest.mark.parametrize("h", [-0.5, -0.25, 0.0, 0.25, 0.5])
def test_halo_control_changes_beta(h):
    _, b = stellar_target(4.0, 3.0, 0.0, h)
    assert b == pytest.approx(3.0 * 2.0 ** (-2 * h))
    # below 0: larger beta = tighter, darker wings; above 0: wider wings
    if h < 0:
        assert b > 3.0
    elif h > 0:
        assert b < 3.0


def test_beta_is_clamped():
    _, lo = stellar_target(4.0, 1.3, 0.0, 0.5)  # 1.3 / 2 = 0.65 -> 1.2
    _, hi = stellar_target(4.0, 8.0, 0.0, -0.5)  # 8 * 2 = 16 -> 10
    assert lo == BETA_LIMITS[0] and hi == BETA_LIMITS[1]
    fa, ba = stellar_target(np.array([2.0, 6.0]), np.array([1.0, 20.0]), 1.0, 0.0)
    np.testing.assert_allclose(fa, [1.0, 3.0])
    np.testing.assert_allclose(ba, [1.2, 10.0])


def test_nonstellar_target_formula():
    assert nonstellar_target(4.0, 0.5) == pytest.approx(2.0)
    assert nonstellar_target(4.0, 0.9) == pytest.approx(F_MIN)  # 0.4 px -> F_MIN
    assert nonstellar_target(4.0, 0.0) == pytest.approx(4.0)
    assert nonstellar_target(4.0, 1.0) == pytest.approx(F_MIN)
    # never wider than the source; D = 0 leaves non-stellar features untouched
    assert nonstellar_target(0.6, 0.5) == pytest.approx(0.6)
    assert nonstellar_target(0.0, 0.9) == 0.0
    arr = nonstellar_target(np.array([0.0, 2.0, 10.0]), 0.5)
    np.testing.assert_allclose(arr, [0.0, 1.0, 5.0])


def test_bench_setting_gives_half_fwhm_everywhere():
    # sharpen stars 1.0 and non-stellar 0.5: stars and non-stellar both to F/2
    for f in (2.0, 3.3, 5.0, 8.0):
        fs, _ = stellar_target(f, 3.0, 1.0, 0.0)
        assert fs == pytest.approx(f / 2)
        assert nonstellar_target(f, 0.5) == pytest.approx(f / 2)


def test_correct_target_keeps_fwhm_and_beta():
    assert correct_target(3.7, 2.5) == (3.7, 2.5)


def test_describe_names_the_settings():
    text = SharpenParams(sharpen_stars=1.0, psf_diameter=3.5, correct_first=True, denoise=0.5).describe()
    for part in ("sharpen_stars=1", "psf_diameter=3.5px", "correct_first", "denoise=0.5", "method=nn"):
        assert part in text
    assert "psf_diameter=auto" in SharpenParams().describe()


def test_orientations_are_recorded_when_not_one():
    assert "orientations" not in SharpenParams().describe()
    assert "orientations=4" in SharpenParams(orientations=4).describe()
