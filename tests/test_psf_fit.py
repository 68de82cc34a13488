import numpy as np
import pytest

from astrosharp.psf.fit import asymmetry, fit_kernel, fit_star_reference, fit_stars, render_moffat
from astrosharp.psf.moffat import moffat_image, moffat_kernel


@pytest.mark.parametrize("fwhm", [1.5, 2.0, 3.0, 5.0, 8.0])
@pytest.mark.parametrize("beta,e,angle", [(1.5, 0.0, 0.0), (3.0, 0.4, 30.0), (6.0, 0.2, 125.0)])
def test_fit_model_is_the_pixel_integrated_moffat(fwhm, beta, e, angle):
    s = 41
    ref = moffat_image((s, s), 20.3, 19.8, 1.0, fwhm, beta, e, angle, oversample=25)
    fast = render_moffat((s, s), 20.3, 19.8, 1.0, fwhm, beta, e, angle)
    assert np.abs(fast - ref).max() < 1e-3 * ref.max()
    # and the Fourier-rendered kernel of the same definitions (sizes where it is exact)
    k = moffat_kernel(fwhm, beta, e, angle, size=s, normalize=False)
    c = render_moffat((s, s), 20, 20, 1.0, fwhm, beta, e, angle)
    assert np.abs(k - c).max() < 2e-2 * c.max()


def _stars(rng, n, fwhm, beta, e, angle, flux=3e4, noise=5.0, s=31):
    c = s // 2
    x = c + rng.uniform(-0.5, 0.5, n)
    y = c + rng.uniform(-0.5, 0.5, n)
    st = np.stack([moffat_image((s, s), x[i], y[i], flux, fwhm, beta, e, angle, 50.0, oversample=7) for i in range(n)])
    return st + rng.normal(0, noise, st.shape), x, y


@pytest.mark.parametrize("fwhm,beta,e,angle", [(2.2, 2.0, 0.0, 0.0), (4.0, 3.5, 0.3, 60.0), (7.0, 5.0, 0.15, 150.0)])
def test_fit_recovers_known_stars(fwhm, beta, e, angle):
    rng = np.random.default_rng(0)
    s = int(2 * np.ceil(3 * fwhm) + 1)
    st, x, y = _stars(rng, 24, fwhm, beta, e, angle, s=s)
    r = fit_stars(st, np.round(x), np.round(y), fwhm_guess=fwhm * 1.2, noise=5.0)
    assert np.all(r.flags == 0)
    assert np.median(r.fwhm) == pytest.approx(fwhm, rel=0.01)
    assert np.median(r.beta) == pytest.approx(beta, rel=0.06)
    assert np.median(r.ellipticity) == pytest.approx(e, abs=0.01)
    if e >= 0.1:
        d = ((np.median(r.angle) - angle + 90) % 180) - 90
        assert abs(d) < 2.0
    assert np.std(r.x - x) < 0.05 and np.std(r.y - y) < 0.05  # sub-pixel centroids
    assert np.median(r.chi2) == pytest.approx(1.0, abs=0.15)


def test_fast_fit_agrees_with_least_squares_reference():
    rng = np.random.default_rng(3)
    st, x, y = _stars(rng, 1, 3.2, 2.6, 0.25, 40.0, noise=10.0, s=25)
    r = fit_stars(st, [12.0], [12.0], fwhm_guess=3.5, noise=10.0)
    ref = fit_star_reference(st[0], 12.0, 12.0, 3.5)
    assert r.fwhm[0] == pytest.approx(ref["fwhm"], rel=0.01)
    assert r.beta[0] == pytest.approx(ref["beta"], rel=0.03)
    assert r.ellipticity[0] == pytest.approx(ref["ellipticity"], abs=0.01)
    assert r.x[0] == pytest.approx(ref["x"], abs=0.02)


def test_asymmetry_zero_for_symmetric_and_points_to_the_flare():
    s = 41
    sym = moffat_image((s, s), 20.2, 19.7, 1.0, 4.0, 3.0, 0.3, 20.0, oversample=5)
    ax, ay = asymmetry(sym[None], [20.0], [20.0], [0.0])
    assert abs(ax[0]) < 0.01 and abs(ay[0]) < 0.01  # pixel sampling of the top-hat window
    # a coma-like flare towards -y: a fainter, wider component displaced downwards
    coma = sym + 0.3 * moffat_image((s, s), 20.2, 16.7, 1.0, 6.0, 3.0, oversample=5)
    ax, ay = asymmetry(coma[None], [20.0], [20.0], [0.0])
    assert ay[0] < -0.05 and abs(ax[0]) < 0.2 * abs(ay[0])


def test_fit_kernel_reads_back_a_moffat_kernel():
    k = moffat_kernel(3.5, 2.8, 0.2, 70.0, size=41)
    f = fit_kernel(k)
    assert f["fwhm"] == pytest.approx(3.5, rel=0.005)
    assert f["beta"] == pytest.approx(2.8, rel=0.02)
    assert f["ellipticity"] == pytest.approx(0.2, abs=0.005)
    assert f["angle"] == pytest.approx(70.0, abs=1.0)


def test_asymmetry_of_a_failed_measurement_reads_as_none():
    # noise that cancels the second moment once made a one-star field report
    # asym_x 21; a star's light cannot give |asym| near 1
    from astrosharp.psf.fit import asymmetry

    rng = np.random.default_rng(0)
    noise = rng.normal(0.02, 1.0, (400, 15, 15))  # stamps of noise (before the guard: 58 of 400 over 1, up to 99)
    ax, ay = asymmetry(noise, np.full(400, 7.0), np.full(400, 7.0), np.zeros(400))
    assert np.all(np.abs(ax) <= 1.0) and np.all(np.abs(ay) <= 1.0)
    assert np.sum((ax == 0.0) & (ay == 0.0)) >= 40
    # a real coma-like star still measures its asymmetry
    yy, xx = np.mgrid[0:31, 0:31].astype(float)
    star = np.exp(-((xx - 15) ** 2 + (yy - 15) ** 2) / 8.0) + 0.3 * np.exp(-((xx - 18) ** 2 + (yy - 15) ** 2) / 8.0)
    ax2, ay2 = asymmetry(star[None], np.array([15.0]), np.array([15.0]), np.array([0.0]))
    assert 0.0 < ax2[0] < 1.0 and abs(ay2[0]) < 1e-6


def test_fit_reads_only_the_pixels_of_its_mask():
    # the default mask is the stamp's inscribed circle: a bright neighbour in
    # the corners outside it changes nothing, to rounding
    rng = np.random.default_rng(5)
    st, x, y = _stars(rng, 6, 3.0, 3.0, 0.1, 20.0, s=21)
    clean = fit_stars(st, np.round(x), np.round(y), fwhm_guess=3.0, noise=5.0)
    spoiled = st.copy()
    spoiled[:, :3, :3] += 5e3
    spoiled[:, -3:, -3:] += 5e3
    r = fit_stars(spoiled, np.round(x), np.round(y), fwhm_guess=3.0, noise=5.0)
    for k in ("x", "y", "flux", "fwhm", "beta", "ellipticity"):
        np.testing.assert_allclose(getattr(r, k), getattr(clean, k), rtol=1e-9, atol=1e-9)
    assert np.all(clean.flags == 0)
