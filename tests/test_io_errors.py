"""Bad input and careful output: each case gets a clear message or a documented treatment."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from astropy.io import fits

from astrosharp.errors import (
    AstrosharpError,
    DataWarning,
    ImageDataError,
    ImageFormatError,
    OutputExistsError,
    ParameterError,
)
from astrosharp.image import Image
from astrosharp.io import default_output_path, read_image, write_image


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fits_file(path: Path, shape=(32, 40)) -> Path:
    fits.PrimaryHDU(np.arange(np.prod(shape), dtype=np.float32).reshape(shape)).writeto(path)
    return path


# ----------------------------------------------------------------- not an image


@pytest.mark.parametrize(
    "name, message",
    [
        ("notes.fits", r"notes.fits is not a readable FITS file"),
        ("notes.xisf", r"notes.xisf is not an XISF file \(it lacks the XISF0100 signature\)"),
        ("notes.tif", r"notes.tif is not a readable TIFF file"),
    ],
)
def test_text_file_with_image_extension(tmp_path, name, message):
    path = tmp_path / name
    path.write_text("observing log: clouds all night\n" * 10)
    with pytest.raises(ImageFormatError, match=message):
        read_image(path)


def test_truncated_fits(tmp_path):
    full = _fits_file(tmp_path / "full.fits", (200, 200)).read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(ImageFormatError, match="cut.fits is truncated"):
        read_image(cut)
    head_only = tmp_path / "head.fits"
    head_only.write_bytes(full[:1000])
    with pytest.raises(ImageFormatError, match="head.fits is not a readable FITS file"):
        read_image(head_only)


def test_truncated_xisf(tmp_path):
    out = write_image(Image(np.ones((1, 64, 64), np.float32)), tmp_path / "full.xisf")
    full = out.read_bytes()
    cut = tmp_path / "cut.xisf"
    cut.write_bytes(full[: len(full) - 100])
    with pytest.raises(ImageFormatError, match=r"cut.xisf is truncated: a data block ends at byte \d+ but the file has \d+ bytes"):
        read_image(cut)
    cut.write_bytes(full[:200])
    with pytest.raises(ImageFormatError, match="cut.xisf is truncated: its XML header needs"):
        read_image(cut)


def test_truncated_tiff(tmp_path):
    src = tmp_path / "full.tif"
    tifffile.imwrite(src, np.ones((64, 64), np.float32))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(src.read_bytes()[:100])
    with pytest.raises(ImageFormatError, match="cut.tif is not a readable TIFF file"):
        read_image(cut)


def test_unknown_extension(tmp_path):
    path = tmp_path / "m31.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(ImageFormatError, match=r"m31.png has unknown image file extension '.png'; astrosharp reads and writes .fit, .fits.*\.xisf, .tif, .tiff"):
        read_image(path)
    with pytest.raises(ImageFormatError, match="unknown image file extension '.jpg'"):
        write_image(Image(np.zeros((1, 20, 20), np.float32)), tmp_path / "out.jpg")
    with pytest.raises(ImageFormatError, match="has no file extension"):
        default_output_path(tmp_path / "README")


def test_missing_file(tmp_path):
    with pytest.raises(ImageFormatError, match=r"no such file: .*ghost.fits"):
        read_image(tmp_path / "ghost.fits")


def test_one_dimensional_data(tmp_path):
    path = tmp_path / "spectrum.fits"
    fits.PrimaryHDU(np.linspace(0, 1, 500)).writeto(path)
    with pytest.raises(ImageDataError, match=r"spectrum.fits holds 1-D data \(500 values\), not an image"):
        read_image(path)


def test_image_under_16_px(tmp_path):
    path = _fits_file(tmp_path / "tiny.fits", (12, 40))
    with pytest.raises(ImageDataError, match="tiny.fits: image is 40x12 px; astrosharp needs at least 16 px on each side"):
        read_image(path)


def test_fits_without_image_data(tmp_path):
    path = tmp_path / "table.fits"
    table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="E", array=np.ones(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(ImageFormatError, match="table.fits holds no image data"):
        read_image(path)


def test_degenerate_axes_squeezed(tmp_path):
    path = tmp_path / "4d.fits"
    fits.PrimaryHDU(np.ones((1, 3, 20, 24), np.float32)).writeto(path)
    assert read_image(path).shape == (3, 20, 24)


def test_nan_and_inf_kept_on_read(tmp_path):
    data = np.ones((20, 20), np.float32)
    data[3, 4], data[5, 6], data[7, 8] = np.nan, np.inf, -np.inf
    path = tmp_path / "bad_pixels.fits"
    fits.PrimaryHDU(data).writeto(path)
    img = read_image(path)
    assert np.isnan(img.data[0, 3, 4]) and img.data[0, 5, 6] == np.inf and img.data[0, 7, 8] == -np.inf


def test_negative_and_constant_float_data_unchanged(tmp_path):
    for name, data in (("neg.fits", np.full((20, 20), -3.5, np.float32)), ("zero.fits", np.zeros((20, 20), np.float32))):
        fits.PrimaryHDU(data).writeto(tmp_path / name)
        img = read_image(tmp_path / name)
        np.testing.assert_array_equal(img.data[0], data)


# ----------------------------------------------------------------- output


def test_missing_output_folder(tmp_path):
    folder = tmp_path / "no" / "such"
    with pytest.raises(AstrosharpError, match=re.escape(f"output folder {folder} does not exist")):
        write_image(Image(np.zeros((1, 20, 20), np.float32)), folder / "out.fits")


def test_existing_output_needs_overwrite(tmp_path):
    img = Image(np.zeros((1, 20, 20), np.float32))
    out = write_image(img, tmp_path / "out.xisf")
    before = _sha256(out)
    with pytest.raises(OutputExistsError, match=r"out.xisf already exists; pass overwrite=True \(--overwrite\)"):
        write_image(img.with_data(np.ones((1, 20, 20), np.float32)), out)
    assert _sha256(out) == before
    write_image(img.with_data(np.ones((1, 20, 20), np.float32)), out, overwrite=True)
    assert read_image(out).data.min() == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xisf"]  # no temporary files left


def test_input_never_modified(real_dir, tmp_path):
    src = tmp_path / "m13.fits"
    src.write_bytes((real_dir / "M13_blue_0001.fits").read_bytes())
    before = _sha256(src)
    img = read_image(src)
    out = write_image(img.with_data(img.data * 0.5), default_output_path(src))
    assert out == tmp_path / "m13_astrosharp.fits"
    assert _sha256(src) == before
    with pytest.raises(AstrosharpError, match="is the input file; astrosharp never modifies its input"):
        write_image(img, src, overwrite=True)
    assert _sha256(src) == before


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    import astrosharp.io.fits as fits_mod

    def broken(handle, *args, **kwargs):
        handle.write(b"partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(fits_mod, "write_fits", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_image(Image(np.zeros((1, 20, 20), np.float32)), tmp_path / "out.fits")
    assert list(tmp_path.iterdir()) == []


def test_integer_output_clips_with_warning(tmp_path):
    data = np.linspace(-0.5, 1.5, 400, dtype=np.float32).reshape(1, 20, 20)
    data[0, 0, 0] = np.nan
    with pytest.warns(DataWarning, match=r"writing uint16: \d+ samples below 0 and \d+ above 1 were clipped, 1 NaN/Inf"):
        out = write_image(Image(data), tmp_path / "u16.fits", dtype="uint16")
    stored = fits.getdata(out)
    assert stored.dtype == np.uint16 and stored.min() == 0 and stored.max() == 65535
    inside = (data[0] >= 0) & (data[0] <= 1)
    np.testing.assert_array_equal(stored[inside], np.rint(data[0][inside].astype(np.float64) * 65535))


def test_float_output_never_clipped(tmp_path):
    data = np.linspace(-0.5, 1e6, 400, dtype=np.float32).reshape(1, 20, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        out = write_image(Image(data), tmp_path / "f.fits")
    np.testing.assert_array_equal(fits.getdata(out), data[0])


def test_unknown_output_dtype(tmp_path):
    with pytest.raises(ParameterError, match=r"output dtype 'int8' is not supported; choose one of float32"):
        write_image(Image(np.zeros((1, 20, 20), np.float32)), tmp_path / "x.fits", dtype="int8")
