"""The sharpening pipeline: data flow, bad input, passes and layers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import signal

from astrosharp import pipeline
from astrosharp.errors import AstrosharpWarning, DataWarning, ImageDataError, ModelError
from astrosharp.image import Image
from astrosharp.params import SharpenParams
from astrosharp.pipeline import SharpenResult, detect_saturation, round_field, sharpen
from astrosharp.psf.field import PARAM_NAMES, PSFField
from astrosharp.psf.moffat import moffat_kernel

FWHM = 4.0
RL = SharpenParams(method="rl", sharpen_stars=1.0, sharpen_nonstellar=0.5)
WIENER = SharpenParams(method="wiener", sharpen_stars=1.0, sharpen_nonstellar=0.5)  # the faster one


def _star_field(shape=(300, 340), channels=1, seed=0, n=60, bg=100.0, noise=2.0, fwhm=FWHM):
    """Stars on a flat background, blurred by a round Moffat; also their positions."""
    rng = np.random.default_rng(seed)
    h, w = shape
    sky = np.zeros((channels, h, w))
    ys = rng.integers(25, h - 25, n)
    xs = rng.integers(25, w - 25, n)
    flux = rng.uniform(2e3, 3e4, n)
    for c in range(channels):
        sky[c, ys, xs] = flux * (1.0 + 0.2 * c)
    k = moffat_kernel(fwhm, 3.0, size=61)
    img = np.stack([signal.fftconvolve(s, k, mode="same") for s in sky]) + bg
    img += rng.normal(0, noise, img.shape)
    return img.astype(np.float32), ys, xs


def _uniform(data, fwhm=FWHM):
    return PSFField.uniform(data.shape[1:], data.shape[0], fwhm, 3.0, origin="image")


def _fwhm_of(img, y, x, bg):
    """Half-maximum area FWHM of one star: 2 sqrt(A / pi)."""
    cut = img[y - 12 : y + 13, x - 12 : x + 13] - bg
    peak = cut.max()
    return 2.0 * np.sqrt(np.count_nonzero(cut >= 0.5 * peak) / np.pi)


def test_layers_sum_to_the_image_and_metadata_is_kept():
    data, _, _ = _star_field(channels=3)
    img = Image(data=data)
    img.header["OBJECT"] = "test"
    res = sharpen(img, WIENER, psf_field=_uniform(data))
    assert isinstance(res, SharpenResult)
    assert res.image.shape == data.shape
    assert res.stars.shape == res.nonstellar.shape == data.shape
    np.testing.assert_array_equal(res.image.data, res.stars + res.nonstellar)
    assert res.image.header["OBJECT"] == "test"
    assert res.method == "wiener" and res.params == WIENER
    assert {"background", "psf", "translate", "total"} <= set(res.timings)
    np.testing.assert_array_equal(img.data, data)  # input untouched


def test_rl_sharpens_stars_and_keeps_flux():
    data, ys, xs = _star_field(seed=1, n=30)
    res = sharpen(data, RL, psf_field=_uniform(data))
    out = res.image.data[0]
    before = np.median([_fwhm_of(data[0], y, x, 100.0) for y, x in zip(ys, xs)])
    after = np.median([_fwhm_of(out, y, x, 100.0) for y, x in zip(ys, xs)])
    assert after < 0.8 * before  # target 0.5: clearly smaller, whatever the classical method's limits
    # star flux in an aperture of radius 3 FWHM is kept
    yy, xx = np.mgrid[-12:13, -12:13]
    ap = yy**2 + xx**2 <= (3 * FWHM) ** 2
    ratio = [
        (out[y - 12 : y + 13, x - 12 : x + 13] - 100.0)[ap].sum()
        / (data[0, y - 12 : y + 13, x - 12 : x + 13] - 100.0)[ap].sum()
        for y, x in zip(ys, xs)
    ]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.02)


def test_nan_and_inf_are_excluded_and_put_back():
    data, _, _ = _star_field(seed=2, channels=3)
    bad = np.zeros(data.shape, bool)
    bad[0, 10:14, 20:30] = True
    bad[1, 150, 150] = True
    bad[2, :, 0] = True
    data_bad = data.copy()
    data_bad[bad] = np.nan
    data_bad[1, 150, 150] = np.inf
    data_bad[0, 12, 25] = -np.inf
    ref = sharpen(data, WIENER, psf_field=_uniform(data))
    res = sharpen(data_bad, WIENER, psf_field=_uniform(data))
    out = res.image.data
    assert res.bad_pixels == int(bad.sum())
    assert any(f"{int(bad.sum())} NaN/Inf" in n for n in res.notes)
    # the same values come back at the same places, nowhere else
    np.testing.assert_array_equal(~np.isfinite(out), bad)
    assert np.isposinf(out[1, 150, 150]) and np.isneginf(out[0, 12, 25])
    assert np.all(np.isnan(out[bad & np.isnan(data_bad)]))
    assert np.all(res.stars[bad] == 0)
    # away from the holes the result is what it would have been without them
    far = np.ones(data.shape[1:], bool)
    far[:40, :60] = far[110:190, 110:190] = far[:, :30] = False
    diff = np.abs(out - ref.image.data)[:, far]
    assert diff.max() < 1e-3 * np.abs(ref.image.data).max()


def test_all_nan_image_is_refused():
    data = np.full((1, 64, 64), np.nan, np.float32)
    with pytest.raises(ImageDataError, match="no finite pixels"):
        sharpen(data, RL)


@pytest.mark.parametrize("value", [0.0, 0.25])
def test_constant_image_is_returned_unchanged_with_a_warning(value):
    data = np.full((3, 80, 90), value, np.float32)
    data[1, 5, 5] = np.nan  # a NaN does not make it non-constant
    with pytest.warns(DataWarning, match="image is constant"):
        res = sharpen(data, RL)
    np.testing.assert_array_equal(res.image.data, data)
    assert res.method == "none" and res.psf_field is None
    assert np.all(res.stars == 0)
    assert any("left unchanged" in n for n in res.notes)


@pytest.mark.parametrize("params", [RL, SharpenParams(method="wiener", sharpen_stars=1.0)])
def test_negative_sky_subtracted_data_is_processed_like_positive_data(params):
    # the same sky with and without a 100-unit pedestal: the results differ by the pedestal only
    data, _, _ = _star_field(seed=3, bg=0.0)
    assert (data < 0).mean() > 0.3
    field = _uniform(data)
    out0 = sharpen(data, params, psf_field=field).image.data
    out1 = sharpen(data + 100.0, params, psf_field=field).image.data
    assert np.isfinite(out0).all()
    assert np.abs((out1 - 100.0) - out0).max() < 0.05 * 2.0  # 0.05 noise sigma


def test_psf_field_of_another_image_is_refused():
    data, _, _ = _star_field()
    wrong = PSFField.uniform((100, 100), 1, 3.0)
    with pytest.raises(ImageDataError, match="psf_field is for a 1-channel 100x100 image"):
        sharpen(data, RL, psf_field=wrong)


class _Identity:
    """A stand-in network that returns the input as non-stellar (records calls)."""

    def __init__(self):
        self.calls = []

    def translate(self, tiles, background, sigma, saturation, src_maps, params):
        self.calls.append((tiles.shape, np.shape(background), np.shape(sigma), saturation, src_maps.shape, params))
        return np.zeros_like(tiles), tiles.copy()


def test_network_path_gets_tiles_maps_and_controls():
    data, _, _ = _star_field(shape=(600, 560), channels=3)
    model = _Identity()
    params = SharpenParams(sharpen_stars=0.5)
    res = sharpen(data, params, model=model, psf_field=_uniform(data))
    assert res.method == "nn"
    np.testing.assert_allclose(res.image.data, data, rtol=1e-6)
    assert len(model.calls) == 1  # the network's engine fits one tile to a 600 x 560 image
    tshape, bshape, sshape, sat, mshape, p = model.calls[0]
    b, c, h, w = tshape
    assert (b, c) == (1, 3) and h % 16 == 0 and w % 16 == 0 and h >= 600 + 32 and w >= 560 + 32
    assert bshape == (b, c, h, w) and sshape == (3,)
    assert mshape == (b, c, len(PARAM_NAMES), h, w)
    assert p == params


def test_engine_plans_network_classical_and_correct_only():
    # the network's tiles are fitted to the image; correct-only reads the PSF
    # at each tile's centre and the classical methods follow the field per
    # tile, so they keep params.tile_size
    nn = pipeline._engine_plan((4000, 6000), "nn", SharpenParams())
    assert nn[0] == 1088 and nn[1] * nn[0] == pytest.approx(pipeline.NN_BLEND) and nn[2] == 1
    assert pipeline._engine_plan((4000, 6000), "nn", SharpenParams(correct_only=True)) == (512, 0.2, pipeline.BATCH)
    assert pipeline._engine_plan((4000, 6000), "rl", SharpenParams(method="rl")) == (512, 0.2, pipeline.BATCH)


def test_missing_network_falls_back_to_richardson_lucy(monkeypatch):
    def broken():
        raise ModelError("model file astrosharp.onnx is missing")

    monkeypatch.setattr(pipeline, "_load_model_file", broken)
    data, _, _ = _star_field()
    with pytest.warns(AstrosharpWarning, match="Richardson-Lucy was used instead"):
        res = sharpen(data, SharpenParams(), psf_field=_uniform(data))
    assert res.method == "rl"
    assert any("model file astrosharp.onnx is missing" in n for n in res.notes)


def test_passes_for_each_option():
    f = PSFField.uniform((100, 100), 3, 4.0, 2.5, ellipticity=0.3, angle=30.0)
    f.values[1, 0] = 5.0  # green channel wider
    one = pipeline._passes(SharpenParams(), f)
    assert len(one) == 1 and one[0][1] is f
    cf = pipeline._passes(SharpenParams(sharpen_stars=0.8, correct_first=True, psf_diameter=3.0), f)
    assert [p.correct_only for p, _ in cf] == [True, False]
    assert [p.psf_diameter for p, _ in cf] == [None, 3.0]
    assert cf[1][0].sharpen_stars == 0.8 and not cf[1][0].correct_first
    corrected = cf[1][1]
    assert np.all(corrected.param("ellipticity") == 0)
    np.testing.assert_allclose(corrected.param("fwhm"), 4.0)  # median of 4, 5, 4
    np.testing.assert_allclose(corrected.param("beta"), 2.5)
    nts = pipeline._passes(SharpenParams(sharpen_stars=0.7, sharpen_nonstellar=0.6, nonstellar_then_stellar=True), f)
    (p1, f1), (p2, f2) = nts
    assert (p1.sharpen_stars, p1.sharpen_nonstellar) == (0.0, 0.6)
    assert (p2.sharpen_stars, p2.sharpen_nonstellar) == (0.7, 0.0)
    assert f1 is f and np.all(f2.param("ellipticity") == 0)
    np.testing.assert_allclose(f2.param("fwhm")[1], 5.0)  # channels keep their own FWHM
    both = pipeline._passes(SharpenParams(correct_first=True, nonstellar_then_stellar=True, denoise=0.5), f)
    assert len(both) == 3 and both[0][0].correct_only
    assert [p.denoise for p, _ in both] == [0.5, 0.0, 0.0]


def test_two_passes_run_on_the_output_of_the_first():
    data, _, _ = _star_field(shape=(200, 200))
    model = _Identity()
    sharpen(data, SharpenParams(nonstellar_then_stellar=True), model=model, psf_field=_uniform(data))
    assert [c[5].sharpen_nonstellar for c in model.calls] == [0.9, 0.0]


def test_round_field_keeps_fwhm_and_beta():
    f = PSFField.uniform((50, 50), 1, 3.0, 4.0, ellipticity=0.2)
    r = round_field(f, equalise_channels=True)
    assert r.param("fwhm")[0, 0, 0] == 3.0 and r.param("beta")[0, 0, 0] == 4.0
    assert r.param("ellipticity")[0, 0, 0] == 0.0
    assert f.param("ellipticity")[0, 0, 0] == pytest.approx(0.2)  # original untouched


def test_detect_saturation():
    data = np.random.default_rng(0).normal(0.1, 0.01, (3, 50, 50)).astype(np.float32)
    assert detect_saturation(data) is None
    data[1, 10:13, 10:13] = 0.9
    data[2, 20, 20] = 0.95  # one bright pixel is not a clipped plateau
    sat = detect_saturation(data)
    assert np.isinf(sat[0]) and np.isinf(sat[2]) and sat[1] == pytest.approx(0.9)


def _shipped_model():
    from astrosharp.nn import Model

    try:
        return Model.load()
    except ModelError as exc:
        pytest.skip(f"no shipped network yet ({exc})")


def test_shipped_network_sharpens_stars_and_keeps_layers_consistent():
    model = _shipped_model()
    data, ys, xs = _star_field(shape=(256, 256), channels=3, seed=5, n=25, noise=2.0)
    params = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5)
    res = sharpen(data, params, model=model, psf_field=_uniform(data))
    assert res.method == "nn"
    out = res.image.data
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, res.stars + res.nonstellar)
    before = np.median([_fwhm_of(data[1], y, x, 100.0) for y, x in zip(ys, xs)])
    after = np.median([_fwhm_of(out[1], y, x, 100.0) for y, x in zip(ys, xs)])
    assert after < 0.85 * before


@pytest.mark.parametrize(
    "shape, match",
    [
        ((100,), "image data must be 2-D .* got 1-D data"),
        ((10, 40), "astrosharp needs at least 16 px on each side"),
        ((4, 40, 40), "must have 1 \\(mono\\) or 3 \\(RGB\\) channels, got 4"),
    ],
)
def test_arrays_of_the_wrong_shape_are_refused(shape, match):
    with pytest.raises(ImageDataError, match=match):
        sharpen(np.ones(shape, np.float32), RL)


def test_mono_2d_array_and_small_image_padded_by_reflection():
    # a 2-D array is one channel; an image much smaller than a tile is one padded tile
    data, ys, xs = _star_field(shape=(60, 64), n=3)
    res = sharpen(data[0], RL, psf_field=_uniform(data))
    assert res.image.shape == (1, 60, 64)
    assert np.isfinite(res.image.data).all()
    assert res.image.data.sum() == pytest.approx(data.sum(), rel=0.01)


def test_public_api_names_resolve():
    import astrosharp

    for name in astrosharp.__all__:
        assert getattr(astrosharp, name) is not None, name
    assert astrosharp.sharpen is sharpen and astrosharp.SharpenResult is SharpenResult
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        astrosharp.nonexistent  # noqa: B018


def test_manual_psf_is_the_source_when_too_few_stars_are_found():
    # a star-poor frame (three compact sources on smooth emission): with a manual
    # PSF diameter, a handful of detections must not set the source PSF
    from astrosharp.params import SharpenParams
    from astrosharp.pipeline import sharpen
    from astrosharp.psf.field import ORIGINS
    from astrosharp.psf.moffat import moffat_kernel

    rng = np.random.default_rng(5)
    n = 192
    yy, xx = np.mgrid[:n, :n]
    img = 0.1 + 0.05 * np.exp(-((yy - 90) ** 2 + (xx - 100) ** 2) / (2 * 40.0**2))
    k = moffat_kernel(3.0, 3.0, size=31)
    for y, x in ((40, 50), (140, 60), (100, 150)):
        img[y - 15 : y + 16, x - 15 : x + 16] += 2.0 * k
    img = img + rng.normal(0, 0.002, img.shape)
    res = sharpen(img[None].astype(np.float32), SharpenParams(psf_diameter=2.5, method="wiener"))
    assert np.all(res.psf_field.origin == ORIGINS.index("manual"))
    assert np.allclose(res.psf_field.param("fwhm"), 2.5)
    assert any("too few to trust" in n_ or "no stars found" in n_ for n_ in res.notes)
    found = [n_ for n_ in res.notes if "star(s) found, too few to trust" in n_]
    assert found, res.notes  # the three sources were measured, and judged too few


def test_galaxy_cores_wider_than_the_manual_psf_are_not_stars():
    # a star-free galaxy field (the simulator's, on a seed the bench does not use)
    # whose bright cores the star detection takes for stars: with a manual PSF
    # diameter they are too wide to be point sources, the manual PSF is the
    # source everywhere, and the network's result is closer to the truth than
    # the input (the cores are not shrunk as stars)
    from astrosharp import synth
    from astrosharp.pipeline import sharpen
    from astrosharp.psf.field import ORIGINS

    case = synth.make_case("galaxies_starless_mono", 2, 512)
    res = sharpen(case.obs.image, case.params)
    assert any("no wider than 1.5 x the manual PSF diameter" in n_ for n_ in res.notes), res.notes
    assert np.all(res.psf_field.origin == ORIGINS.index("manual"))
    truth = case.truth.image
    peak = np.percentile(truth, 99.9) - np.percentile(truth, 0.1)

    def psnr(a):
        return 10 * np.log10(peak**2 / np.mean((np.asarray(a, float) - truth) ** 2))

    if res.method == "nn":
        assert psnr(res.image.data) > psnr(case.obs.image) + 1.0
        # no star to trust: the stars layer is empty (no galaxy core or knot in it)
        assert not np.any(res.stars)
        np.testing.assert_array_equal(res.nonstellar, np.asarray(res.image.data))
        assert any("stars layer: empty" in n_ for n_ in res.notes)


def test_correct_only_gives_the_colour_channels_one_width():
    """Channels of FWHM 3.4 / 4.0 / 4.6 px leave correct-only at about the median (4.0) in all three."""
    model = _shipped_model()
    rng = np.random.default_rng(8)
    h = w = 256
    ys, xs = rng.integers(30, h - 30, 30), rng.integers(30, w - 30, 30)
    keep = np.ones(30, bool)
    for i in range(30):  # isolated stars only
        d = np.hypot(ys - ys[i], xs - xs[i])
        d[i] = 1e9
        keep[i] = d.min() > 20
    ys, xs = ys[keep], xs[keep]
    flux = rng.uniform(1e4, 4e4, ys.size)
    img = np.empty((3, h, w))
    for c, f in enumerate((3.4, 4.0, 4.6)):
        sky = np.zeros((h, w))
        sky[ys, xs] = flux
        img[c] = signal.fftconvolve(sky, moffat_kernel(f, 3.0, size=61), mode="same")
    img = (img + 100.0 + rng.normal(0, 2.0, img.shape)).astype(np.float32)
    res = sharpen(img, SharpenParams(correct_only=True, sharpen_stars=0.0, sharpen_nonstellar=0.0), model=model)
    from astrosharp.psf.fit import fit_stars

    def widths(a):
        centre = np.full(ys.size, 12.0)
        return [float(np.median(fit_stars(np.stack([a[c, y - 12:y + 13, x - 12:x + 13] for y, x in zip(ys, xs)]),
                                          centre, centre, fwhm_guess=4.0, noise=2.0).fwhm)) for c in range(3)]

    fin, fout = widths(img), widths(res.image.data)
    np.testing.assert_allclose(fin, (3.4, 4.0, 4.6), rtol=0.02)
    assert (max(fout) - min(fout)) / np.median(fout) < 0.05  # the bar; 0.15 before equalising
    assert 0.92 < np.median(fout) / 4.0 < 1.05


@pytest.mark.parametrize(
    "fwhm, params, runs",
    [
        (0.7, SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5), False),  # undersampled: every target is the source
        (0.7, SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5, denoise=0.5), True),
        (0.7, SharpenParams(sharpen_stars=1.0, adjust_halos=0.2), True),  # the wings still change
        (0.7, SharpenParams(correct_only=True), True),
        (0.9, SharpenParams(sharpen_stars=1.0, psf_diameter=3.0), False),  # its 1 px floor is wider than the source
        (1.4, SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5), True),
        (1.4, SharpenParams(sharpen_stars=0.0, sharpen_nonstellar=0.0), False),  # nothing asked
    ],
)
def test_the_network_is_skipped_where_every_target_is_the_source(fwhm, params, runs):
    data, ys, xs = _star_field(shape=(200, 220), seed=2, n=20, fwhm=max(fwhm, 1.0))
    assert pipeline.nothing_to_translate(params, _uniform(data, fwhm)) is not runs
    model = _Identity()
    res = sharpen(data, params, model=model, psf_field=_uniform(data, fwhm))
    assert res.method == "nn"
    assert bool(model.calls) is runs
    np.testing.assert_array_equal(res.stars + res.nonstellar, res.image.data)
    if not runs:
        # left as it is (to float32 rounding: the layer split moves light between the layers)
        np.testing.assert_allclose(res.image.data, data, rtol=2e-7, atol=0)
        assert any("nothing to translate" in n for n in res.notes)
        # the stars layer still holds the stars (moved from the image by the layer split)
        assert np.median(res.stars[0, ys, xs]) > 0.5 * np.median(data[0, ys, xs] - 100.0)


def test_a_pass_with_nothing_to_translate_is_skipped_alone():
    """Non-stellar then stellar: the first pass (stars kept, non-stellar
    sharpened) has nothing to do on an undersampled PSF, the second (halos
    changed) runs."""
    data, _, _ = _star_field(shape=(200, 220), seed=3, n=20, fwhm=1.0)
    params = SharpenParams(sharpen_stars=1.0, adjust_halos=-0.2, sharpen_nonstellar=0.5, nonstellar_then_stellar=True)
    model = _Identity()
    res = sharpen(data, params, model=model, psf_field=_uniform(data, 0.7))
    assert len(model.calls) == 1 and model.calls[0][-1].sharpen_nonstellar == 0.0
    assert any("nothing to translate in pass 1" in n for n in res.notes)
