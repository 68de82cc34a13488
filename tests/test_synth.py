"""The simulator renders what it was asked for: FWHM, flux, position, noise."""

from __future__ import annotations

import numpy as np
import pytest

from astrosharp import synth
from astrosharp.params import SharpenParams
from astrosharp.psf.field import PARAM_NAMES
from astrosharp.synth.optics import Optics, asymmetry, fit_kernel, uniform_psf_model
from astrosharp.synth.scene import Scene


def _one_star(x, y, flux, size=64, margin=16, channels=1):
    return Scene(
        (size, size),
        margin,
        np.array([x]),
        np.array([y]),
        np.full((channels, 1), float(flux)),
        np.zeros((channels, size + 2 * margin, size + 2 * margin)),
        np.zeros((channels, size, size)),
    )


@pytest.mark.parametrize("fwhm,beta,ell,angle", [(2.0, 1.5, 0.0, 0.0), (3.0, 2.5, 0.3, 30.0), (5.0, 4.0, 0.15, 120.0), (8.0, 6.0, 0.4, 75.0)])
def test_rendered_star_has_requested_fwhm_and_flux(fwhm, beta, ell, angle):
    size = 96 if fwhm < 6 else 128
    scene = _one_star(size / 2 + 0.31, size / 2 - 0.27, 5000.0, size=size, margin=64)
    psf = uniform_psf_model((size, size), 1, Optics(fwhm=fwhm, beta=beta, ellipticity=ell, angle=angle))
    stars, neb = synth.render_source(scene, psf, sigma=1.0)
    assert not neb.any()
    # flux: all of it, but for beta 1.5 whose wings reach beyond the frame
    if beta > 2:
        assert stars.sum() == pytest.approx(5000.0, rel=0.01)
    else:
        assert 0.9 * 5000.0 < stars.sum() < 5000.0
    # FWHM, ellipticity, angle from a Moffat fit of the rendered star
    c = size // 2
    r = int(3 * fwhm) + 3
    stamp = stars[0, c - r : c + r + 1, c - r : c + r + 1]
    # recentre: the fit model is centred on the stamp centre, the star is off by a fraction of a pixel
    from scipy import optimize

    from astrosharp.psf.moffat import moffat_image

    n = stamp.shape[0]

    def resid(p):
        return (moffat_image((n, n), p[0], p[1], p[2], p[3], p[4], p[5], p[6], oversample=5) - stamp).ravel()

    p0 = [r + 0.3, r - 0.3, stamp.sum(), fwhm * 1.1, beta * 0.9, max(ell, 0.05), angle + 5]
    res = optimize.least_squares(resid, p0, method="lm", x_scale="jac")
    fx, fy, ff, fw, fb, fe, fa = res.x
    assert fw == pytest.approx(fwhm, rel=0.01)
    assert fb == pytest.approx(beta, rel=0.02)
    assert fx == pytest.approx(r + 0.31, abs=0.01)
    assert fy == pytest.approx(r - 0.27, abs=0.01)
    assert ff == pytest.approx(5000.0, rel=0.01)
    if ell > 0:
        assert abs(fe) == pytest.approx(ell, abs=0.005)
        assert (fa - angle + 90) % 180 - 90 == pytest.approx(0, abs=1.0)


def test_target_is_round_half_fwhm_at_same_position_and_flux():
    scene = _one_star(48.4, 47.8, 2000.0, size=96, margin=32)
    psf = uniform_psf_model((96, 96), 1, Optics(fwhm=5.0, beta=3.0, ellipticity=0.3, angle=20.0))
    stars, _ = synth.render_target(scene, psf, SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5))
    assert stars.sum() == pytest.approx(2000.0, rel=0.005)
    k = stars[0, 36:61, 36:61]
    fit = fit_kernel(k / k.sum(), Optics(fwhm=2.5, beta=3.0))
    assert fit["fwhm"] == pytest.approx(2.5, rel=0.01)
    assert fit["ellipticity"] < 0.01
    yy, xx = np.mgrid[0:96, 0:96]
    assert (stars[0] * xx).sum() / stars.sum() == pytest.approx(48.4, abs=0.01)
    assert (stars[0] * yy).sum() / stars.sum() == pytest.approx(47.8, abs=0.01)


def test_halo_control_moves_annulus_flux_monotonically():
    scene = _one_star(48.0, 48.0, 1000.0, size=96, margin=32)
    psf = uniform_psf_model((96, 96), 1, Optics(fwhm=4.0, beta=3.0))
    yy, xx = np.mgrid[0:96, 0:96]
    r = np.hypot(xx - 48, yy - 48)
    ann = []
    for h in (-0.5, 0.0, 0.5):
        s, _ = synth.render_target(scene, psf, SharpenParams(sharpen_stars=1.0, adjust_halos=h))
        ann.append(s[0][(r >= 2 * 2.0) & (r <= 4 * 2.0)].sum())
    assert ann[0] < ann[1] < ann[2]


def test_field_of_pure_moffat_is_exact_and_aberrations_are_measured():
    rng = np.random.default_rng(3)
    psf = synth.make_psf_model((300, 300), 3, rng, fwhm=3.0, beta=3.0, ellipticity=0.0, aberrations=False, chromatic=False, variation=0.0)
    f = psf.field()
    assert np.allclose(f.values[:, PARAM_NAMES.index("fwhm")], 3.0)
    assert np.allclose(f.values[:, PARAM_NAMES.index("beta")], 3.0)
    # coma: a one-sided flare, with the kernel's centroid kept at the centre
    o = Optics(fwhm=4.0, beta=3.0, coma=0.25, coma_dx=2.4, coma_dy=0.0)
    k = uniform_psf_model((64, 64), 1, o).kernel(32, 32, 0, size=41)
    yy, xx = np.mgrid[0:41, 0:41]
    assert (k * xx).sum() == pytest.approx(20.0, abs=0.02)
    ax, ay = asymmetry(k)
    assert ax > 0.05 and abs(ay) < 0.01
    assert asymmetry(uniform_psf_model((64, 64), 1, Optics(fwhm=4.0, beta=3.0, ellipticity=0.3)).kernel(32, 32, 0, size=41))[0] == pytest.approx(0, abs=1e-3)


def test_observation_noise_level_saturation_and_reproducibility():
    def make(seed):
        rng = np.random.default_rng(seed)
        scene = synth.make_scene((128, 128), 1, rng, kind="stars", sigma=1e-3, saturation=0.5, bright_star=True)
        psf = synth.make_psf_model((128, 128), 1, rng, fwhm=3.0)
        return synth.observe(scene, psf, rng, sigma=1e-3, background=0.05, gradient=0.0, saturation=0.5)

    a, b = make(7), make(7)
    assert np.array_equal(a.image, b.image)
    bg = a.clean_stars[0] + a.clean_nonstellar[0] < 1e-5
    assert np.std(a.noise[0][bg]) == pytest.approx(1e-3, rel=0.05)
    assert a.image.max() <= 0.5 and a.saturated.any()
    assert np.allclose(np.minimum(a.clean + a.noise, 0.5), a.image, atol=1e-6)


def test_chromatic_shift_separates_channels_and_target_removes_it():
    o = [Optics(fwhm=3.0, beta=3.0, shift_x=s) for s in (-0.4, 0.0, 0.4)]
    from astrosharp.synth.optics import PSFModel

    psf = PSFModel((64, 64), np.array([31.5]), np.array([31.5]), [[[oc]] for oc in o])
    scene = _one_star(32.0, 32.0, 1000.0, size=64, margin=16, channels=3)
    src, _ = synth.render_source(scene, psf)
    tgt, _ = synth.render_target(scene, psf, SharpenParams(correct_only=True))
    xx = np.arange(64)[None, :]
    cx_src = [(src[c] * xx).sum() / src[c].sum() for c in range(3)]
    cx_tgt = [(tgt[c] * xx).sum() / tgt[c].sum() for c in range(3)]
    assert cx_src[2] - cx_src[0] == pytest.approx(0.8, abs=0.02)
    assert np.ptp(cx_tgt) < 0.01


def test_training_example_is_consistent():
    ex = synth.training_example(np.random.default_rng(11), size=64, channels=3)
    assert ex["clean"].shape == ex["target_stars"].shape == ex["target_nonstellar"].shape == (3, 64, 64)
    assert ex["psf_nodes"].shape == (3, len(PARAM_NAMES), 2, 2)
    for k, v in ex.items():
        assert np.all(np.isfinite(v)), k
    assert np.all(ex["target_nonstellar"] >= ex["background"] - 1e-6 * ex["background"].max())
    # background and its noise are positive and the saturation level sits above the background
    assert np.all(ex["sigma"] > 0) and float(ex["saturation"]) > ex["background"].max()


@pytest.mark.parametrize("mix", ["manual", "starless"])
def test_manual_mixtures_hand_the_network_the_round_manual_psf(mix):
    # star-free; the network's PSF maps are the round Moffat of the diameter,
    # as the pipeline's manual path gives them
    from astrosharp.params import DEFAULT_BETA

    fw, be, e1, e2 = (PARAM_NAMES.index(k) for k in ("fwhm", "beta", "e1", "e2"))
    for i in range(4):
        ex = synth.training_example(np.random.default_rng([21, i]), size=64, channels=3, mix=mix)
        nodes = ex["psf_nodes"]
        assert np.all(ex["target_stars"] == 0)
        assert np.ptp(nodes[:, fw]) == 0 and 1.0 <= nodes[0, fw, 0, 0] <= 10.0
        assert np.all(nodes[:, be] == DEFAULT_BETA)
        assert np.all(nodes[:, e1] == 0) and np.all(nodes[:, e2] == 0)
        n = float(ex["controls"][2])
        assert 0.1 <= n <= 1.0 and ex["controls"][3] == 0.0


def test_starless_mixture_blurs_with_near_round_psfs(monkeypatch):
    # the manual diameter stands for a round Moffat: in the starless mixture the
    # true PSF is nearly that (no trail, ellipticity under 0.1, moderate beta),
    # where the manual mixture's is often elongated or trailed
    from astrosharp.synth import training as T

    seen = []
    real = T.make_psf_model

    def spy(*args, **kw):
        seen.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(T, "make_psf_model", spy)
    for i in range(12):
        T.training_example(np.random.default_rng([29, i]), size=48, channels=1, mix="starless")
    assert all(kw["trail"] == 0.0 and kw["ellipticity"][1] <= 0.1 and kw["beta"] == (2.0, 4.5) for kw in seen)
    seen.clear()
    for i in range(12):
        T.training_example(np.random.default_rng([29, i]), size=48, channels=1, mix="manual")
    assert any(kw["ellipticity"][1] > 0.1 for kw in seen)


def test_small_mixture_has_undersampled_stars():
    # source FWHM near a pixel, on both sides of F_MIN (where the star targets stop)
    from astrosharp.params import F_MIN
    from astrosharp.synth.training import FWHM_RANGES

    lo, hi = FWHM_RANGES["small"]
    assert lo < F_MIN < hi <= FWHM_RANGES["default"][0] + 1.0
    fw = PARAM_NAMES.index("fwhm")
    seen = []
    for i in range(6):
        ex = synth.training_example(np.random.default_rng([23, i]), size=64, channels=3, mix="small")
        f = ex["psf_nodes"][:, fw]
        seen.append(float(np.median(f)))
        # the PSF varies (and aberrations widen it) around the drawn FWHM
        assert 0.5 * lo <= f.min() and f.max() <= 2.0 * hi
    assert min(seen) < 1.5  # below the default mixture's range


def test_bright_mixture_has_nebulae_far_above_the_default_range():
    # the default mixture's nebulae stop at 400 sigma (99.9th percentile); deep
    # stacks of bright objects hold thousands, which the bright mixture brings
    def peaks(mix):
        out = []
        for i in range(8):
            ex = synth.training_example(np.random.default_rng([31, i]), size=64, channels=1, mix=mix)
            ns = (ex["target_nonstellar"] - ex["background"]) / ex["sigma"][:, None, None]
            out.append(float(np.percentile(ns, 99.9)))
        return np.array(out)

    bright, default = peaks("bright"), peaks("default")
    assert np.median(bright) > 5 * max(np.median(default), 50.0)
    assert np.sum(bright > 400.0) >= 4
    ex = synth.training_example(np.random.default_rng([31, 0]), size=64, channels=3, mix="bright")
    assert float(ex["saturation"]) > 2 * (ex["target_nonstellar"] - ex["background"]).max()  # nebulae unclipped


def test_fixed_case_is_reproducible_and_has_truth():
    a = synth.make_case("stars_mono", seed=0, size=128)
    b = synth.make_case("stars_mono", seed=0, size=128)
    assert np.array_equal(a.obs.image, b.obs.image)
    assert a.truth.image.shape == a.obs.image.shape
    # sharpening concentrates light: the truth's peak pixels are brighter
    assert a.truth.stars.max() > a.obs.clean_stars.max()
    with pytest.raises(KeyError, match="unknown case"):
        synth.make_case("nope")


def test_control_mixtures():
    from astrosharp.synth.training import sample_controls

    def rates(mix):
        rng = np.random.default_rng(0)
        ps = [sample_controls(rng, mix) for _ in range(4000)]
        co = np.mean([p.correct_only for p in ps])
        bench = np.mean([(not p.correct_only) and p.sharpen_stars == 1.0 and p.sharpen_nonstellar == 0.5 for p in ps])
        return co, bench

    co, bench = rates("default")
    assert co == pytest.approx(0.20, abs=0.02) and bench == pytest.approx(0.30, abs=0.02)
    assert rates("small") == (co, bench)  # the small mixture's controls are the default's
    assert rates("bright") == (co, bench)
    co, bench = rates("correct")
    assert co == pytest.approx(0.50, abs=0.025) and bench == pytest.approx(0.20, abs=0.02)
    with pytest.raises(ValueError, match="mix must be one of"):
        synth.training_example(np.random.default_rng(1), size=32, channels=1, mix="bogus")
