"""The bench's metrics move the right way, by the right amount, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from astrosharp.bench import metrics as M
from astrosharp.psf.moffat import moffat_image

SHAPE = (160, 160)
SIGMA = 1.0


def _grid_stars(n_side=4, margin=30):
    xs = np.linspace(margin, SHAPE[1] - 1 - margin, n_side) + 0.3
    ys = np.linspace(margin, SHAPE[0] - 1 - margin, n_side) - 0.2
    xx, yy = np.meshgrid(xs, ys)
    return xx.ravel(), yy.ravel()


def _field(x, y, flux, fwhm, beta=3.0, e=0.0, angle=0.0, dx=0.0, dy=0.0):
    img = np.zeros(SHAPE)
    for xi, yi, fi in zip(x, y, np.broadcast_to(flux, np.shape(x))):
        img += moffat_image(SHAPE, xi + dx, yi + dy, fi, fwhm, beta, e, angle)
    return img


@pytest.fixture(scope="module")
def stars():
    x, y = _grid_stars()
    flux = np.full(x.shape, 5000.0)
    src = _field(x, y, flux, 4.0)
    rng = np.random.default_rng(3)
    noisy = src + rng.normal(0, SIGMA, SHAPE)
    truth = _field(x, y, flux, 2.0)
    return x, y, flux, noisy, truth


def test_psnr_of_known_noise_and_peak():
    rng = np.random.default_rng(0)
    truth = np.linspace(0, 100, 200 * 200).reshape(200, 200)
    out = truth + rng.normal(0, 0.5, truth.shape)
    peak = M.psnr_peak(truth)
    assert peak == pytest.approx(np.percentile(truth, 99.9) - np.percentile(truth, 0.1))
    assert M.psnr(out, truth) == pytest.approx(20 * np.log10(peak / 0.5), abs=0.05)
    # a wrong region excluded by the mask no longer counts
    bad = out.copy()
    bad[:10] += 50
    mask = np.ones(truth.shape, bool)
    mask[:10] = False
    assert M.psnr(bad, truth) < M.psnr(out, truth) - 10
    assert M.psnr(bad, truth, mask) == pytest.approx(M.psnr(out, truth, mask), abs=0.01)
    assert np.isnan(M.psnr(out, np.zeros_like(truth)))


def test_valid_mask_grows_saturation():
    sat = np.zeros((1, 20, 20), bool)
    sat[0, 10, 10] = True
    v = M.valid_mask(sat, (1, 20, 20), grow=2)
    assert v.sum() == 400 - 25
    assert not v[0, 12, 12] and v[0, 13, 10]


def test_star_mask_covers_bright_wings_farther():
    m = M.star_mask((200, 200), np.array([50.0, 150.0]), np.array([100.0, 100.0]),
                    peak_snr=np.array([2.0, 5000.0]), fwhm=np.array([4.0, 4.0]), beta=np.array([3.0, 3.0]))
    r_faint = np.sqrt(m[:, :100].sum() / np.pi)
    r_bright = np.sqrt(m[:, 100:].sum() / np.pi)
    assert r_faint == pytest.approx(12.0, abs=0.5)  # 3 FWHM
    # the bright star's profile 5000 (1 + (r / alpha)**2) ** -3 reaches 0.5 sigma at r
    alpha = 4.0 / (2 * np.sqrt(2 ** (1 / 3) - 1))
    assert r_bright == pytest.approx(alpha * np.sqrt(1e4 ** (1 / 3) - 1), abs=0.5)
    assert r_bright > 1.4 * r_faint


def test_select_stars_drops_faint_crowded_edge_and_saturated():
    x = np.array([50.0, 58.0, 100.0, 150.0, 3.0, 100.0])
    y = np.array([50.0, 50.0, 100.0, 150.0, 100.0, 160.0])
    flux = np.array([1e4, 1e3, 1e4, 1e4, 1e4, 1e4])
    snr = np.array([100, 100, 100, 10, 100, 100])
    sat = np.zeros((200, 200), bool)
    sat[160, 100] = True
    sel = M.select_stars(x, y, flux, snr, np.full(6, 3.0), (200, 200), saturated=sat)
    assert sel.tolist() == [2]  # 0, 1 crowded; 3 faint; 4 at the edge; 5 saturated
    sel = M.select_stars(x, y, flux, snr, np.full(6, 3.0), (200, 200), saturated=sat, allow_saturated=True)
    assert sel.tolist() == [2, 5]


def test_regions():
    lab = M.regions(np.array([50.0, 2.0, 15.0]), np.array([50.0, 2.0, 50.0]), (101, 101))
    assert lab.tolist() == ["centre", "corner", "middle"]


def test_fwhm_ratio_follows_a_known_sharpening_and_blurring(stars):
    x, y, flux, noisy, truth = stars
    fs = np.full(x.shape, 4.0)
    sharp = M.star_metrics(truth, truth, truth, noisy, x, y, fs, SIGMA)
    blurred = _field(x, y, flux, 6.0)
    blur = M.star_metrics(blurred, truth, truth, noisy, x, y, fs, SIGMA, fwhm_target=np.full(x.shape, 6.0))
    s = M.summarize(sharp)
    assert s["n"] == len(x)
    assert s["fwhm_ratio"] == pytest.approx(0.5, rel=0.03)
    assert M.summarize(blur)["fwhm_ratio"] == pytest.approx(1.5, rel=0.03)
    assert s["shift"] < 0.01
    assert abs(s["flux_bias"]) < 0.005


def test_centroid_shift_and_ellipticity_are_seen(stars):
    x, y, flux, noisy, truth = stars
    moved = _field(x, y, flux, 2.0, dx=0.3, dy=-0.1)
    s = M.summarize(M.star_metrics(moved, truth, truth, noisy, x, y, np.full(x.shape, 4.0), SIGMA))
    assert s["shift"] == pytest.approx(np.hypot(0.3, 0.1), abs=0.01)
    elong = _field(x, y, flux, 2.0, e=0.3, angle=20)
    s = M.summarize(M.star_metrics(elong, truth, truth, noisy, x, y, np.full(x.shape, 4.0), SIGMA))
    assert s["ellipticity"] == pytest.approx(0.3, abs=0.02)
    assert s["ellipticity_in"] < 0.05


def test_flux_ratio_sees_a_known_flux_change(stars):
    x, y, flux, noisy, truth = stars
    brighter = truth * 1.05
    s = M.summarize(M.star_metrics(brighter, truth, truth, noisy, x, y, np.full(x.shape, 4.0), SIGMA))
    assert s["flux_bias"] == pytest.approx(0.05, abs=0.002)
    assert s["flux_med"] == pytest.approx(0.05, abs=0.002)
    # a background under the stars is not star flux: taken from the truth's other layers
    sky = 30.0 + 0.1 * np.arange(SHAPE[1])[None, :]
    s = M.summarize(M.star_metrics(truth + sky, truth + sky, truth, noisy, x, y, np.full(x.shape, 4.0), SIGMA))
    assert abs(s["flux_bias"]) < 1e-6


def test_noise_free_flux_ratio_takes_out_the_noise_the_output_keeps(stars):
    # faint stars: the aperture sum of the noise is a few percent of their flux
    x, y, flux, noisy, truth = stars
    faint = truth * 0.2
    rng = np.random.default_rng(12)
    noise = rng.normal(0, SIGMA, SHAPE)
    fs = np.full(x.shape, 4.0)
    ideal = M.star_metrics(faint + noise, faint, faint, noisy, x, y, fs, SIGMA, kept_noise=noise)
    s = M.summarize(ideal)
    assert s["flux_med"] > 0.01  # the plain measure sees the noise as flux
    assert s["flux_nf_med"] < 1e-9 and s["flux_nf_p90"] < 1e-9
    # a real flux error is still seen, noise or not
    wrong = M.summarize(M.star_metrics(faint * 1.04 + noise, faint, faint, noisy, x, y, fs, SIGMA, kept_noise=noise))
    assert wrong["flux_nf_med"] == pytest.approx(0.04, abs=1e-6)
    assert "flux_nf_med" not in M.summarize(M.star_metrics(faint, faint, faint, noisy, x, y, fs, SIGMA))


def test_ringing_depth_of_a_dark_ring():
    x, y = _grid_stars(3, 40)
    clean = _field(x, y, np.full(x.shape, 3000.0), 2.0)
    rng = np.random.default_rng(5)
    noise = rng.normal(0, SIGMA, SHAPE)
    fw = np.full(x.shape, 4.0)
    no_ring = M.ringing(clean + noise, x, y, fw, SIGMA, background=np.zeros(SHAPE))
    ring = np.zeros(SHAPE)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    for xi, yi in zip(x, y):
        r = np.hypot(xx - xi, yy - yi)
        ring -= 3.0 * SIGMA * ((r > 7) & (r < 10))
    ringed = M.ringing(clean + noise + ring, x, y, fw, SIGMA, background=np.zeros(SHAPE))
    assert no_ring["depth"] < 0.5
    assert ringed["depth"] == pytest.approx(3.0, abs=0.5)
    assert ringed["worst"] >= ringed["depth"]
    # without a known background the annulus median is used: same answer
    assert M.ringing(clean + noise + ring + 20, x, y, fw, SIGMA)["depth"] == pytest.approx(3.0, abs=0.5)


def test_spurious_sources_count_injected_fakes():
    rng = np.random.default_rng(11)
    noise = rng.normal(0, SIGMA, (200, 200))
    flat = np.zeros((200, 200))
    assert M.spurious_sources(noise, flat, SIGMA, 2.0)["spurious"] == 0
    fx = np.array([30.0, 80.0, 120.0, 160.0, 60.0])
    fy = np.array([40.0, 150.0, 90.0, 30.0, 100.0])
    fakes = sum(moffat_image((200, 200), a, b, 200.0, 2.0, 3.0) for a, b in zip(fx, fy))
    r = M.spurious_sources(noise + fakes, flat, SIGMA, 2.0)
    assert r["spurious"] == 5 and r["truth"] == 0
    # the same sources in the truth are not spurious
    assert M.spurious_sources(noise + fakes, fakes, SIGMA, 2.0)["spurious"] == 0


def test_hf_excess_is_one_for_the_inputs_noise_and_grows_with_amplification():
    rng = np.random.default_rng(2)
    truth = np.zeros((128, 128)) + 5.0
    noise = rng.normal(0, SIGMA, truth.shape)
    assert M.hf_excess(truth + noise, truth, noise) == pytest.approx(1.0, abs=1e-9)
    assert M.hf_excess(truth + 2 * noise, truth, noise) == pytest.approx(4.0, rel=1e-6)
    from scipy.ndimage import gaussian_filter

    assert M.hf_excess(truth + gaussian_filter(noise, 1.5), truth, noise) < 0.2
