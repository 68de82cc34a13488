"""Correct-only through the network (astrosharp.correct): sharpen to a round PSF, convolve to the round target."""

from __future__ import annotations

import numpy as np
import pytest

from astrosharp.correct import translation_kernel_otf
from astrosharp.params import SharpenParams
from astrosharp.psf.fit import fit_stars, render_moffat


@pytest.mark.parametrize("beta", [2.0, 3.5])
def test_kernel_turns_the_sharper_moffat_into_the_target(beta):
    n = 96
    src = render_moffat((n, n), 47.3, 48.1, 1e4, 2.0, beta)
    qy, qx = np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :]
    out = np.fft.irfft2(np.fft.rfft2(src) * translation_kernel_otf(qx, qy, 2.0, beta, 4.0, beta), s=(n, n))
    assert out.sum() == pytest.approx(src.sum(), rel=1e-6)
    fit = fit_stars(out[None, 36:61, 35:60], [12.1], [12.3], fwhm_guess=4.0, noise=1.0, beta_guess=beta)
    assert fit.fwhm[0] == pytest.approx(4.0, rel=0.03)
    assert fit.beta[0] == pytest.approx(beta, rel=0.1)
    assert (fit.x[0], fit.y[0]) == (pytest.approx(12.3, abs=0.02), pytest.approx(12.1, abs=0.02))


def test_an_image_already_round_at_the_target_comes_back_unchanged():
    """Pure noise (no stars: the default round PSF) at denoise 0: the sharpened, denoised result taken
    back to the source PSF plus the input's residual is the input."""
    from astrosharp.errors import ModelError
    from astrosharp.nn import Model
    from astrosharp.pipeline import sharpen

    try:
        model = Model.load()
    except ModelError as exc:
        pytest.skip(f"no shipped network ({exc})")
    rng = np.random.default_rng(2)
    img = (100.0 + rng.normal(0, 2.0, (1, 160, 200))).astype(np.float32)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = sharpen(img, SharpenParams(correct_only=True, sharpen_stars=0.0, sharpen_nonstellar=0.0),
                      model=model).image.data
    assert np.std(out - img) < 0.02 * np.std(img)


def _elliptic_field(seed=3, n_side=6, size=240, fwhm=4.0, e=0.25, noise=2.0):
    rng = np.random.default_rng(seed)
    g = np.linspace(30, size - 31, n_side)
    ys, xs = [a.ravel() + rng.uniform(-2, 2, a.size) for a in np.meshgrid(g, g, indexing="ij")]
    img = np.full((size, size), 100.0)
    for y, x in zip(ys, xs):
        img += render_moffat((size, size), x, y, float(rng.uniform(2e4, 6e4)), fwhm, 3.0, ellipticity=e, angle=30.0)
    return (img + rng.normal(0, noise, img.shape)).astype(np.float32)[None], ys, xs


def _shapes(img, ys, xs):
    st = np.stack([img[0, int(round(y)) - 12:int(round(y)) + 13, int(round(x)) - 12:int(round(x)) + 13] for y, x in zip(ys, xs)])
    return fit_stars(st, np.round(xs) - np.round(xs) + 12.0, np.round(ys) - np.round(ys) + 12.0, fwhm_guess=4.0, noise=2.0)


def test_correct_only_makes_elliptic_stars_round_and_keeps_their_width_and_noise():
    from astrosharp.errors import ModelError
    from astrosharp.nn import Model
    from astrosharp.pipeline import sharpen

    try:
        model = Model.load()
    except ModelError as exc:
        pytest.skip(f"no shipped network ({exc})")
    img, ys, xs = _elliptic_field()
    res = sharpen(img, SharpenParams(correct_only=True, sharpen_stars=0.0, sharpen_nonstellar=0.0), model=model)
    out = res.image.data
    before, after = _shapes(img, ys, xs), _shapes(out, ys, xs)
    assert np.median(before.ellipticity) == pytest.approx(0.25, abs=0.02)
    assert np.median(after.ellipticity) < 0.06
    assert np.median(after.fwhm / before.fwhm) == pytest.approx(1.0, abs=0.05)
    assert np.median(after.flux / before.flux) == pytest.approx(1.0, abs=0.02)
    # kept through the recentring of the stars layer (astrosharp.recentre)
    assert np.median(np.hypot(after.x - before.x, after.y - before.y)) < 0.05
    # the noise stays, it is neither smoothed away nor amplified
    bg = np.ones(img.shape[1:], bool)
    for y, x in zip(ys, xs):
        bg[max(0, int(y) - 15):int(y) + 16, max(0, int(x) - 15):int(x) + 16] = False
    ratio = np.std(out[0][bg]) / np.std(img[0][bg])
    assert 0.9 < ratio < 1.1
