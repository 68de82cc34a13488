"""The tiled engine: plan, blending weights, padding and stitching."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from astrosharp.tiles import (
    axis_starts,
    axis_weights,
    fit_tile,
    extract_tile,
    plan_grid,
    run_tiled,
    tile_boxes,
)


@pytest.mark.parametrize("length", [16, 100, 512, 513, 700, 1000, 1500, 2049])
def test_axis_weights_sum_to_one_and_are_smooth(length):
    size = min(512, length)
    starts = axis_starts(length, 512, 0.2)
    ws = axis_weights(starts, length, size)
    total = np.zeros(length)
    for s, w in zip(starts, ws):
        assert w.shape == (size,)
        assert np.all(w > 0)
        total[s : s + size] += w
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)
    if len(starts) > 1:
        # the window of an interior edge starts near 0: no hard cut at a tile edge
        assert ws[1][0] < 0.01 and ws[0][-1] < 0.01
        # and changes by small steps only (ramp over >= 20 % of a tile)
        assert max(np.abs(np.diff(w)).max() for w in ws) < 0.05
    # at the image border the weight is 1
    assert ws[0][0] == pytest.approx(1.0) and ws[-1][-1] == pytest.approx(1.0)


def test_overlap_is_at_least_twenty_percent():
    for length in (600, 1000, 3000, 6000):
        s = axis_starts(length, 512, 0.2)
        assert s[0] == 0 and s[-1] + 512 == length
        assert np.all(np.diff(s) <= 512 - 0.2 * 512)


def test_boxes_have_one_padded_size_multiple_of_16():
    boxes = tile_boxes((700, 1100), 512, 0.2, halo=16, multiple=16)
    grid = plan_grid((700, 1100))
    assert len(boxes) == len(grid)
    assert {(b.ph, b.pw) for b in boxes} == {(544, 544)}
    small = tile_boxes((37, 50), 512, 0.2, halo=16, multiple=16)
    assert len(small) == 1
    b = small[0]
    assert b.ph % 16 == 0 and b.pw % 16 == 0 and b.ph >= 37 + 32 and b.pw >= 50 + 32


def test_extract_tile_reflects_beyond_the_border():
    data = np.arange(3 * 20 * 30, dtype=np.float32).reshape(3, 20, 30)
    box = tile_boxes((20, 30), 512, 0.2, halo=4, multiple=16)[0]
    t = extract_tile(data, box)
    assert t.shape == (3, box.ph, box.pw)
    ref = np.pad(data, ((0, 0), (4, box.ph - 24), (4, box.pw - 34)), mode="reflect")
    np.testing.assert_array_equal(t, ref)


def _image(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.gamma(2.0, 1.0, size=shape) * 100 + 5).astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 1100, 900), (3, 300, 700), (1, 40, 23)])
def test_per_pixel_operation_equals_whole_image(shape):
    data = _image(shape)

    def op(x):
        return np.sqrt(x) * 3.0 - 0.25 * x

    calls = []

    def fn(tiles, boxes):
        calls.append(len(boxes))
        assert tiles.dtype == np.float32 and tiles.shape[2] % 16 == 0 and tiles.shape[3] % 16 == 0
        return op(tiles)

    out = run_tiled(data, fn, batch=2)
    ref = op(data)
    assert out.shape == data.shape
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=0)
    assert max(calls) <= 2  # batches are bounded
    assert sum(calls) == len(plan_grid(shape[1:]))


def test_two_outputs_sum_like_the_inputs():
    data = _image((3, 600, 800), seed=1)

    def fn(tiles, boxes):
        return 0.3 * tiles, 0.7 * tiles

    a, b = run_tiled(data, fn, outputs=2, batch=3)
    np.testing.assert_allclose(a + b, data, rtol=1e-6)
    np.testing.assert_allclose(a, 0.3 * data, rtol=1e-6)


def test_blur_through_tiles_has_no_seam():
    # a star field with smooth structure, blurred per tile vs on the whole image
    rng = np.random.default_rng(3)
    h, w = 1200, 1000
    data = np.zeros((1, h, w), np.float32)
    ys, xs = rng.integers(0, h, 3000), rng.integers(0, w, 3000)
    data[0, ys, xs] = rng.uniform(10, 1000, 3000)
    data += rng.normal(0, 1.0, data.shape).astype(np.float32)
    sigma = 2.5  # kernel radius 4 sigma = 10 px < halo 16 px

    def blur(x):
        sig = (0,) * (x.ndim - 2) + (sigma, sigma)
        return ndimage.gaussian_filter(x, sigma=sig, mode="mirror", truncate=4.0)

    out = run_tiled(data, lambda t, b: blur(t), halo=16)
    ref = blur(data)
    err = np.abs(out - ref)
    scale = np.abs(ref).max()
    # everywhere, including the image border (mirrored on both paths) and tile joins
    assert err.max() < 1e-5 * scale
    # no discontinuity at the tile boundaries: the jump across each tile's edge
    # column is no larger than in the whole-image result
    grid = plan_grid((h, w))
    for x0 in grid.x_starts[1:]:
        jump_out = np.abs(out[0, :, x0] - out[0, :, x0 - 1])
        jump_ref = np.abs(ref[0, :, x0] - ref[0, :, x0 - 1])
        assert np.abs(jump_out - jump_ref).max() < 1e-5 * scale


def test_blur_without_halo_stays_seamless_thanks_to_blending():
    # even with no context halo, the ramps hide the tile edges: the error
    # concentrates where the weights are small and stays far below the signal
    rng = np.random.default_rng(4)
    data = (rng.normal(100, 10, (1, 900, 900))).astype(np.float32)
    data = ndimage.gaussian_filter(data, (0, 3, 3)).astype(np.float32)

    def blur(x):
        return ndimage.gaussian_filter(x, sigma=(0,) * (x.ndim - 2) + (1.5, 1.5), mode="mirror")

    out = run_tiled(data, lambda t, b: blur(t), halo=0, multiple=1)
    ref = blur(data)
    rel = np.abs(out - ref) / np.abs(ref)
    assert rel.max() < 1e-4


def test_tile_function_sees_its_boxes():
    data = _image((1, 800, 800))
    seen = []

    def fn(tiles, boxes):
        for t, b in zip(tiles, boxes):
            seen.append(b)
            core = t[:, b.y0 - b.py0 : b.y1 - b.py0, b.x0 - b.px0 : b.x1 - b.px0]
            np.testing.assert_array_equal(core, data[:, b.y0 : b.y1, b.x0 : b.x1])
        return tiles

    run_tiled(data, fn)
    cover = np.zeros((800, 800), int)
    for b in seen:
        cover[b.y0 : b.y1, b.x0 : b.x1] += 1
    assert cover.min() >= 1


def test_wrong_output_shape_is_reported():
    data = _image((1, 100, 100))
    with pytest.raises(ValueError, match="returned shape"):
        run_tiled(data, lambda t, b: t[:, :, :10, :10])
    with pytest.raises(ValueError, match="expected 2"):
        run_tiled(data, lambda t, b: t, outputs=2)


def test_margin_reads_the_extension_and_returns_the_image():
    data = _image((2, 70, 90), seed=3)
    m = 32
    ext = np.pad(data, ((0, 0), (m, m), (m, m)), mode="constant", constant_values=-1.0)
    ext[:, m:-m, m:-m] = data
    seen = []

    def fn(tiles, boxes):
        seen.append(tiles.copy())
        return tiles * 2.0

    out = run_tiled(ext, fn, margin=m, halo=8)
    assert out.shape == data.shape
    np.testing.assert_allclose(out, 2.0 * data, rtol=1e-6)
    # the context beyond the image came from the extension, not a mirror of the image
    assert np.any(seen[0] == -1.0)
    with pytest.raises(ValueError, match="margin"):
        run_tiled(ext, fn, margin=-1)


@pytest.mark.parametrize("shape", [(4000, 6000), (2822, 4144), (3008, 3008), (1080, 1920), (600, 800), (200, 3000)])
def test_fit_tile_processes_the_fewest_pixels_with_the_blend_kept(shape):
    def processed(tile, overlap):
        boxes = tile_boxes(shape, tile, overlap)
        return len(boxes) * boxes[0].ph * boxes[0].pw

    tile, overlap = fit_tile(shape, 768, 1152, blend=102)
    assert 768 <= tile <= 1152 and tile % 16 == 0
    assert overlap == pytest.approx(102 / tile)
    best = processed(tile, overlap)
    for t in range(768, 1153, 16):  # no edge in the range does better
        assert processed(t, 102 / t) >= best
    # neighbouring tiles share at least the blend (or the axis has one tile)
    for length in shape:
        starts = axis_starts(length, tile, overlap)
        if len(starts) > 1:
            assert np.min(np.diff(starts)) <= tile - 102
    # the 512 px plan with 20 % overlap processes more of a large frame
    if min(shape) >= 2000:
        assert best < 0.8 * processed(512, 0.2)
