"""The shipped network through ONNX Runtime: loading, checksum, translate()."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from astrosharp.errors import ModelError, ParameterError
from astrosharp.nn import Model, choose_providers, default_model_path
from astrosharp.params import SharpenParams
from astrosharp.psf.moffat import moffat_kernel

BG, SIGMA = 0.02, 1e-3


@pytest.fixture(scope="module")
def model():
    return Model.load(threads=2)


def _maps(b, c, h, w, fwhm=4.0, beta=3.0):
    m = np.zeros((b, c, 6, h, w), np.float32)
    m[:, :, 0], m[:, :, 1] = fwhm, beta
    return m


def _star_tile(flux, fwhm, size=64, channels=1, seed=0, shift=(0.3, -0.2)):
    rng = np.random.default_rng(seed)
    k = moffat_kernel(fwhm, 3.0, size=size - 1, shift=shift)
    img = np.full((1, channels, size, size), BG, np.float64)
    img[0, :, : size - 1, : size - 1] += flux * k
    img += SIGMA * rng.standard_normal(img.shape)
    return img.astype(np.float32)


def test_provider_choice():
    avail = ["AzureExecutionProvider", "CPUExecutionProvider", "CUDAExecutionProvider"]
    assert choose_providers(avail) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(avail, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ModelError, match="not available"):
        choose_providers(["CPUExecutionProvider"], ["CUDAExecutionProvider"])


def test_shipped_model_and_manifest(model):
    man = json.loads(default_model_path().read_text())
    assert model.manifest["sha256"] == man["sha256"]
    assert "CPUExecutionProvider" in model.providers
    assert man["normalisation"]["n_inputs"] == len(man["inputs"]["channels"])
    assert man["training"]["steps"] > 0 and man["validation"]


def test_nothing_written_under_home(tmp_path):
    """ONNX Runtime writes a telemetry store under HOME when imported, unless
    told not to; loading and running the model must leave HOME empty."""
    code = (
        "import numpy as np\n"
        "from astrosharp.nn import Model\n"
        "from astrosharp.params import SharpenParams\n"
        "m = Model.load(threads=1)\n"
        "maps = np.zeros((1, 1, 6, 32, 32), np.float32); maps[:, :, 0] = 3; maps[:, :, 1] = 3\n"
        "m.translate(np.full((1, 1, 32, 32), 0.02, np.float32), 0.02, 1e-3, None, maps, SharpenParams())\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=True, timeout=120)
    assert [p.name for p in home.rglob("*")] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_damaged_or_missing_weights(tmp_path):
    src = default_model_path()
    shutil.copy(src, tmp_path / src.name)
    onnx_name = json.loads(src.read_text())["file"]
    data = bytearray((src.parent / onnx_name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / onnx_name).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="do not match"):
        Model.load(tmp_path / src.name)
    (tmp_path / onnx_name).unlink()
    with pytest.raises(ModelError, match="not found"):
        Model.load(tmp_path / src.name)
    with pytest.raises(ModelError, match="not found"):
        Model.load(tmp_path / "nothing.json")


@pytest.mark.parametrize("channels", [1, 3])
def test_translate_shapes(model, channels):
    tiles = np.concatenate([_star_tile(2.0, 3.0, size=48, channels=channels, seed=s) for s in range(2)])
    bg = np.full(channels, BG)
    sg = np.full(channels, SIGMA)
    stars, ns = model.translate(tiles, bg, sg, np.full(channels, 1.0), _maps(2, channels, 48, 48), SharpenParams())
    assert stars.shape == ns.shape == tiles.shape and stars.dtype == np.float32
    assert np.isfinite(stars).all() and np.isfinite(ns).all()


def test_bad_input_is_refused(model):
    tiles = np.full((1, 1, 32, 32), np.nan, np.float32)
    with pytest.raises(ParameterError, match="NaN"):
        model.translate(tiles, BG, SIGMA, None, _maps(1, 1, 32, 32), SharpenParams())


def test_flat_image_stays_flat(model):
    """A noise-free flat background comes out flat, with an empty stars layer."""
    tiles = np.full((1, 3, 64, 64), BG, np.float32)
    stars, ns = model.translate(tiles, np.full(3, BG), np.full(3, SIGMA), None, _maps(1, 3, 64, 64),
                                SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5))
    total = stars + ns
    assert np.abs(total - BG).max() < 0.5 * SIGMA
    assert np.abs(stars).max() < 0.5 * SIGMA


def test_isolated_star_keeps_its_flux(model):
    """Sharpen stars 1.0: the total flux of an isolated star (aperture of
    radius 12 px around it, background subtracted) is kept within 7 % by the
    network alone. This star measured +4.9 % with the model of step 31653,
    +6.1 % with that of step 39653 and +5.9 % with that of step 47653; the
    pipeline's flux conservation (astrosharp.flux, tests/test_flux.py) takes
    such errors out afterwards."""
    flux = 2.0  # peak about 200 sigma for a 4 px FWHM
    tile = _star_tile(flux, 4.0, size=64)
    stars, ns = model.translate(tile, BG, SIGMA, None, _maps(1, 1, 64, 64, fwhm=4.0),
                                SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5))
    yy, xx = np.mgrid[0:64, 0:64]
    ap = np.hypot(yy - 31.3, xx - 30.8) < 12
    f_in = float((tile[0, 0] - BG)[ap].sum())
    f_out = float((stars[0, 0] + ns[0, 0] - BG)[ap].sum())
    assert f_out == pytest.approx(f_in, rel=0.07)
    assert float(stars[0, 0][ap].sum()) > 0.7 * f_in  # most of it in the stars layer


def test_more_orientations_make_rounder_stars(model):
    """The network adds a small elongation of its own to the stars it
    sharpens, the same for every star; run in four orientations (rotations by
    90 degrees negate e1 and e2) and averaged, it cancels. 16 round Moffat
    stars of 4 px FWHM, peak about 800 sigma, sharpen stars 1."""
    from astrosharp.bench.metrics import fit_star_shapes

    rng = np.random.default_rng(5)
    size, f = 128, 4.0
    g = np.arange(20, size - 19, 29, dtype=float)
    ys, xs = (a.ravel() + rng.uniform(-0.5, 0.5, a.size) for a in np.meshgrid(g, g, indexing="ij"))
    img = np.full((size, size), BG)
    for x, y in zip(xs, ys):
        k = moffat_kernel(f, 3.0, size=41, shift=(y - round(y), x - round(x)))
        img[int(round(y)) - 20:int(round(y)) + 21, int(round(x)) - 20:int(round(x)) + 21] += 20.0 * k
    img = (img + SIGMA * rng.standard_normal(img.shape)).astype(np.float32)[None, None]
    maps = _maps(1, 1, size, size, fwhm=f)
    out = {}
    for n in (1, 4):
        st, ns = model.translate(img, BG, SIGMA, None, maps, SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5,
                                                                            orientations=n))
        out[n] = (st + ns)[0, 0]
    e = {n: np.median(fit_star_shapes(o, xs, ys, f / 2, SIGMA)["ellipticity"]) for n, o in out.items()}
    fw = {n: np.median(fit_star_shapes(o, xs, ys, f / 2, SIGMA)["fwhm"]) for n, o in out.items()}
    assert e[4] < 0.75 * e[1]  # model of step 47653: 0.034 -> 0.021
    assert fw[4] == pytest.approx(fw[1], rel=0.03)  # as sharp
    assert float((out[4] - BG).sum()) == pytest.approx(float((out[1] - BG).sum()), rel=0.01)  # as bright
