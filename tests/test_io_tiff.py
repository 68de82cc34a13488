"""TIFF: 32-bit float and 16-bit integer, mono and RGB."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from astrosharp.errors import DataWarning
from astrosharp.image import Image
from astrosharp.io import read_image, write_image


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_float32_round_trip_bit_exact(tmp_path, channels, compression):
    rng = np.random.default_rng(channels)
    data = rng.normal(0.1, 0.05, size=(channels, 30, 44)).astype(np.float32)
    data[0, 2, 3] = np.nan
    img = Image(data)
    img.header["OBJECT"] = "IC 1396"
    img.header["EXPTIME"] = 180.0
    out = write_image(img, tmp_path / "f.tif", compression=compression, history="astrosharp test")
    back = read_image(out)
    assert back.source_format == "tiff" and back.source_dtype == "float32"
    assert back.data.tobytes() == data.tobytes()
    assert back.header["OBJECT"] == "IC 1396" and back.header["EXPTIME"] == 180.0
    assert "astrosharp test" in str(back.header["HISTORY"])
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.dtype == np.float32
        if channels == 3:
            assert page.photometric == tifffile.PHOTOMETRIC.RGB
            assert page.planarconfig == tifffile.PLANARCONFIG.CONTIG  # interleaved
            assert page.shape == (30, 44, 3)


@pytest.mark.parametrize("channels", [1, 3])
def test_uint16_written_by_tifffile_reads_and_round_trips(tmp_path, channels):
    rng = np.random.default_rng(10 + channels)
    shape = (28, 36, 3) if channels == 3 else (28, 36)
    raw = rng.integers(0, 65535, size=shape, endpoint=True).astype(np.uint16)
    src = tmp_path / "u16.tiff"
    tifffile.imwrite(src, raw, photometric="rgb" if channels == 3 else "minisblack")
    img = read_image(src)
    assert img.source_dtype == "uint16" and img.scale == 65535.0 and img.channels == channels
    chw = np.moveaxis(raw, -1, 0) if channels == 3 else raw[None]
    np.testing.assert_array_equal(np.rint(img.data * 65535), chw)
    out = write_image(img, tmp_path / "back.tiff", dtype="uint16")
    np.testing.assert_array_equal(tifffile.imread(out), raw)


def test_planar_rgb_and_uint8(tmp_path):
    rgb = np.stack([np.full((20, 24), v, np.uint8) for v in (0, 128, 255)])
    src = tmp_path / "planar.tif"
    tifffile.imwrite(src, rgb, photometric="rgb", planarconfig="separate")
    img = read_image(src)
    assert img.shape == (3, 20, 24)
    np.testing.assert_allclose(img.data[:, 0, 0], [0.0, 128 / 255, 1.0], rtol=1e-6)


def test_rgba_alpha_dropped_with_warning(tmp_path):
    rgba = np.zeros((20, 24, 4), np.uint16)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 100, 200, 300, 65535
    src = tmp_path / "rgba.tif"
    tifffile.imwrite(src, rgba, photometric="rgb", extrasamples=["unassalpha"])
    with pytest.warns(DataWarning, match=r"alpha \(transparency\) channel dropped"):
        img = read_image(src)
    assert img.shape == (3, 20, 24)
    np.testing.assert_allclose(img.data[:, 5, 5] * 65535, [100, 200, 300], rtol=1e-6)


def test_foreign_description_and_tags_kept(tmp_path):
    src = tmp_path / "foreign.tif"
    tifffile.imwrite(
        src, np.ones((20, 20), np.float32), description="stacked in X", metadata=None, software="Stacker 1.0",
        resolution=(300, 300),
    )
    img = read_image(src)
    assert img.properties["tiff:ImageDescription"] == "stacked in X"
    out = write_image(img, tmp_path / "out.tif")
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.description == "stacked in X"
        assert page.software == "astrosharp (from Stacker 1.0)"
        assert page.tags["XResolution"].value == (300, 1)
