"""FITS reading and writing, the integer convention, and CFA debayering."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astrosharp.errors import DataWarning, ImageDataError, ParameterError
from astrosharp.image import Image
from astrosharp.io import SUPPORTED_EXTENSIONS, default_output_path, read_image, write_image
from astrosharp.io.debayer import cfa_masks, debayer_bilinear

SEESTAR = "Light_NGC 7023_10.0s_IRCUT_20240730-224436.fit"


def _real_files(real_dir: Path) -> list[Path]:
    return sorted(p for p in real_dir.iterdir() if p.is_file() and "".join(p.suffixes[-1:]).lower() in SUPPORTED_EXTENSIONS)


def test_every_real_file_reads(real_dir):
    files = _real_files(real_dir)
    assert len(files) >= 10
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)  # CFA and 5-plane notices, tested below
            img = read_image(path)
        assert img.data.dtype == np.float32 and img.channels in (1, 3), path.name
        assert img.source_format == "fits"
        assert np.isfinite(img.data).any(), path.name


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")
def test_sdss_float32_round_trip_keeps_pixels_keywords_and_wcs(real_dir, tmp_path):
    src = real_dir / "reprojected_sdss_g.fits.bz2"
    img = read_image(src)
    assert img.source_dtype == "float32" and img.scale == 1.0
    out = write_image(img, tmp_path / "sdss.fits", history="astrosharp test: nothing done")
    with fits.open(src, memmap=False) as h:
        orig_data, orig_hdr = h[0].data.copy(), h[0].header.copy()
    with fits.open(out, memmap=False) as h:
        data, hdr = h[0].data.copy(), h[0].header.copy()
    assert hdr["BITPIX"] == -32
    assert data.dtype == orig_data.dtype and np.array_equal(data, orig_data, equal_nan=True)
    assert np.array_equal(read_image(out).data.view(np.uint32), img.data.view(np.uint32))
    for key in ("TAI", "RA", "DEC", "SPA", "CTYPE1", "CRVAL1", "CRPIX2"):
        if key in orig_hdr:
            assert hdr[key] == orig_hdr[key], key
    w0, w1 = WCS(orig_hdr), WCS(hdr)
    px = np.array([[10.0, 20.0], [600.0, 400.0]])
    assert np.allclose(w0.all_pix2world(px, 0), w1.all_pix2world(px, 0), rtol=0, atol=1e-12)
    assert "astrosharp test: nothing done" in "".join(str(v) for v in hdr["HISTORY"])


def test_m13_uint16_bzero_convention_and_reversal(real_dir, tmp_path):
    src = real_dir / "M13_blue_0001.fits"
    raw = fits.getdata(src)  # astropy applies BZERO 32768: uint16
    assert raw.dtype == np.uint16
    img = read_image(src)
    assert img.source_dtype == "uint16" and img.scale == 65535.0
    assert 0.0 <= img.data.min() and img.data.max() <= 1.0
    np.testing.assert_array_equal(np.rint(img.data[0] * 65535).astype(np.uint16), raw)

    back = write_image(img, tmp_path / "m13_u16.fits", dtype="uint16")
    hdr = fits.getheader(back)
    assert hdr["BITPIX"] == 16 and hdr["BZERO"] == 32768 and hdr["BSCALE"] == 1
    np.testing.assert_array_equal(fits.getdata(back), raw)  # exactly the original counts
    assert hdr["INSTRUME"] == "Orion SSDSI" and hdr["PEDESTAL"] == -500

    flt = write_image(img, tmp_path / "m13_f32.fits")
    hdr = fits.getheader(flt)
    assert hdr["BITPIX"] == -32 and "BZERO" not in hdr and "BSCALE" not in hdr
    assert "divided by 65535" in " ".join(str(v) for v in hdr["HISTORY"])
    assert read_image(flt).data.tobytes() == img.data.tobytes()


@pytest.mark.parametrize(
    "dtype, vmax",
    [("uint8", 255), ("int16", 32767), ("uint16", 65535), ("int32", 2147483647), ("uint32", 4294967295)],
)
def test_integer_types_divide_by_type_maximum(tmp_path, dtype, vmax):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    raw = rng.integers(max(info.min, -1000), min(info.max, 4000), size=(20, 24), endpoint=True).astype(dtype)
    raw[0, 0] = info.max
    path = tmp_path / f"{dtype}.fits"
    fits.PrimaryHDU(raw).writeto(path)
    img = read_image(path)
    assert img.source_dtype == dtype and img.scale == float(vmax)
    assert img.data[0, 0, 0] == pytest.approx(1.0, abs=1e-7)
    np.testing.assert_allclose(img.data[0], raw.astype(np.float64) / vmax, rtol=1e-6, atol=1e-9)


def test_float64_data_is_not_rescaled(tmp_path):
    raw = np.linspace(-5e3, 7e5, 20 * 30).reshape(20, 30)
    path = tmp_path / "f64.fits"
    fits.PrimaryHDU(raw).writeto(path)
    img = read_image(path)
    assert img.source_dtype == "float64" and img.scale == 1.0
    np.testing.assert_array_equal(img.data[0], raw.astype(np.float32))


def test_scaled_integers_are_physical_values(tmp_path):
    stored = np.arange(20 * 20, dtype=np.int16).reshape(20, 20)
    hdu = fits.PrimaryHDU(stored)
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 100.0
    path = tmp_path / "scaled.fits"
    fits.HDUList([hdu]).writeto(path)
    img = read_image(path)
    assert img.scale == 1.0
    np.testing.assert_allclose(img.data[0], 100.0 + 0.5 * stored)


def test_rgb_cube_round_trip_and_history(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3, 32, 40)).astype(np.float32)
    img = Image(data)
    img.header["OBJECT"] = "cube"
    out = write_image(img, tmp_path / "rgb.fits", history="astrosharp sharpen: stars 0.25")
    hdr = fits.getheader(out)
    assert (hdr["NAXIS"], hdr["NAXIS1"], hdr["NAXIS2"], hdr["NAXIS3"]) == (3, 40, 32, 3)
    back = read_image(out)
    assert back.data.tobytes() == data.tobytes()
    assert back.header["OBJECT"] == "cube"
    assert "astrosharp sharpen: stars 0.25" in str(back.header["HISTORY"])


@pytest.mark.parametrize("name", ["out.fits.fz", "out.fits.gz", "out.fits.bz2", "out.fts", "out.fit"])
def test_compressed_and_alternative_fits_round_trip(tmp_path, name):
    rng = np.random.default_rng(5)
    data = (rng.random((3, 24, 30)) * 1e4).astype(np.float32)
    data[1, 3, 4] = np.nan
    img = Image(data)
    img.header["TELESCOP"] = "test"
    back = read_image(write_image(img, tmp_path / name))
    assert back.data.tobytes() == data.tobytes()
    assert back.header["TELESCOP"] == "test"


def test_reads_tile_compressed_integer_fz_written_by_astropy(tmp_path):
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 65535, size=(40, 50), endpoint=True).astype(np.uint16)
    comp = fits.CompImageHDU(raw, compression_type="RICE_1")
    comp.header["FILTER"] = "Ha"
    path = tmp_path / "frame.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path)
    img = read_image(path)
    assert img.source_dtype == "uint16" and img.header["FILTER"] == "Ha"
    np.testing.assert_array_equal(np.rint(img.data[0] * 65535).astype(np.uint16), raw)


def test_five_plane_cube_uses_plane_zero_with_advice_or_chosen_planes(real_dir):
    src = real_dir / "Cut_HSC1.fits"
    cube = fits.getdata(src)
    with pytest.warns(DataWarning, match=r"5 image planes.*using plane 0.*planes="):
        img = read_image(src)
    np.testing.assert_array_equal(img.data[0], cube[0].astype(np.float32))
    irg = read_image(src, planes=(2, 1, 0))
    assert irg.shape == (3, 50, 50)
    np.testing.assert_array_equal(irg.data, cube[[2, 1, 0]].astype(np.float32))
    with pytest.raises(ParameterError, match=r"has 5 planes.*\[7\] do not exist"):
        read_image(src, planes=(7,))
    with pytest.raises(ParameterError, match="1 \\(mono\\) or 3 \\(RGB\\)"):
        read_image(src, planes=(0, 1))


def test_default_output_path():
    assert default_output_path("/d/m13.fits") == Path("/d/m13_astrosharp.fits")
    assert default_output_path("/d/a.b.FIT") == Path("/d/a.b_astrosharp.FIT")
    assert default_output_path("/d/x.xisf") == Path("/d/x_astrosharp.xisf")
    assert default_output_path("x.tiff") == Path("x_astrosharp.tiff")
    assert default_output_path("/d/sdss.fits.bz2") == Path("/d/sdss_astrosharp.fits")
    assert default_output_path("/d/m31.fit.fz") == Path("/d/m31_astrosharp.fit")
    assert default_output_path("/d/m31.fz") == Path("/d/m31_astrosharp.fits")
    assert default_output_path("/d/img.gz") == Path("/d/img_astrosharp.fits")


# ----------------------------------------------------------------- CFA


def test_seestar_frame_is_debayered_with_notice(real_dir):
    src = real_dir / SEESTAR
    raw = fits.getdata(src).astype(np.float64) / 65535
    with pytest.warns(DataWarning, match=r"colour-filter-array frame \(BAYERPAT GRBG\): debayered"):
        img = read_image(src)
    assert img.shape == (3, 1920, 1080)
    assert "BAYERPAT" not in img.header
    assert "debayered GRBG" in str(img.header["HISTORY"])
    # known samples are kept exactly: G at (0,0) and (1,1), R at (0,1), B at (1,0) in stored order
    np.testing.assert_allclose(img.data[1, 0::2, 0::2], raw[0::2, 0::2], rtol=1e-6)
    np.testing.assert_allclose(img.data[1, 1::2, 1::2], raw[1::2, 1::2], rtol=1e-6)
    np.testing.assert_allclose(img.data[0, 0::2, 1::2], raw[0::2, 1::2], rtol=1e-6)
    np.testing.assert_allclose(img.data[2, 1::2, 0::2], raw[1::2, 0::2], rtol=1e-6)
    # the two green sites agree on the sky level, which is what GRBG in stored order means
    g1, g2 = np.median(raw[0::2, 0::2]), np.median(raw[1::2, 1::2])
    r, b = np.median(raw[0::2, 1::2]), np.median(raw[1::2, 0::2])
    assert abs(g1 - g2) < 0.2 * min(abs(g1 - r), abs(g1 - b))


def test_cfa_refused_when_debayer_false(real_dir):
    with pytest.raises(ImageDataError, match=r"raw colour-filter-array frame \(BAYERPAT GRBG\); debayer it"):
        read_image(real_dir / SEESTAR, debayer=False)


def test_debayer_written_output_is_not_debayered_twice(real_dir, tmp_path):
    with pytest.warns(DataWarning):
        img = read_image(real_dir / SEESTAR)
    sub = img.with_data(img.data[:, :64, :48])
    out = write_image(sub, tmp_path / "rgb.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        back = read_image(out)
    assert back.shape == (3, 64, 48)


def _mosaic(rgb: np.ndarray, pattern: str, xo: int = 0, yo: int = 0) -> np.ndarray:
    masks = cfa_masks(rgb.shape[1:], pattern, xo, yo)
    return (rgb * masks).sum(axis=0)


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_debayer_recovers_flat_colours_everywhere_and_ramps_inside(pattern):
    h, w = 21, 26  # odd sizes exercise the edges
    flat = np.stack([np.full((h, w), v) for v in (0.2, 0.5, 0.8)])
    out = debayer_bilinear(_mosaic(flat, pattern), pattern)
    np.testing.assert_allclose(out, flat, rtol=1e-6)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.stack([0.01 * xx + 0.02 * yy, 0.5 + 0.03 * xx, 1.0 - 0.01 * yy])
    out = debayer_bilinear(_mosaic(ramp, pattern), pattern)
    np.testing.assert_allclose(out[:, 1:-1, 1:-1], ramp[:, 1:-1, 1:-1], rtol=1e-5, atol=1e-6)


def test_bayer_offsets_and_bottom_up_row_order(tmp_path):
    rng = np.random.default_rng(9)
    h, w = 24, 32
    flat = np.stack([np.full((h, w), v, dtype=np.float32) for v in (0.1, 0.4, 0.9)])
    flat *= 1 + 0.01 * rng.random((1, h, w)).astype(np.float32)
    # RGGB shifted by one column is GRBG
    np.testing.assert_array_equal(cfa_masks((h, w), "RGGB", x_offset=1), cfa_masks((h, w), "GRBG"))
    mosaic = (_mosaic(flat, "GRBG") * 65535).round().astype(np.uint16)
    for keys, stored in (
        ({"BAYERPAT": "RGGB", "XBAYROFF": 1}, mosaic),
        ({"BAYERPAT": "GRBG", "ROWORDER": "BOTTOM-UP"}, mosaic[::-1]),
    ):
        hdu = fits.PrimaryHDU(stored)
        for k, v in keys.items():
            hdu.header[k] = v
        path = tmp_path / "cfa.fits"
        hdu.writeto(path, overwrite=True)
        with pytest.warns(DataWarning, match="debayered"):
            img = read_image(path)
        expect = flat if stored is mosaic else flat[:, ::-1]
        np.testing.assert_allclose(img.data, expect, rtol=0.02)
        assert "XBAYROFF" not in img.header


def test_unknown_cfa_pattern_refused(tmp_path):
    hdu = fits.PrimaryHDU(np.zeros((20, 20), np.uint16))
    hdu.header["BAYERPAT"] = "CYMK"
    path = tmp_path / "cmyk.fits"
    hdu.writeto(path)
    with pytest.raises(ImageDataError, match="CYMK.*cannot debayer"):
        read_image(path)


def test_blank_integer_pixels_become_nan_and_keep_the_integer_convention(tmp_path):
    stored = (np.arange(400, dtype=np.int16).reshape(20, 20) - 100)
    for bzero, vmax, dtype in ((0, 32767, "int16"), (32768, 65535, "uint16")):
        hdu = fits.PrimaryHDU(stored)
        if bzero:
            hdu.header["BZERO"] = bzero
            hdu.header["BSCALE"] = 1
        hdu.header["BLANK"] = -100
        path = tmp_path / f"blank{bzero}.fits"
        fits.HDUList([hdu]).writeto(path, output_verify="ignore")
        img = read_image(path)
        assert img.source_dtype == dtype and img.scale == vmax
        assert np.isnan(img.data[0, 0, 0]) and np.isfinite(img.data[0, 0, 1:]).all()
        np.testing.assert_allclose(img.data[0, 0, 1:4] * vmax, bzero + np.array([-99, -98, -97]), rtol=1e-6)
