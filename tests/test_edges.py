"""Calibration / stacking borders: detection, treatment, and the pipeline's use."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import signal

from astrosharp.bench.metrics import fit_star_shapes
from astrosharp.edges import Borders, fill_borders, find_borders, hide_borders, restore_borders
from astrosharp.errors import ImageDataError, ParameterError
from astrosharp.params import SharpenParams
from astrosharp.pipeline import sharpen
from astrosharp.psf.field import PSFField
from astrosharp.psf.moffat import moffat_kernel

FWHM = 4.0
BG, NOISE = 100.0, 2.0
RL = SharpenParams(method="rl", sharpen_stars=1.0, sharpen_nonstellar=0.5)


def _noise(shape, seed=0):
    return (BG + np.random.default_rng(seed).normal(0, NOISE, shape)).astype(np.float32)


def _stars(shape, positions, flux=2.0e4, seed=1):
    """Noisy frame with Moffat stars of FWHM 4 at (y, x) positions."""
    h, w = shape
    sky = np.zeros((h, w))
    k = moffat_kernel(FWHM, 3.0, size=61)
    for y, x in positions:
        sky[y, x] = flux
    img = signal.fftconvolve(sky, k, mode="same") + BG
    img += np.random.default_rng(seed).normal(0, NOISE, img.shape)
    return img[None].astype(np.float32)


# ---------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------


def test_straight_borders_of_every_kind_are_found_exactly():
    img = _noise((3, 120, 160))
    img[:, :7] = 0.0  # zero rows at the top (registration shift)
    img[:, :, -4:] = np.nan  # NaN columns at the right
    img[0, -10:, :] = 5000.0  # a white (saturated) band in one channel only
    b = find_borders(img, grow=0)
    assert isinstance(b, Borders) and b.any
    expected = np.zeros(img.shape, bool)
    expected[:, :7] = True
    expected[:, :, -4:] = True
    expected[0, -10:, :] = True
    np.testing.assert_array_equal(b.mask, expected)
    assert b.sides == {"top": 7, "bottom": 10, "left": 0, "right": 4}
    assert b.full == {"top": 7, "bottom": 0, "left": 0, "right": 4}  # white only in channel 0
    assert set(b.kinds) == {"zero", "nan", "white"}
    assert "top 7 px" in b.describe()


def test_a_constant_fill_value_is_a_border_and_grow_takes_one_more_line():
    img = _noise((1, 100, 90), seed=3)
    img[:, :, :5] = 90.0  # a stacking tool's pedestal (below the sky: not white)
    b0 = find_borders(img, grow=0)
    b1 = find_borders(img, grow=1)
    assert b0.kinds == ("constant",)
    assert b0.mask[0, :, :5].all() and not b0.mask[0, :, 5:].any()
    assert b1.mask[0, :, :6].all() and not b1.mask[0, :, 6:].any()
    assert b1.sides["left"] == 5  # the summary counts the fill itself


def test_ragged_border_after_registration_is_found():
    h, w = 160, 200
    img = _noise((1, h, w), seed=4)
    yy, xx = np.mgrid[0:h, 0:w]
    wedge = yy < 10 + 0.15 * xx  # the top edge of a rotated frame
    img[0][wedge] = 0.0
    b = find_borders(img, grow=0)
    np.testing.assert_array_equal(b.mask[0], wedge)
    assert b.full["top"] == 10
    assert 10 + 0.15 * 50 <= b.sides["top"] <= 10 + 0.15 * 150 + 1


def test_plain_images_have_no_border():
    # float noise, and 16-bit-like quantised noise whose values repeat a lot
    img = _noise((1, 128, 128))
    assert not find_borders(img).any
    q = np.round(_noise((1, 128, 128), seed=2)).astype(np.uint16)
    assert not find_borders(q).any
    # a clipped star touching the edge is not a white border
    s = _stars((128, 128), [(64, 2)], flux=5e5)
    s = np.minimum(s, 3000.0)
    assert (s[0, :, 0] == 3000.0).sum() >= 3
    assert not find_borders(s).any


def test_a_channel_that_is_all_fill_is_not_a_border():
    img = np.zeros((1, 64, 64), np.float32)
    assert not find_borders(img).any


def test_bad_arguments_are_refused():
    with pytest.raises(ParameterError):
        find_borders(np.zeros((8, 8)), min_run=1)
    with pytest.raises(ParameterError):
        find_borders(np.zeros((8, 8)), grow=-1)
    with pytest.raises(ImageDataError):
        find_borders(np.zeros(8))
    with pytest.raises(ImageDataError):
        fill_borders(np.zeros((1, 8, 8)), np.zeros((1, 8, 9), bool))


# ---------------------------------------------------------------------------
# treatment
# ---------------------------------------------------------------------------


def test_fill_mirrors_the_interior_and_hide_makes_nan():
    img = _noise((1, 60, 70), seed=5)
    img[:, :6] = 0.0
    b = find_borders(img, grow=0)
    f = fill_borders(img, b.mask)
    # row i < 6 mirrors row 2*6 - i about the first valid row
    for i in range(6):
        np.testing.assert_array_equal(f[0, i], img[0, 12 - i])
    np.testing.assert_array_equal(f[0, 6:], img[0, 6:])
    hidden = hide_borders(img, b.mask)
    assert np.isnan(hidden[0, :6]).all() and np.isfinite(hidden[0, 6:]).all()
    assert img[0, 0, 0] == 0.0  # inputs untouched


def test_fill_of_a_ragged_border_looks_like_the_sky():
    h, w = 160, 200
    img = _noise((1, h, w), seed=6)
    yy, xx = np.mgrid[0:h, 0:w]
    wedge = (yy < 10 + 0.15 * xx) | (xx > w - 8 - 0.05 * yy)
    img[0][wedge] = np.nan
    b = find_borders(img)
    f = fill_borders(img, b.mask)
    assert np.isfinite(f).all()
    v = f[0][b.mask[0]]
    assert abs(v.mean() - BG) < 0.2 and abs(v.std() - NOISE) < 0.2


def test_restore_puts_the_border_back():
    img = _noise((1, 40, 50))
    img[:, -5:] = 0.0
    b = find_borders(img)
    stars = np.ones_like(img)
    nonst = np.full_like(img, 7.0)
    restore_borders(stars, nonst, img, b.mask)
    assert (stars[b.mask] == 0).all() and (nonst[b.mask] == img[b.mask]).all()
    assert (nonst[~b.mask] == 7.0).all()


# ---------------------------------------------------------------------------
# the pipeline: a star next to a border is sharpened like one in the middle
# ---------------------------------------------------------------------------


def _with_border(img, kind):
    out = img.copy()
    h, w = out.shape[1:]
    if kind == "zero":
        out[:, :12] = 0.0
        out[:, :, :6] = 0.0
    elif kind == "white":
        out[:, -12:] = 65535.0
    elif kind == "nan":
        out[:, :, -10:] = np.nan
    elif kind == "ragged":  # rotated frame: an oblique zero edge with one interpolated line
        yy, xx = np.mgrid[0:h, 0:w]
        edge = 8 + 0.04 * xx
        out[0][yy < edge] = 0.0
        line = (yy >= edge) & (yy < edge + 1)
        out[0][line] *= 0.5
    return out


# star next to the border (about 8 px inside it) and a star in the middle
_NEAR = {"zero": (20, 120), "white": (159, 120), "nan": (90, 221), "ragged": (21, 100)}
_MID = (90, 120)


@pytest.mark.parametrize("kind", ["zero", "white", "nan", "ragged"])
def test_star_next_to_a_border_is_sharpened_like_one_in_the_middle(kind):
    shape = (180, 240)
    near = _NEAR[kind]
    clean = _stars(shape, [near, _MID])
    img = _with_border(clean, kind)
    b = find_borders(img)
    assert b.any
    psf = PSFField.uniform(shape, 1, FWHM, 3.0, origin="image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sharpen(img, RL, psf_field=psf)
        ref = sharpen(clean, RL, psf_field=psf)  # the same sky without a border
    out = res.image.data
    # the border comes back unchanged (NaN where it was NaN)
    np.testing.assert_array_equal(out[b.mask], img[b.mask])
    assert (res.stars[b.mask] == 0).all()
    assert any("border" in n for n in res.notes)
    # the star next to the border: same FWHM ratio as the middle star
    ys = np.array([near[0], _MID[0]], float)
    xs = np.array([near[1], _MID[1]], float)
    fit = fit_star_shapes(out[0], xs, ys, FWHM / 2, NOISE)
    fit_in = fit_star_shapes(clean[0], xs, ys, FWHM, NOISE)
    assert fit["ok"].all() and fit_in["ok"].all()
    ratio = fit["fwhm"] / fit_in["fwhm"]
    assert ratio[0] < 0.65  # it was sharpened (target 0.5)
    assert abs(ratio[0] / ratio[1] - 1) < 0.05
    # no ringing against the border: the interior near it stays at the sky level
    interior = (~b.mask[0]) & np.isfinite(img[0])
    strip = np.zeros_like(interior)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    far = (yy - near[0]) ** 2 + (xx - near[1]) ** 2 > (5 * FWHM) ** 2
    from scipy import ndimage

    strip = ndimage.binary_dilation(b.mask[0], iterations=6) & interior & far
    dev = out[0][strip] - ref.image.data[0][strip]
    assert np.sqrt(np.mean(dev**2)) < 0.2 * NOISE  # untreated: 0.3 to 400 NOISE


def test_interior_box_of_straight_and_ragged_borders():
    img = _noise((3, 120, 160))
    assert find_borders(img).interior_box() is None
    img[:, :7] = 0.0
    img[:, :, -4:] = np.nan
    b = find_borders(img, grow=1)
    assert b.interior_box() == (8, 120, 0, 155)  # grown by one line
    rag = _with_border(_noise((1, 180, 240)), "ragged")
    assert find_borders(rag).interior_box() is None


def test_star_cut_by_a_straight_border_is_sharpened_as_at_the_frame_edge():
    """With the network, a straight stacking border is treated as the frame
    edge: the sky next to it comes out as when the sky alone is sharpened."""
    from astrosharp.bench import metrics as M  # noqa: F401  (bench import keeps synth cached)

    shape = (160, 200)
    sky = _stars(shape, [(60, 15), (100, 120), (30, 90)], seed=5)  # a star 2 px inside the border below
    img = sky.copy()
    img[:, :, :13] = 0.0  # a 13 px zero border on the left
    b = find_borders(img)
    y0, y1, x0, x1 = b.interior_box()
    assert (y0, y1, x0, x1) == (0, 160, 14, 200)
    p = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5)
    psf = PSFField.uniform(shape, 1, FWHM, 3.0, origin="image")
    crop_psf = PSFField.uniform((y1 - y0, x1 - x0), 1, FWHM, 3.0, origin="image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sharpen(img, p, psf_field=psf)
        crop = sharpen(np.ascontiguousarray(sky[:, y0:y1, x0:x1]), p, psf_field=crop_psf)
    assert res.method == "nn" and crop.method == "nn"
    out = res.image.data[:, y0:y1, x0:x1]
    ref = crop.image.data
    near = (slice(None), slice(45, 76), slice(0, 12))  # the cut star, next to the border
    peak_ref = float(ref[near].max() - BG)
    assert abs(float(out[near].max() - BG) / peak_ref - 1) < 0.05
    np.testing.assert_array_equal(res.image.data[b.mask], img[b.mask])
