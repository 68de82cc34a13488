"""Training data: flips and rotations of PSF parameters, batches, the pool."""

from __future__ import annotations

import numpy as np
import pytest

from astrosharp.nn.inputs import N_INPUTS, N_OUTPUTS, NET_CHANNELS, input_channel_names
from astrosharp.psf.moffat import moffat_kernel
from astrosharp.synth.optics import asymmetry
from training.data import (
    BatchOptions,
    generate_pool,
    load_pool,
    make_batch,
    pool_from_examples,
    psf_maps_from_nodes,
    transform_images,
    transform_psf_params,
)

TRANSFORMS = [(t, fy, fx) for t in (False, True) for fy in (False, True) for fx in (False, True)]


def _params(fwhm, beta, e, angle, ax=0.0, ay=0.0):
    t = np.deg2rad(angle)
    return np.array([fwhm, beta, e * np.cos(2 * t), e * np.sin(2 * t), ax, ay], dtype=float)[:, None, None]


@pytest.mark.parametrize("tr,fy,fx", TRANSFORMS)
def test_ellipse_parameters_follow_the_image(tr, fy, fx):
    """The kernel of the transformed parameters is the transformed kernel."""
    p = _params(4.0, 2.5, 0.3, 25.0)
    k = moffat_kernel(4.0, 2.5, 0.3, 25.0, size=31)
    q = transform_psf_params(p, tr, fy, fx)[:, 0, 0]
    e = float(np.hypot(q[2], q[3]))
    ang = float(np.rad2deg(0.5 * np.arctan2(q[3], q[2])))
    expected = moffat_kernel(q[0], q[1], e, ang, size=31)
    np.testing.assert_allclose(transform_images(k, tr, fy, fx), expected, atol=1e-7)
    assert e == pytest.approx(0.3)


@pytest.mark.parametrize("tr,fy,fx", TRANSFORMS)
def test_asymmetry_vector_follows_the_image(tr, fy, fx):
    """A coma-like flare (a fainter, wider copy shifted along (dx, dy))."""
    k = moffat_kernel(3.0, 3.0, size=41) + 0.3 * moffat_kernel(5.0, 3.0, size=41, shift=(1.0, 2.5))
    ax, ay = asymmetry(k)
    assert ax > 0.05 and ay > 0.01  # flare towards +x and +y
    p = _params(3.0, 3.0, 0.0, 0.0, ax, ay)
    q = transform_psf_params(p, tr, fy, fx)[:, 0, 0]
    bx, by = asymmetry(np.ascontiguousarray(transform_images(k, tr, fy, fx)))
    np.testing.assert_allclose([q[4], q[5]], [bx, by], atol=1e-9)


def test_maps_from_nodes_are_bilinear():
    nodes = np.zeros((1, 6, 2, 2), np.float32)
    nodes[0, 0] = [[2.0, 4.0], [6.0, 8.0]]
    m = psf_maps_from_nodes(nodes, 5, 9)
    assert m.shape == (1, 6, 5, 9)
    assert m[0, 0, 0, 0] == 2.0 and m[0, 0, 0, -1] == 4.0 and m[0, 0, -1, 0] == 6.0 and m[0, 0, -1, -1] == 8.0
    assert m[0, 0, 2, 4] == pytest.approx(5.0)


@pytest.fixture(scope="module")
def tiny_pool():
    from astrosharp import synth

    return pool_from_examples([synth.training_example(np.random.default_rng([7, i]), size=48) for i in range(2)])


def test_batch_layout(tiny_pool):
    rng = np.random.default_rng(0)
    x, y, info = make_batch(tiny_pool, np.array([0, 1, 1]), rng, BatchOptions(mono_fraction=0.0))
    assert x.shape == (3, N_INPUTS, 48, 48) and y.shape == (3, N_OUTPUTS, 48, 48)
    assert np.isfinite(x).all() and np.isfinite(y).all()
    assert not np.array_equal(x[0, 0], x[0, 1])  # colour channels differ
    x, y, info = make_batch(tiny_pool, np.array([0, 1]), rng, BatchOptions(mono_fraction=1.0))
    assert info["mono"].all()
    for i in range(2):  # one channel replicated: identical inputs and targets across colours
        assert np.array_equal(x[i, 0], x[i, 1]) and np.array_equal(x[i, 0], x[i, 2])
        assert np.array_equal(y[i, 0], y[i, 2]) and np.array_equal(y[i, 3], y[i, 5])


def test_denoise_zero_keeps_the_input_noise(tiny_pool):
    """At denoise 0 the target's non-stellar layer holds exactly the input's
    noise; at denoise 1 none of it (same rng: same noise)."""
    opts = BatchOptions(augment=False, mono_fraction=0.0)
    x0, y0, _ = make_batch(tiny_pool, np.array([0]), np.random.default_rng(3), opts, denoise=0.0)
    x1, y1, _ = make_batch(tiny_pool, np.array([0]), np.random.default_rng(3), opts, denoise=1.0)
    assert np.array_equal(x0[:, :39], x1[:, :39])
    assert np.allclose(x1[0, input_channel_names().index("denoise")], 1.0)
    lin = lambda u: 3.0 * np.sinh(u.astype(np.float64))  # noqa: E731
    noise_target = lin(y0[0, NET_CHANNELS:]) - lin(y1[0, NET_CHANNELS:])
    # the noise in sigma units has unit std on the background
    assert 0.8 < np.median(np.abs(noise_target)) / 0.6745 < 1.3
    assert np.array_equal(y0[0, :NET_CHANNELS], y1[0, :NET_CHANNELS])


def test_pool_files_round_trip(tmp_path):
    generate_pool(str(tmp_path), count=2, seed=5, size=32, workers=1, chunk=1)
    pool = load_pool(str(tmp_path), seed=5)
    assert len(pool) == 2 and pool.arrays["clean"].shape == (2, 3, 32, 32)
    again = load_pool(str(tmp_path))
    assert np.array_equal(again.arrays["clean"], pool.arrays["clean"])
