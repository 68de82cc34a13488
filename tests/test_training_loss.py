"""Training loss terms (training.loss)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.loss import centroid_term, noise_scaled_term, total_loss  # noqa: E402


def _star(x0, y0, flux=5000.0, size=32, sigma=1.2):
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    g = torch.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    return (flux * g / g.sum())[None, None]


def test_centroid_term_grows_with_the_shift_and_ignores_flux_scaling():
    t = _star(15.3, 16.1)
    costs = [float(centroid_term(_star(15.3 + d, 16.1), t)) for d in (0.0, 0.05, 0.1, 0.2)]
    assert costs[0] == 0.0
    assert costs[1] < costs[2] < costs[3]
    assert costs[3] == pytest.approx(2 * costs[2], rel=0.15)  # about linear in the shift
    # a 2 % brighter star at the right place costs far less than 0.1 px off
    assert float(centroid_term(1.02 * t, t)) < 0.5 * costs[2]


def test_centroid_term_hardly_counts_noise():
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.normal(0, 1, (1, 1, 32, 32)))
    t = _star(15.3, 16.1)
    # 0.3 sigma of residual noise over the patch costs less than one 5000 sigma-px star 0.05 px off
    assert float(centroid_term(t + 0.3 * noise, t)) < float(centroid_term(_star(15.35, 16.1), t))


def test_total_loss_adds_the_centroid_term_only_when_weighted():
    from astrosharp.nn.inputs import FAINT_SCALE

    t = torch.zeros(1, 6, 32, 32, dtype=torch.float64)
    o = t.clone()
    t[:, :3] = torch.asinh(_star(15.3, 16.1)[0] / FAINT_SCALE)
    o[:, :3] = torch.asinh(_star(15.5, 16.1)[0] / FAINT_SCALE)
    base, parts = total_loss(o, t)
    weighted, _ = total_loss(o, t, centroid_weight=2.0)
    assert parts["l_centroid"] > 0
    assert float(weighted - base) == pytest.approx(2.0 * parts["l_centroid"], rel=1e-5)


def test_nonstellar_term_counts_errors_on_bright_nebulosity():
    # one sigma too much on nebulosity of 300 sigma, or on the bare background:
    # the faint domain (l_u) all but ignores the first; the mid domain does not
    from astrosharp.nn.inputs import FAINT_SCALE

    def cost(level):
        t = torch.zeros(1, 6, 16, 16, dtype=torch.float64)
        t[:, 3:] = torch.asinh(torch.tensor(level / FAINT_SCALE))
        o = t.clone()
        o[:, 3:] = torch.asinh(torch.tensor((level + 1.0) / FAINT_SCALE))
        return total_loss(o, t)[1]

    bright, faint = cost(300.0), cost(0.0)
    assert bright["l_u"] < 0.02 * faint["l_u"]
    assert bright["l_nonstellar"] > 0.05 * faint["l_nonstellar"] > 0
    # the mid domain's slope at 300 sigma: 1 / (30 sqrt(1 + 100)) per sigma (Charbonnier eps 1e-3)
    assert bright["l_nonstellar"] == pytest.approx(1.0 / (30.0 * np.sqrt(101.0)), rel=0.05)


def test_total_loss_adds_the_nonstellar_term_only_when_weighted():
    t = torch.zeros(1, 6, 16, 16, dtype=torch.float64)
    t[:, 3:] = 3.0
    o = t + 0.01
    base, parts = total_loss(o, t)
    weighted, _ = total_loss(o, t, nonstellar_weight=5.0)
    assert parts["l_nonstellar"] > 0
    assert float(weighted - base) == pytest.approx(5.0 * parts["l_nonstellar"], rel=1e-5)


def test_linear_term_counts_errors_as_the_photon_noise_does():
    # one sigma too much costs 1 on the bare background and 1 / sqrt(1 + 300 / 30)
    # on nebulosity of 300 sigma, where the faint domain makes it cost about 0.003
    def cost(level):
        t = torch.full((1, 3, 16, 16), level, dtype=torch.float64)
        return float(noise_scaled_term(t + 1.0, t))

    assert cost(0.0) == pytest.approx(1.0, rel=1e-4)
    assert cost(300.0) == pytest.approx(1.0 / np.sqrt(11.0), rel=1e-4)
    assert cost(-300.0) == pytest.approx(cost(300.0))  # a negative target is no excuse
    # in total_loss it is taken on the sum of the layers, and added only when weighted
    from astrosharp.nn.inputs import FAINT_SCALE

    t = torch.zeros(1, 6, 16, 16, dtype=torch.float64)
    t[:, 3:] = torch.asinh(torch.tensor(300.0 / FAINT_SCALE))
    o = t.clone()
    o[:, :3] = torch.asinh(torch.tensor(1.0 / FAINT_SCALE))  # the extra sigma in the stars layer
    base, parts = total_loss(o, t)
    weighted, _ = total_loss(o, t, linear_weight=0.25)
    assert parts["l_linear"] == pytest.approx(1.0 / np.sqrt(11.0), rel=1e-3)
    assert float(weighted - base) == pytest.approx(0.25 * parts["l_linear"], rel=1e-5)


def test_mirror_edge_pads_like_the_engine():
    """A patch given a frame edge k px inside its left side looks like a tile the engine cut at the image border."""
    from astrosharp.tiles import TileBox, extract_tile
    from training.data import mirror_edge

    rng = np.random.default_rng(3)
    img = rng.normal(size=(2, 40, 50)).astype(np.float32)
    k = 7
    box = TileBox(y0=0, x0=0, y1=40, x1=40, py0=0, px0=-k, ph=40, pw=40, iy=0, ix=0)
    engine = extract_tile(img, box)
    patch = np.concatenate([np.zeros((2, 40, k), np.float32), img[:, :, : 40 - k]], axis=2)
    np.testing.assert_array_equal(mirror_edge(patch, 2, k), engine)
    # the far side and the hold mode
    flipped = mirror_edge(patch[..., ::-1], 3, k)[..., ::-1]
    np.testing.assert_array_equal(flipped, engine)
    held = mirror_edge(patch, 2, k, hold=True)
    assert np.all(held[:, :, :k] == held[:, :, k:k + 1])
    top = mirror_edge(np.swapaxes(patch, 1, 2), 0, k)
    np.testing.assert_array_equal(np.swapaxes(top, 1, 2), engine)
