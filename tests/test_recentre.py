"""The stars layer re-registered on the input's star positions (astrosharp.recentre)."""

from __future__ import annotations

import numpy as np
import pytest

from astrosharp.psf.fit import fit_stars, render_moffat
from astrosharp.psf.measure import StarTable
from astrosharp.recentre import recentre_stars, shift_image


def _layer(xs, ys, dx=0.0, dy=0.0, size=200, fwhm=2.2, ellipticity=0.0, angle=0.0):
    img = np.zeros((size, size))
    for x, y in zip(xs, ys):
        img += render_moffat((size, size), x + dx, y + dy, 5000.0, fwhm, 3.0, ellipticity=ellipticity, angle=angle)
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


def test_an_offset_of_stars_sharper_than_a_resampling_allows_is_left_in_place():
    # undersampled stars (0.7 px FWHM): a Lanczos shift of a few hundredths
    # of a pixel would widen them along the shift, more than the offset costs
    xs, ys = _grid(3)
    layer = _layer(xs, ys, dx=-0.1, dy=0.04, fwhm=0.7)[None]
    out, rc = recentre_stars(layer, _table(xs, ys, fwhm=1.0), np.array([1.0]))
    assert rc.too_sharp[0] and not rc.applied[0]
    np.testing.assert_allclose(rc.offset[0], (0.04, -0.1), atol=0.02)
    assert np.array_equal(out, layer)
    assert "not taken out" in rc.describe()
    # the same offset on stars of 1.3 and 2.2 px is taken out
    for fwhm in (1.3, 2.2):
        out2, rc2 = recentre_stars(_layer(xs, ys, dx=-0.1, dy=0.04, fwhm=fwhm)[None], _table(xs, ys), np.array([1.0]))
        assert rc2.applied[0] and not rc2.too_sharp[0], fwhm


def _fits(layer, xs, ys, fwhm=2.2, r=8):
    """Moffat fits of stamps of half-size r centred at the rounded positions
    (their x, y in stamp coordinates)."""
    x0, y0 = np.round(xs).astype(int), np.round(ys).astype(int)
    st = np.stack([layer[y - r:y + r + 1, x - r:x + r + 1] for y, x in zip(y0, x0)]).astype(float)
    return fit_stars(st, np.full(len(xs), float(r)), np.full(len(xs), float(r)), fwhm_guess=fwhm, noise=1.0)


def _fit_positions(layer, xs, ys, fwhm=2.2, r=8):
    f = _fits(layer, xs, ys, fwhm, r)
    return f.x + np.round(xs).astype(int) - r, f.y + np.round(ys).astype(int) - r


def test_each_star_is_moved_onto_its_own_input_position():
    # the network's leftover offsets differ from star to star: the common
    # (median) shift cannot take them out, the per-star move does
    xs, ys = _grid(3)
    rng = np.random.default_rng(4)
    ox, oy = rng.uniform(-0.15, 0.15, len(xs)), rng.uniform(-0.15, 0.15, len(xs))
    layer = _layer(xs + ox, ys + oy)[None]
    before = np.hypot(*(np.array(_fit_positions(layer[0], xs, ys)) - [xs, ys]))
    out, rc = recentre_stars(layer, _table(xs, ys), np.array([1.0]))
    fx, fy = _fit_positions(out[0], xs, ys)
    after = np.hypot(fx - xs, fy - ys)
    assert np.median(before) > 0.08
    assert np.max(after) < 0.02
    assert rc.n_moved[0] >= len(xs) - 3  # moves under STAR_MIN_MOVE are not made
    assert out.sum() == pytest.approx(layer.sum(), rel=1e-4)  # moving a star keeps its light
    assert "one by one" in rc.describe()
    # per_star=False: only the common offset
    out2, rc2 = recentre_stars(layer, _table(xs, ys), np.array([1.0]), per_star=False)
    assert rc2.n_moved[0] == 0
    assert np.median(np.hypot(*(np.array(_fit_positions(out2[0], xs, ys)) - [xs, ys]))) > 0.06


def test_in_colour_every_channel_takes_the_reference_channels_position():
    # a lateral colour shift in the input that the channels' registration
    # did not take out (too few stars, say), and that the network kept: red
    # and blue are put where green has each star
    xs, ys = _grid(5)
    shift = {0: (0.2, -0.1), 1: (0.0, 0.0), 2: (-0.15, 0.12)}  # (dx, dy) per channel
    layer = np.stack([_layer(xs + shift[c][0], ys + shift[c][1]) for c in range(3)])
    tables = [_table(xs + shift[c][0], ys + shift[c][1]) for c in range(3)]
    n = len(xs)
    table = StarTable(**{k: np.concatenate([getattr(t, k) for t in tables])
                         for k in ("x", "y", "flux", "background", "fwhm", "fwhm_major", "fwhm_minor", "beta",
                                   "ellipticity", "angle", "e1", "e2", "asym_x", "asym_y", "snr", "chi2", "niter",
                                   "flags", "used")},
                      channel=np.repeat(np.arange(3), n))
    out, rc = recentre_stars(layer, table, np.ones(3))
    assert not rc.applied.any()  # each channel's layer sits on its own input: no common offset
    for c in range(3):
        fx, fy = _fit_positions(out[c], xs, ys)
        assert np.max(np.hypot(fx - xs, fy - ys)) < 0.02, c
    assert rc.n_moved[1] == 0 and rc.n_moved[0] == n and rc.n_moved[2] == n


def test_blends_and_stars_with_close_neighbours_are_not_moved():
    # the input's fit of a blend or of a star beside a neighbour is the
    # pair's position, not the star's: those stars keep the network's position
    xs, ys = _grid(6)
    rng = np.random.default_rng(7)
    ox, oy = rng.uniform(-0.15, 0.15, len(xs)), rng.uniform(-0.15, 0.15, len(xs))
    ox[[3, 7]], oy[[3, 7]] = 0.12, -0.1
    layer = _layer(xs + ox, ys + oy)[None]
    table = _table(xs, ys)
    table.ellipticity[3] = 0.3  # a blend: more elongated than the other stars
    extra = _table([xs[7] + 9.0], [ys[7]])  # a neighbour half as bright 9 px from star 7
    extra.flux[:] = 0.5 * table.flux[7]
    extra.used[:] = False
    keys = ("x", "y", "flux", "background", "fwhm", "fwhm_major", "fwhm_minor", "beta", "ellipticity", "angle",
            "e1", "e2", "asym_x", "asym_y", "snr", "chi2", "niter", "flags", "used", "channel")
    both = StarTable(**{k: np.concatenate([getattr(table, k), getattr(extra, k)]) for k in keys})
    out, rc = recentre_stars(layer, both, np.array([1.0]))
    assert not rc.applied[0]
    fx, fy = _fit_positions(out[0], xs, ys)
    kept = [3, 7]
    np.testing.assert_allclose(fx[kept] - xs[kept], ox[kept], atol=0.01)
    np.testing.assert_allclose(fy[kept] - ys[kept], oy[kept], atol=0.01)
    rest = np.setdiff1d(np.arange(len(xs)), kept)
    assert np.max(np.hypot(fx[rest] - xs[rest], fy[rest] - ys[rest])) < 0.02


def test_stars_on_a_nebula_are_put_where_the_star_is_not_where_the_slope_pulls_the_fit():
    # each star sits on the flank of a nebular knot: a Moffat fit with a flat
    # background on the input is pulled towards the knot; with the non-stellar
    # layer (blurred back to the input's resolution) taken out first, the
    # anchor is the star's own position
    from scipy.ndimage import gaussian_filter

    xs, ys = _grid(7)
    size, f_src, f_ns = 200, 4.0, 2.0
    blur = np.sqrt(f_src**2 - f_ns**2)
    knots = np.zeros((size, size))
    for x, y in zip(xs, ys):
        knots[int(round(y)), int(round(x + 3.0))] = 600.0  # a compact knot 3 px to the right of each star
    nonstellar = gaussian_filter(knots, f_ns / 2.3548)  # the non-stellar layer, at its target
    reference = _layer(xs, ys, fwhm=f_src) + gaussian_filter(knots, f_src / 2.3548)  # the input
    rng = np.random.default_rng(8)
    reference = (reference + rng.normal(0.0, 1.0, reference.shape)).astype(np.float32)[None]
    ox, oy = rng.uniform(-0.15, 0.15, len(xs)), rng.uniform(-0.15, 0.15, len(xs))
    layer = _layer(xs + ox, ys + oy)[None]  # the network's stars, each a little off
    # the PSF measurement's fits, which the slope pulled too
    tx, ty = _fit_positions(reference[0], xs, ys, fwhm=f_src)
    assert np.median(np.hypot(tx - xs, ty - ys)) > 0.1
    table = _table(tx, ty, fwhm=f_src)

    def run(blur_fwhm):
        out, _ = recentre_stars(layer, table, np.array([1.0]), reference=reference,
                                nonstellar=nonstellar[None].astype(np.float32).copy(), nonstellar_blur=blur_fwhm)
        fx, fy = _fit_positions(out[0], xs, ys)
        return np.hypot(fx - xs, fy - ys)

    pulled = run(None)  # the fit in the input alone
    assert np.median(pulled) > 0.1
    clean = run(np.array([blur]))
    assert np.median(clean) < 0.03
    assert np.max(clean) < 0.06


def _trailed_layer(xs, ys, ox, oy, size=200, length=6.0):
    # stars trailed along x (seven Moffats over ``length`` px): not a Moffat
    # profile, so many fits are still walking along beta when their
    # iterations run out
    img = np.zeros((size, size))
    for x, y, dx, dy in zip(xs, ys, ox, oy):
        for t in np.linspace(-length / 2, length / 2, 7):
            img += render_moffat((size, size), x + dx + t, y + dy, 5000.0 / 7, 2.2, 3.0)
    return img.astype(np.float32)


def test_trailed_stars_are_moved_even_where_their_fit_ran_out_of_iterations():
    from astrosharp.psf.fit import FLAG_NOT_CONVERGED

    xs, ys = _grid(9)
    rng = np.random.default_rng(10)
    ox, oy = rng.uniform(-0.15, 0.15, len(xs)), rng.uniform(-0.15, 0.15, len(xs))
    layer = _trailed_layer(xs, ys, ox, oy)[None]
    table = _table(xs, ys)
    r = 8
    x0, y0 = np.round(xs).astype(int), np.round(ys).astype(int)
    st = np.stack([layer[0, y - r:y + r + 1, x - r:x + r + 1] for y, x in zip(y0, x0)]).astype(float)
    f = fit_stars(st, np.round(xs - x0 + r), np.round(ys - y0 + r), fwhm_guess=0.7 * 4.0, noise=1.0)
    assert np.mean((f.flags & FLAG_NOT_CONVERGED) != 0) >= 0.3  # the case this test is about
    assert np.median(np.hypot(f.x + x0 - r - (xs + ox), f.y + y0 - r - (ys + oy))) < 0.01  # their positions are right
    # (the stars stay trailed here: the rounding has its own test)
    out, rc = recentre_stars(layer, table, np.array([1.0]), round_stars=False)
    centre = _trailed_layer(xs, ys, np.zeros_like(ox), np.zeros_like(oy))
    before = np.abs(layer[0] - centre).sum()
    after = np.abs(out[0] - centre).sum()
    assert rc.n_moved[0] >= len(xs) - 3
    assert after < 0.2 * before


@pytest.mark.parametrize("e, angle", [(0.15, 30.0), (0.3, -70.0)])
def test_stars_left_elongated_in_the_stars_layer_are_made_round_keeping_flux_width_and_place(e, angle):
    # the target of every star is round: an elongation the network left
    # (its own, or what remains of a trail) is taken out by an
    # area-preserving resampling about the star, which also moves it
    xs, ys = _grid(11)
    layer = _layer(xs, ys, dx=0.08, fwhm=3.0, ellipticity=e, angle=angle)[None]
    out, rc = recentre_stars(layer, _table(xs, ys, fwhm=3.0), np.array([1.0]))
    assert rc.n_rounded[0] >= len(xs) - 3
    assert "elongation" in rc.describe()
    x0, y0 = np.round(xs).astype(int), np.round(ys).astype(int)
    r = 8
    before, after = (_fits(a, xs, ys, 3.0, r) for a in (layer[0], out[0]))
    assert np.median(before.ellipticity) == pytest.approx(e, abs=0.01)
    # (what remains: the pixel's own square, resampled with the star)
    assert np.median(after.ellipticity) < 0.1 * e
    # geometric-mean FWHM and flux kept, each star now on its input position
    np.testing.assert_allclose(np.median(after.fwhm / before.fwhm), 1.0, atol=0.01)
    boxes = [np.array([a[y - 12:y + 13, x - 12:x + 13].sum() for y, x in zip(y0, x0)]) for a in (layer[0], out[0])]
    np.testing.assert_allclose(boxes[1] / boxes[0], 1.0, atol=0.002)
    assert np.median(np.hypot(after.x + x0 - r - xs, after.y + y0 - r - ys)) < 0.01
    assert out.sum() == pytest.approx(layer.sum(), rel=2e-3)  # the taper's ring is resampled in part
    # without rounding the stars keep their shape
    kept, rc2 = recentre_stars(layer, _table(xs, ys, fwhm=3.0), np.array([1.0]), round_stars=False)
    assert rc2.n_rounded[0] == 0


def test_the_ellipticity_taken_out_is_shrunk_by_the_fits_noise():
    # the same elongation (0.1) on stars of fit S/N about 25 is within the
    # fit's noise (each component +/- 0.1): only part of it is taken out,
    # and a round star (fitted ellipticity under ROUND_MIN) is left alone
    from astrosharp.recentre import ROUND_MIN

    xs, ys = _grid(12)

    def ell(a):
        return np.median(_fits(a, xs, ys, 3.0).ellipticity)

    for flux, lo, hi in ((5000.0, 0.0, 0.015), (150.0, 0.04, 0.09)):
        layer = (_layer(xs, ys, fwhm=3.0, ellipticity=0.1, angle=20.0) * (flux / 5000.0))[None]
        out, rc = recentre_stars(layer, _table(xs, ys, fwhm=3.0), np.array([1.0]))
        assert lo < ell(out[0]) < hi, flux
    round_layer = _layer(xs, ys, fwhm=3.0, ellipticity=0.5 * ROUND_MIN, angle=20.0)[None]
    out, rc = recentre_stars(round_layer, _table(xs, ys, fwhm=3.0), np.array([1.0]))
    assert rc.n_rounded[0] == 0 and np.array_equal(out, round_layer)


def test_stars_too_sharp_to_move_are_made_round_where_they_stand():
    # 1.2 px stars off their input positions by up to 0.08 px (no common
    # offset): a resampling that moves their cores one by one would widen
    # them, so they stay where they are, but
    # the rounding map is the identity at the star's centre and still takes
    # out their elongation; undersampled stars (0.8 px) are left alone
    xs, ys = _grid(13)

    offsets = np.linspace(-0.08, 0.08, len(xs))
    layer = sum(_layer([x], [y], dx=d, fwhm=1.2, ellipticity=0.15, angle=40.0) for x, y, d in zip(xs, ys, offsets))[None]
    out, rc = recentre_stars(layer, _table(xs, ys, fwhm=2.4), np.array([1.0]))
    before, after = _fits(layer[0], xs, ys, 1.2, r=6), _fits(out[0], xs, ys, 1.2, r=6)
    assert not rc.applied[0] and rc.n_rounded[0] >= len(xs) - 3 and rc.n_moved[0] == 0
    assert np.median(before.ellipticity) == pytest.approx(0.15, abs=0.02)
    assert np.median(after.ellipticity) < 0.04
    assert np.median(after.fwhm / before.fwhm) == pytest.approx(1.0, abs=0.03)
    assert np.max(np.abs(after.x - before.x)) < 0.01  # not moved
    sharp = _layer(xs, ys, fwhm=0.8, ellipticity=0.15, angle=40.0)[None]
    out2, rc2 = recentre_stars(sharp, _table(xs, ys, fwhm=1.6), np.array([1.0]))
    assert rc2.n_rounded[0] == 0 and np.array_equal(out2, sharp)


def test_sharp_stars_far_from_their_positions_are_moved_part_of_the_way():
    # 1.8 px stars 0.3 px off their input positions, to the left and the
    # right in turn (no common offset): a resampling that far would widen
    # them, so each is moved SHARP_MAX_MOVE towards its position (before,
    # such a star was not moved at all) and keeps its width
    from astrosharp.recentre import SHARP_MAX_MOVE

    xs, ys = _grid(15)
    xs, ys = xs[:24], ys[:24]
    offsets = np.where(np.arange(len(xs)) % 2 == 0, 0.3, -0.3)
    layer = sum(_layer([x], [y], dx=d, fwhm=1.8) for x, y, d in zip(xs, ys, offsets))[None]
    out, rc = recentre_stars(layer, _table(xs, ys, fwhm=3.6), np.array([1.0]))
    before, after = _fits(layer[0], xs, ys, 1.8, r=6), _fits(out[0], xs, ys, 1.8, r=6)
    assert not rc.applied[0] and rc.n_moved[0] >= len(xs) - 3
    assert rc.median_move[0] == pytest.approx(SHARP_MAX_MOVE, abs=0.005)
    bx, _ = _fit_positions(layer[0], xs, ys, fwhm=1.8)
    ax, _ = _fit_positions(out[0], xs, ys, fwhm=1.8)
    moved = np.abs(bx - xs) - np.abs(ax - xs)
    assert np.median(moved) == pytest.approx(SHARP_MAX_MOVE, abs=0.01)
    assert np.median(after.fwhm / before.fwhm) == pytest.approx(1.0, abs=0.01)


def test_in_colour_a_star_used_in_another_channel_is_made_round_in_this_one():
    # the measurement used the stars in green only (say red's fits were
    # flagged): red's elongated stars are still made round, but not moved
    # (red's own input positions were not trusted)
    from dataclasses import replace

    xs, ys = _grid(14)
    red = _layer(xs, ys, dx=0.08, fwhm=3.0, ellipticity=0.15, angle=10.0)
    green = _layer(xs, ys, fwhm=3.0, ellipticity=0.0, angle=0.0)
    layer = np.stack([red, green])
    t = _table(xs, ys, fwhm=3.0)
    both = StarTable.concatenate([t, replace(t, channel=np.ones(len(xs), int))])
    both = replace(both, used=np.r_[np.zeros(len(xs), bool), np.ones(len(xs), bool)],
                   flags=np.r_[np.full(len(xs), 8), np.zeros(len(xs), int)])
    out, rc = recentre_stars(layer, both, np.array([1.0, 1.0]))
    assert rc.n_rounded[0] >= len(xs) - 3 and rc.n_moved[0] == 0
    fx, _ = _fit_positions(out[0], xs, ys, fwhm=3.0)
    assert np.median(_fits(out[0], xs, ys, 3.0).ellipticity) < 0.015
    np.testing.assert_allclose(np.median(fx - xs), 0.08, atol=0.01)  # where the network put them
    # without the green stars, red's unused rows are left alone
    alone, rc2 = recentre_stars(layer[:1], replace(t, used=np.zeros(len(xs), bool)), np.array([1.0]))
    assert rc2.n_rounded[0] == 0 and np.array_equal(alone, layer[:1])


def test_star_centroids_leave_out_a_neighbour_found_in_the_stamp():
    # a neighbour with 6 % of the star's light 12 px away pulls the plain
    # centroid (within 12 px) by about 0.28 px; found as a maximum of the
    # stamp less its mirror image, it is left out (with its mirror pixels)
    # and the centroid of the symmetric star is near its centre again
    from astrosharp.recentre import star_centroids

    s, c = 41, 20
    rng = np.random.default_rng(3)
    stamp = render_moffat((s, s), c + 0.2, c - 0.1, 5000.0, 4.0, 3.0)
    stamp += render_moffat((s, s), c + 0.2 + 9.5, c - 0.1 - 7.4, 300.0, 4.0, 3.0)
    stamp = stamp + rng.normal(0.0, 0.5, stamp.shape)
    fx, fy = np.array([c + 0.2]), np.array([c - 0.1])
    dx, dy, se = star_centroids(stamp[None], fx, fy, 12.0, 0.5)
    assert np.hypot(dx[0], dy[0]) > 0.2
    dx, dy, se = star_centroids(stamp[None], fx, fy, 12.0, 0.5, fwhm=4.0)
    assert np.hypot(dx[0], dy[0]) < 0.05
    assert se[0] < 0.02


def _coma_star(size, x, y, flux, fwhm, frac, dx, dy):
    """A core at (x, y) and a fraction ``frac`` of the light in a 1.6x wider
    copy at (x + dx, y + dy): its light is centred at (x + frac dx, y + frac dy)."""
    return (render_moffat((size, size), x, y, (1 - frac) * flux, fwhm, 3.0)
            + render_moffat((size, size), x + dx, y + dy, frac * flux, 1.6 * fwhm, 3.0))


def test_coma_stars_are_put_where_their_light_is_centred():
    # coma's flare points away from the field's centre and grows with the
    # distance: the fit of the input sits on the core, the light's centroid
    # (where the star is) up to 0.3 px further out; the stars layer (round
    # stars where the network put them, on the fits) is moved towards the
    # centroids
    from astrosharp.recentre import centroid_offset_field

    size, f_src, frac = 200, 4.0, 0.2
    g = np.linspace(22, 178, 6)
    rng = np.random.default_rng(11)
    ys, xs = [a.ravel() + rng.uniform(-0.5, 0.5, a.size) for a in np.meshgrid(g, g, indexing="ij")]
    k = 1.5 / 110.0  # flare offset per px from the centre
    fdx, fdy = k * (xs - 99.5), k * (ys - 99.5)
    cx, cy = xs + frac * fdx, ys + frac * fdy  # the stars' true positions
    reference = np.zeros((size, size))
    for x, y, a, b in zip(xs, ys, fdx, fdy):
        reference += _coma_star(size, x, y, 5000.0, f_src, frac, a, b)
    reference = (reference + rng.normal(0.0, 1.0, reference.shape)).astype(np.float32)[None]
    tx, ty = _fit_positions(reference[0], xs, ys, fwhm=f_src)
    assert np.median(np.hypot(tx - cx, ty - cy)) > 0.08
    table = _table(tx, ty, fwhm=f_src)
    layer = _layer(tx, ty)[None]  # the network's stars, on the fits

    field = centroid_offset_field(reference, 0, tx, ty, f_src, 1.0)
    assert field is not None and field.significant
    # stars whose stamp touches a calibration border are left out of the fit
    border = np.zeros((size, size), bool)
    border[:, :40] = True
    part = centroid_offset_field(reference, 0, tx, ty, f_src, 1.0, exclude=border)
    assert part is not None and part.n_stars == np.sum(np.round(tx) - int(np.ceil(3.5 * f_src)) >= 40)
    assert centroid_offset_field(reference, 0, tx, ty, f_src, 1.0, exclude=np.ones((size, size), bool)) is None
    d = field.at(ty, tx)
    # the light beyond the window (2.5 FWHM) is not counted: most of the
    # offset is found, not all of it
    assert np.median(np.hypot(tx + d[1] - cx, ty + d[0] - cy)) < 0.5 * np.median(np.hypot(tx - cx, ty - cy))

    def run(centroids):
        out, _ = recentre_stars(layer, table, np.array([1.0]), reference=reference, centroids=centroids)
        fx, fy = _fit_positions(out[0], cx, cy)
        return np.hypot(fx - cx, fy - cy)

    before = run(False)
    assert np.median(before) > 0.08
    moved = run(True)
    assert np.median(moved) < 0.5 * np.median(before)
    assert np.percentile(moved, 90) < 0.06


def test_symmetric_stars_give_no_significant_centroid_offset():
    from astrosharp.recentre import centroid_offset_field

    xs, ys = _grid(5)
    rng = np.random.default_rng(6)
    reference = (_layer(xs, ys, fwhm=4.0) + rng.normal(0.0, 1.0, (200, 200))).astype(np.float32)[None]
    tx, ty = _fit_positions(reference[0], xs, ys, fwhm=4.0)
    field = centroid_offset_field(reference, 0, tx, ty, 4.0, 1.0)
    assert field is not None and not field.significant
    assert field.largest < 0.03
