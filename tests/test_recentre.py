"""The stars layer re-registered on the input's star positions (astrosharp.recentre)."""

from __future__ import annotations

import numpy as np
import pytest

from astrosharp.psf.fit import fit_stars, render_moffat
from astrosharp.psf.measure import StarTable
from astrosharp.recentre import recentre_stars, shift_image


def _layer(xs, ys, dx=0.0, dy=0.0, size=200, fwhm=2.2):
    img = np.zeros((size, size))
    for x, y in zip(xs, ys):
        img += render_moffat((size, size), x + dx, y + dy, 5000.0, fwhm, 3.0)
    return img.astype(np.float32)


def _table(xs, ys, fwhm=4.0):
    n = len(xs)
    z = np.zeros(n)
    return StarTable(x=np.asarray(xs, float), y=np.asarray(ys, float), flux=z + 5000.0, background=z, fwhm=z + fwhm,
                     fwhm_major=z + fwhm, fwhm_minor=z + fwhm, beta=z + 3.0, ellipticity=z, angle=z, e1=z, e2=z,
                     asym_x=z, asym_y=z, snr=z + 200.0, chi2=z + 1.0, niter=np.zeros(n, int), flags=np.zeros(n, int),
                     channel=np.zeros(n, int), used=np.ones(n, bool))


def _grid(seed=1):
    rng = np.random.default_rng(seed)
    g = np.linspace(25, 175, 5)
    ys, xs = [a.ravel() + rng.uniform(-0.5, 0.5, a.size) for a in np.meshgrid(g, g, indexing="ij")]
    return xs, ys


def test_shift_image_moves_a_star_and_keeps_its_flux():
    a = render_moffat((41, 41), 20.2, 19.7, 1000.0, 2.5, 3.0)
    b = shift_image(a, 0.08, -0.13)  # content moves by (-0.08, +0.13)
    f = fit_stars(b[None].astype(float), [20.0], [20.0], fwhm_guess=2.5, noise=0.01)
    assert f.x[0] == pytest.approx(20.2 + 0.13, abs=0.005)
    assert f.y[0] == pytest.approx(19.7 - 0.08, abs=0.005)
    assert b.sum() == pytest.approx(a.sum(), rel=1e-4)


def test_recentre_stars_takes_out_a_common_offset():
    xs, ys = _grid()
    layer = _layer(xs, ys, dx=-0.1, dy=0.04)[None]
    out, rc = recentre_stars(layer, _table(xs, ys), np.array([1.0]))
    assert rc.applied[0]
    np.testing.assert_allclose(rc.offset[0], (0.04, -0.1), atol=0.01)
    centre = np.full(len(xs), 8.0)
    x0, y0 = np.round(xs).astype(int), np.round(ys).astype(int)
    st = np.stack([out[0, y - 8:y + 9, x - 8:x + 9] for y, x in zip(y0, x0)]).astype(float)
    f = fit_stars(st, centre, centre, fwhm_guess=2.2, noise=1.0)
    assert np.median(f.x - (xs - x0 + 8)) == pytest.approx(0.0, abs=0.01)
    assert np.median(f.y - (ys - y0 + 8)) == pytest.approx(0.0, abs=0.01)
    assert out.sum() == pytest.approx(layer.sum(), rel=1e-4)
    assert layer[0].max() != out[0].max()  # copy=True: the input layer is not modified in place...
    assert np.array_equal(layer, _layer(xs, ys, dx=-0.1, dy=0.04)[None])  # ...at all


def test_a_layer_on_the_input_positions_is_left_alone():
    xs, ys = _grid(2)
    layer = _layer(xs, ys)[None]
    out, rc = recentre_stars(layer, _table(xs, ys), np.array([1.0]))
    assert not rc.applied[0] and np.array_equal(out, layer)
    assert np.all(np.abs(rc.offset[0]) < 0.01)
    # too few stars: nothing measured, nothing done
    out2, rc2 = recentre_stars(layer, _table(xs[:5], ys[:5]), np.array([1.0]))
    assert np.isnan(rc2.offset[0]).all() and not rc2.applied[0]
    assert recentre_stars(layer, None, np.array([1.0]))[1].n_stars[0] == 0
