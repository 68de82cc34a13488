"""The layer split repair (astrosharp.layers): star light left in the non-stellar
layer goes to the stars layer, nebula and noise stay, the sum never changes."""

from __future__ import annotations

import numpy as np
import pytest

from astrosharp.layers import separate_layers
from astrosharp.params import SharpenParams
from astrosharp.psf.field import PSFField
from astrosharp.psf.fit import render_moffat

SIZE = 160
SRC = (4.0, 3.0)  # source FWHM, beta
TGT = (2.0, 3.0)  # at sharpen stars 1.0
SIGMA = 1.0
PARAMS = SharpenParams(sharpen_stars=1.0)


def _star(x, y, flux, fwhm_beta=TGT):
    return render_moffat((SIZE, SIZE), x, y, flux, *fwhm_beta)


def _nebula():
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return 30.0 + 0.05 * xx + 40.0 * np.exp(-((xx - 90.0) ** 2 + (yy - 70.0) ** 2) / (2 * 25.0**2))


def _disc(img, x, y, r):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return float(img[np.hypot(yy - y, xx - x) <= r].sum())


def _sky(seed):
    """The nebula and a noise realisation."""
    return _nebula(), np.random.default_rng(seed).normal(0, SIGMA, (SIZE, SIZE))


def _psf():
    return PSFField.uniform((SIZE, SIZE), 1, *SRC)


def _run(stars, nonst):
    s = stars[None].astype(np.float32)
    n = nonst[None].astype(np.float32)
    total = s + n
    split = separate_layers(s, n, _psf(), PARAMS, np.array([SIGMA]))
    # the sum is the sharpened image: it does not change
    np.testing.assert_allclose(s + n, total, rtol=0, atol=1e-4 * float(np.abs(total).max()))
    return s[0], n[0], split


POSITIONS = [(40.3, 40.6), (110.2, 45.1), (75.5, 80.4), (45.7, 120.2), (120.1, 118.8)]


def test_stars_left_whole_in_the_nonstellar_layer_are_moved():
    neb, noise = _sky(1)
    stars_true = sum(_star(x, y, 400.0) for x, y in POSITIONS)
    s, n, split = _run(np.zeros_like(neb), neb + noise + stars_true)
    assert split.n_moved >= len(POSITIONS)
    for x, y in POSITIONS:
        got = _disc(s, x, y, 6.0)
        want = _disc(stars_true, x, y, 6.0)
        assert got == pytest.approx(want, rel=0.08)
        # what stays under the star is the nebula, within the noise of the disc
        left = _disc(n - neb - noise, x, y, SRC[0])
        assert abs(left) < 3.0 * SIGMA * np.sqrt(np.pi * SRC[0] ** 2)


def test_partly_left_stars_are_completed():
    neb, noise = _sky(2)
    full = sum(_star(x, y, 2000.0) for x, y in POSITIONS)
    # the network kept 85 % of each star, and left 15 % at the source size
    left = sum(_star(x, y, 300.0, SRC) for x, y in POSITIONS)
    s, n, _ = _run(0.85 * full, neb + noise + left)
    for x, y in POSITIONS:
        before = _disc(left, x, y, SRC[0])
        after = _disc(n - neb - noise, x, y, SRC[0])
        assert abs(after) < 0.25 * before


def test_a_smooth_nebula_with_noise_keeps_its_light():
    neb, noise = _sky(3)
    s, n, split = _run(np.zeros_like(neb), neb + noise)
    # noise peaks are not stars: almost nothing moves, and the noise stays
    assert np.abs(s).sum() < 1e-3 * neb.sum()
    assert np.std(n - neb) == pytest.approx(np.std(noise), rel=0.01)


def test_holes_under_stars_are_filled_without_negative_stars():
    neb, noise = _sky(4)
    stars_true = sum(_star(x, y, 1500.0) for x, y in POSITIONS)
    # the stars layer took some nebular light under each star: a hole in the other layer
    taken = sum(_star(x, y, 150.0, SRC) for x, y in POSITIONS)
    s, n, split = _run(stars_true + taken, neb + noise - taken)
    assert split.n_filled >= 3
    assert s.min() > -1e-3
    holes_before = [_disc(-taken, x, y, SRC[0]) for x, y in POSITIONS]
    holes_after = [_disc(n - neb - noise, x, y, SRC[0]) for x, y in POSITIONS]
    assert np.median(np.abs(holes_after)) < 0.3 * np.median(np.abs(holes_before))


def test_the_pipeline_image_does_not_depend_on_the_split():
    from astrosharp import synth
    from astrosharp.pipeline import sharpen

    case = synth.make_case("nebula_rgb", 3, 192)
    a = sharpen(case.obs.image, SharpenParams(), layers=True)
    b = sharpen(case.obs.image, SharpenParams(), layers=False)
    assert any(n.startswith("layer split") for n in a.notes)
    assert not any(n.startswith("layer split") for n in b.notes)
    scale = float(np.abs(a.image.data).max())
    assert np.max(np.abs(a.image.data - b.image.data)) <= 1e-5 * scale
    np.testing.assert_allclose(a.stars + a.nonstellar, a.image.data, rtol=0, atol=1e-6 * scale)
