"""The network's input layout: normalisation, conditioning maps, decoding."""

from __future__ import annotations

import numpy as np
import pytest

from astrosharp.errors import ParameterError
from astrosharp.nn.inputs import (
    FAINT_SCALE,
    N_INPUTS,
    N_OUTPUTS,
    NET_CHANNELS,
    ORIENTATIONS,
    Controls,
    build_inputs,
    decode_outputs,
    input_channel_names,
    normalisation_constants,
)
from astrosharp.params import SharpenParams


def _maps(b, c, h, w, fwhm=(3.0, 3.0, 3.0), beta=3.0):
    m = np.zeros((b, c, 6, h, w), np.float32)
    for k in range(c):
        m[:, k, 0] = fwhm[k]
    m[:, :, 1] = beta
    return m


def _identity_outputs(x):
    """Outputs that say: no stars, the non-stellar layer is the input itself."""
    y = np.zeros((x.shape[0], N_OUTPUTS) + x.shape[2:], np.float32)
    y[:, NET_CHANNELS:] = x[:, :NET_CHANNELS]
    return y


@pytest.mark.parametrize("channels", [1, 3])
def test_build_decode_round_trip(channels):
    rng = np.random.default_rng(0)
    b, h, w = 2, 32, 48
    bg = np.array([0.01, 0.02, 0.03][:channels])
    sigma = np.array([1e-3, 2e-3, 5e-4][:channels])
    tiles = (bg[None, :, None, None] + sigma[None, :, None, None] * rng.standard_normal((b, channels, h, w))).astype(np.float32)
    tiles[:, :, 10, 10] += 5.0  # a bright peak: the compression must invert exactly too
    x = build_inputs(tiles, bg, sigma, None, _maps(b, channels, h, w), Controls.from_params(SharpenParams(), b))
    assert x.shape == (b, N_INPUTS, h, w) and x.dtype == np.float32
    stars, ns = decode_outputs(_identity_outputs(x), bg, sigma, channels=channels)
    assert stars.shape == ns.shape == tiles.shape
    assert np.all(stars == 0)
    np.testing.assert_allclose(ns, tiles, rtol=1e-5, atol=1e-3 * sigma.min())


@pytest.mark.parametrize("channels", [1, 3])
def test_the_stack_holds_each_feature_written_in_place(channels):
    """build_inputs writes every plane into its stack directly (no copies);
    the planes must be those of the feature functions on their own: the
    PSF features, the target maps and the two compressions of the image."""
    from astrosharp.nn.inputs import BRIGHT_SCALE, PSF_FEATURES, _asinh, psf_features, target_features

    rng = np.random.default_rng(3)
    b, h, w = 2, 24, 40
    tiles = (0.02 + 1e-3 * rng.standard_normal((b, channels, h, w))).astype(np.float32)
    maps = np.zeros((b, channels, 6, h, w), np.float32)
    maps[:, :, 0] = rng.uniform(1.5, 6.0, (b, channels, h, w))
    maps[:, :, 1] = rng.uniform(1.5, 8.0, (b, channels, h, w))
    maps[:, :, 2:] = rng.uniform(-0.2, 0.2, (b, channels, 4, h, w))
    ctl = Controls.from_params(SharpenParams(sharpen_stars=0.8, adjust_halos=0.2, sharpen_nonstellar=0.6), b)
    x = build_inputs(tiles, 0.02, 1e-3, None, maps, ctl)
    full = np.repeat(maps, NET_CHANNELS, axis=1) if channels == 1 else maps
    n = np.repeat((tiles - np.float32(0.02)) / np.float32(1e-3), NET_CHANNELS // channels, axis=1)
    k = NET_CHANNELS
    p0, p1 = 4 * k, 4 * k + len(PSF_FEATURES) * k
    assert np.array_equal(x[:, :k], _asinh(n, FAINT_SCALE))
    assert np.array_equal(x[:, k:2 * k], _asinh(n, BRIGHT_SCALE))
    assert np.array_equal(x[:, p0:p1], psf_features(full))
    assert np.array_equal(x[:, p1:], target_features(full, ctl))


def test_mono_is_replicated():
    tiles = np.random.default_rng(1).standard_normal((1, 1, 16, 16)).astype(np.float32)
    x = build_inputs(tiles, 0.0, 1.0, None, _maps(1, 1, 16, 16), Controls.from_params(SharpenParams(), 1))
    for start in (0, 3, 6, 9):
        assert np.array_equal(x[:, start], x[:, start + 1]) and np.array_equal(x[:, start], x[:, start + 2])
    # the encoding's log form of asinh agrees within 1e-6 absolute (inputs._asinh)
    np.testing.assert_allclose(x[:, 0], np.arcsinh(tiles[:, 0] / FAINT_SCALE), rtol=1e-6, atol=1e-6)


def test_bench_setting_asks_half_fwhm():
    p = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5, adjust_halos=0.0)
    x = build_inputs(np.zeros((1, 3, 16, 16), np.float32), 0.0, 1.0, None, _maps(1, 3, 16, 16, (2.0, 3.0, 6.0)),
                     Controls.from_params(p, 1))
    names = input_channel_names()
    for c in "rgb":
        assert np.allclose(x[0, names.index(f"target_log2_star_fwhm_ratio_{c}")], -1.0)
        assert np.allclose(x[0, names.index(f"target_log2_nonstellar_fwhm_ratio_{c}")], -1.0)
        assert np.allclose(x[0, names.index(f"target_log2_star_beta_ratio_{c}")], 0.0)
    assert np.allclose(x[0, names.index("correct_only")], 0.0)


def test_nonstellar_floor_and_halos():
    # n = 0.9 on a 2 px source: max(F_MIN, 0.2) = 1 px, ratio 0.5; halos +0.5 halve beta (3 -> 1.5)
    p = SharpenParams(sharpen_stars=0.0, sharpen_nonstellar=0.9, adjust_halos=0.5)
    x = build_inputs(np.zeros((1, 3, 8, 8), np.float32), 0.0, 1.0, None, _maps(1, 3, 8, 8, (2.0, 2.0, 2.0)),
                     Controls.from_params(p, 1))
    names = input_channel_names()
    assert np.allclose(x[0, names.index("target_log2_nonstellar_fwhm_ratio_g")], -1.0)
    assert np.allclose(x[0, names.index("target_log2_star_fwhm_ratio_g")], 0.0)
    assert np.allclose(x[0, names.index("target_log2_star_beta_ratio_g")], -1.0)


def test_correct_only_equalises_channel_fwhm():
    p = SharpenParams(correct_only=True)
    x = build_inputs(np.zeros((1, 3, 8, 8), np.float32), 0.0, 1.0, None, _maps(1, 3, 8, 8, (2.0, 3.0, 4.0)),
                     Controls.from_params(p, 1))
    names = input_channel_names()
    got = [float(x[0, names.index(f"target_log2_star_fwhm_ratio_{c}")].mean()) for c in "rgb"]
    np.testing.assert_allclose(got, np.log2([3 / 2, 1.0, 3 / 4]), atol=1e-6)
    assert np.allclose(x[0, names.index("correct_only")], 1.0)


def test_mixed_batch_follows_the_params_formulas():
    """Per-tile controls in one batch: each tile gets params.py's targets for its own controls."""
    from astrosharp.nn.inputs import target_features
    from astrosharp.params import nonstellar_target, stellar_target

    rng = np.random.default_rng(4)
    b, h, w = 6, 5, 7
    m = np.zeros((b, 3, 6, h, w), np.float32)
    m[:, :, 0] = rng.uniform(0.8, 8.0, (b, 3, h, w))
    m[:, :, 1] = rng.uniform(1.05, 15.0, (b, 3, h, w))
    ctrl = Controls(
        sharpen_stars=np.array([1.0, 0.3, 0.0, 0.7, 0.5, 0.2]),
        adjust_halos=np.array([0.0, -0.5, 0.4, 0.1, 0.0, 0.0]),
        sharpen_nonstellar=np.array([0.5, 1.0, 0.2, 0.9, 0.6, 0.3]),
        correct_only=np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        denoise=np.array([0.0, 0.5, 1.0, 0.0, 0.2, 0.0]),
        psf_diameter=np.array([np.nan, np.nan, 3.0, 0.0, np.nan, 6.0]),
    )
    got = target_features(m, ctrl).reshape(b, -1, h, w)
    for i in range(b):
        f, be = m[i, :, 0].astype(float), m[i, :, 1].astype(float)
        if ctrl.correct_only[i]:
            med = np.median(f, axis=0)
            want = [np.log2(med / f), np.zeros_like(f), np.log2(med / f)]
        else:
            tf, tb = stellar_target(f, be, ctrl.sharpen_stars[i], ctrl.adjust_halos[i])
            d = ctrl.psf_diameter[i]
            if np.isnan(d):
                nf = nonstellar_target(f, ctrl.sharpen_nonstellar[i])
            elif d == 0:
                nf = f
            else:
                nf = np.minimum(nonstellar_target(d, ctrl.sharpen_nonstellar[i]), f)
            want = [np.log2(tf / f), np.log2(tb / be), np.log2(nf / f)]
        for j in range(3):
            np.testing.assert_allclose(got[i, j:9:3], want[j], atol=2e-5, err_msg=f"tile {i}, target {j}")
        assert np.all(got[i, -2] == ctrl.correct_only[i]) and np.allclose(got[i, -1], ctrl.denoise[i])


def test_manual_diameter_zero_leaves_nonstellar():
    p = SharpenParams(psf_diameter=0.0, sharpen_nonstellar=1.0)
    x = build_inputs(np.zeros((1, 1, 8, 8), np.float32), 0.0, 1.0, None, _maps(1, 1, 8, 8), Controls.from_params(p, 1))
    assert np.allclose(x[0, input_channel_names().index("target_log2_nonstellar_fwhm_ratio_r")], 0.0)


@pytest.mark.parametrize("channels", [1, 3])
def test_inputs_built_in_bands_of_rows_are_the_same_stack(channels, monkeypatch):
    """The engine builds a tile's inputs in bands of rows, one thread per
    core (every plane is computed pixel by pixel): the stack must be the
    same to the bit, with a per-pixel background map, saturation and the
    Poisson map, and with a scalar background."""
    from astrosharp.nn import session

    monkeypatch.setattr(session.os, "cpu_count", lambda: 3)  # three bands, whatever this machine has
    rng = np.random.default_rng(5)
    b, h, w = 2, 3 * session.BAND_MIN_ROWS // 2 + 7, 40
    tiles = (0.02 + 1e-3 * rng.standard_normal((b, channels, h, w))).astype(np.float32)
    tiles[:, :, 100, 20] = 0.5
    maps = np.zeros((b, channels, 6, h, w), np.float32)
    maps[:, :, 0] = rng.uniform(1.5, 6.0, (b, channels, h, w))
    maps[:, :, 1] = rng.uniform(1.5, 8.0, (b, channels, h, w))
    maps[:, :, 2:] = rng.uniform(-0.2, 0.2, (b, channels, 4, h, w))
    ctl = Controls.from_params(SharpenParams(sharpen_stars=0.8, adjust_halos=0.2, sharpen_nonstellar=0.6), b)
    bg_map = (0.02 + 1e-4 * rng.standard_normal((b, channels, h, w))).astype(np.float32)
    sigma = np.full((b, channels), 1e-3, np.float32)
    sat = np.full((b, channels), 0.4, np.float32)
    pk = np.full((b, channels), 0.3, np.float32)
    for bg in (bg_map, np.asarray(np.float32(0.02))):
        ref = build_inputs(tiles, bg, sigma, sat, maps, ctl, poisson_k=pk)
        banded = session._build_in_bands(tiles, bg, sigma, sat, maps, ctl, pk)
        assert np.array_equal(banded, ref)
    assert ref[:, 3 * NET_CHANNELS:4 * NET_CHANNELS, 100, 20].min() == 1.0  # the saturated pixel is in a band


def test_a_stack_of_the_wrong_shape_is_refused():
    with pytest.raises(ParameterError, match="out must be"):
        build_inputs(np.zeros((1, 3, 8, 8), np.float32), 0.0, 1.0, None, _maps(1, 3, 8, 8),
                     Controls.from_params(SharpenParams(), 1), out=np.empty((1, N_INPUTS, 8, 9), np.float32))


def test_saturation_mask_and_noise_map():
    tiles = np.zeros((1, 3, 8, 8), np.float32)
    tiles[0, 1, 2, 3] = 1.0
    x = build_inputs(tiles, 0.0, 0.01, 1.0, _maps(1, 3, 8, 8), Controls.from_params(SharpenParams(), 1), poisson_k=0.5)
    names = input_channel_names()
    sat = x[0, names.index("saturated_g")]
    assert sat[2, 3] == 1.0 and sat.sum() == 1.0 and x[0, names.index("saturated_r")].sum() == 0.0
    noise = x[0, names.index("noise_g")]
    assert noise[2, 3] == pytest.approx(0.5 * np.log1p(0.5 * 100.0), rel=1e-5)
    assert noise[0, 0] == 0.0


def test_layout_is_consistent():
    assert len(input_channel_names()) == N_INPUTS == normalisation_constants()["n_inputs"]


def test_bad_shapes_are_refused():
    with pytest.raises(ParameterError):
        build_inputs(np.zeros((1, 2, 8, 8), np.float32), 0.0, 1.0, None, _maps(1, 2, 8, 8, (3, 3, 3)),
                     Controls.from_params(SharpenParams(), 1))
    with pytest.raises(ParameterError):
        build_inputs(np.zeros((1, 3, 8, 8), np.float32), 0.0, 1.0, None, _maps(1, 3, 4, 4),
                     Controls.from_params(SharpenParams(), 1))
    with pytest.raises(ParameterError):
        build_inputs(np.zeros((1, 3, 8, 8), np.float32), 0.0, 0.0, None, _maps(1, 3, 8, 8),
                     Controls.from_params(SharpenParams(), 1))


def test_an_odd_asymmetry_is_clamped_to_what_the_network_learned():
    # a measurement from one odd star can give asym far outside the training
    # PSFs' (within 0.075); the network is told at most ASYM_MAX
    from astrosharp.nn.inputs import ASYM_MAX, psf_features

    maps = np.zeros((1, 3, 6, 2, 2), np.float32)
    maps[:, :, 0] = 3.0
    maps[:, :, 1] = 3.0
    maps[:, 0, 4] = 21.0
    maps[:, 2, 4] = -10.0
    maps[:, 1, 5] = 0.05
    f = psf_features(maps).reshape(1, 3, 6, 2, 2)
    assert np.all(f[:, 0, 4] == np.float32(ASYM_MAX))
    assert np.all(f[:, 2, 4] == np.float32(-ASYM_MAX))
    assert np.allclose(f[:, 1, 5], 0.05)  # values in range pass unchanged
    assert 0.075 <= ASYM_MAX <= 0.15


def test_a_wild_psf_measurement_does_not_change_the_background():
    # an asymmetry of 21 (what one odd star gave on a crop of a real frame)
    # once made the network brighten the whole background 3 to 5 times
    from astrosharp.errors import ModelError
    from astrosharp.nn import Model
    from astrosharp.pipeline import sharpen
    from astrosharp.psf.field import PSFField
    from astrosharp.psf.moffat import moffat_kernel

    try:
        model = Model.load()
    except ModelError as exc:
        pytest.skip(f"no shipped network ({exc})")
    rng = np.random.default_rng(3)
    img = np.full((3, 192, 192), 0.011, np.float32) + rng.normal(0, 5e-4, (3, 192, 192)).astype(np.float32)
    k = moffat_kernel(2.5, 3.0, size=21, normalize=True).astype(np.float32)
    for y, x in ((60, 70), (130, 120)):
        img[:, y - 10:y + 11, x - 10:x + 11] += 0.5 * k
    field = PSFField.uniform((192, 192), 3, 2.5, 3.0)
    field.values[:, 4] = 21.0  # asym_x
    res = sharpen(img, SharpenParams(method="nn"), model=model, psf_field=field, layers=False)
    med_in = np.median(img.reshape(3, -1), axis=1)
    med_out = np.median(res.image.data.reshape(3, -1), axis=1)
    np.testing.assert_allclose(med_out, med_in, rtol=0.01)


@pytest.mark.parametrize("turn", ORIENTATIONS[1:])
def test_inputs_in_another_orientation_are_those_of_the_transformed_sky(turn):
    # orient_inputs must give exactly what build_inputs makes of the transformed
    # tile and PSF maps (each plane moved, e1 / e2 / asymmetry changed as the
    # training augmentation changes them), and untransform_images must undo it
    from astrosharp.nn.inputs import orient_inputs, transform_images, transform_psf_params, untransform_images

    rng = np.random.default_rng(3)
    b, c, h, w = 2, 3, 32, 48
    tiles = (0.01 + 1e-3 * rng.standard_normal((b, c, h, w))).astype(np.float32)
    tiles[:, :, 5, 7] += 2.0
    maps = _maps(b, c, h, w)
    maps[:, :, 2] = rng.uniform(-0.2, 0.2, (b, c, 1, 1))  # e1, e2 and asymmetry that vary over the tile
    maps[:, :, 3] = np.linspace(-0.1, 0.2, w, dtype=np.float32)
    maps[:, :, 4] = np.linspace(-0.05, 0.04, h, dtype=np.float32)[:, None]
    maps[:, :, 5] = 0.03
    sat = np.full(c, 2.005, np.float32)
    ctl = Controls.from_params(SharpenParams(sharpen_stars=0.7, adjust_halos=0.2), b)
    x = build_inputs(tiles, 0.01, 1e-3, sat, maps, ctl)
    expected = build_inputs(np.ascontiguousarray(transform_images(tiles, *turn)), 0.01, 1e-3, sat,
                            np.ascontiguousarray(transform_psf_params(maps, *turn)), ctl)
    np.testing.assert_allclose(orient_inputs(x, *turn), expected, rtol=1e-6, atol=1e-6)
    assert np.array_equal(untransform_images(transform_images(tiles, *turn), *turn), tiles)
