"""The command line, run in-process through main([...])."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from scipy import signal

from astrosharp import __version__
from astrosharp.cli import main
from astrosharp.psf.moffat import moffat_kernel


def _write_star_fits(path, shape=(160, 200), channels=1, seed=0, nan=False):
    rng = np.random.default_rng(seed)
    h, w = shape
    sky = np.zeros((channels, h, w))
    n = 25
    ys, xs = rng.integers(15, h - 15, n), rng.integers(15, w - 15, n)
    for c in range(channels):
        sky[c, ys, xs] = rng.uniform(0.05, 0.5, n)
    k = moffat_kernel(3.5, 3.0, size=41)
    img = np.stack([signal.fftconvolve(s, k, mode="same") for s in sky]) + 0.02
    img += rng.normal(0, 5e-4, img.shape)
    img = img.astype(np.float32)
    if nan:
        img[0, 3:6, 3:6] = np.nan
    hdr = fits.Header()
    hdr["OBJECT"] = "test field"
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
    hdr["CRVAL1"], hdr["CRVAL2"] = 250.4, 36.46
    hdr["CRPIX1"], hdr["CRPIX2"] = 100.0, 80.0
    hdr["CDELT1"], hdr["CDELT2"] = -0.0003, 0.0003
    fits.PrimaryHDU(img[0] if channels == 1 else img, hdr).writeto(path)
    return path


@pytest.fixture
def star_fits(tmp_path):
    return _write_star_fits(tmp_path / "stars.fits")


def _err_lines(capsys):
    return capsys.readouterr().err.strip().splitlines()


def test_version(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("cmd", [[], ["sharpen"], ["info"], ["psf"], ["bench"], ["demo"]])
def test_help_for_each_command(cmd, capsys):
    assert main([*cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: astrosharp")
    if cmd == ["sharpen"]:
        for opt in ("--sharpen-stars", "--adjust-halos", "--psf-diameter", "--sharpen-nonstellar",
                    "--correct-only", "--correct-first", "--nonstellar-then-stellar", "--denoise",
                    "--method", "--starless", "--stars-only", "--overwrite", "--output-type", "--quiet"):
            assert opt in out


def test_usage_errors_exit_2(capsys, star_fits):
    assert main([]) == 2
    assert main(["sharpen", str(star_fits), "--no-such-option"]) == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err
    assert main(["sharpen", str(star_fits), "--psf-diameter", "wide"]) == 2
    assert "expected 'auto' or a number of pixels" in capsys.readouterr().err
    assert main(["sharpen", str(star_fits), "--method", "magic"]) == 2
    assert main(["frobnicate"]) == 2


def test_missing_input_is_one_clear_sentence(tmp_path, capsys):
    assert main(["sharpen", str(tmp_path / "nope.fits")]) == 1
    err = _err_lines(capsys)
    assert err == [f"astrosharp: error: input file {tmp_path / 'nope.fits'} does not exist"]
    assert main(["info", str(tmp_path / "nope.fits")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_psf_diameter_over_8_is_refused_with_binning_advice(star_fits, capsys):
    assert main(["sharpen", str(star_fits), "--psf-diameter", "9"]) == 1
    (line,) = _err_lines(capsys)
    assert line.startswith("astrosharp: error: psf_diameter 9 px is larger than 8 px")
    assert "bin the image 2x2" in line
    assert "Traceback" not in line


@pytest.mark.parametrize(
    "opt, match",
    [
        (["--sharpen-stars", "1.5"], "sharpen_stars must be from 0 to 1, got 1.5"),
        (["--adjust-halos", "-0.7"], "adjust_halos must be from -0.5 to 0.5"),
        (["--denoise", "2"], "denoise must be from 0 to 1"),
        (["--correct-only", "--correct-first"], "correct_only cannot be combined"),
    ],
)
def test_out_of_range_controls_exit_1(star_fits, capsys, opt, match):
    assert main(["sharpen", str(star_fits), *opt]) == 1
    assert match in capsys.readouterr().err


def test_not_an_image_and_unknown_extension(tmp_path, capsys):
    bad = tmp_path / "notes.fits"
    bad.write_text("this is not a FITS file\n")
    assert main(["info", str(bad)]) == 1
    (line,) = _err_lines(capsys)
    assert line.startswith("astrosharp: error:") and "notes.fits" in line
    other = tmp_path / "photo.jpg"
    other.write_bytes(b"\xff\xd8\xff")
    assert main(["info", str(other)]) == 1
    (line,) = _err_lines(capsys)
    assert ".jpg" in line


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        main(["sharpen", str(tmp_path / "nope.fits"), "--debug"])


def test_info_prints_shape_range_background_noise(star_fits, capsys):
    assert main(["info", str(star_fits)]) == 0
    out = capsys.readouterr().out
    assert "200 x 160 px, 1 channel (mono)" in out
    assert "float32" in out
    line = [ln for ln in out.splitlines() if ln.startswith("mono")][0]
    lo, hi, med, bg, noise = (float(v) for v in line.split()[1:])
    assert lo < med < hi
    assert bg == pytest.approx(0.02, abs=3e-4)
    assert noise == pytest.approx(5e-4, rel=0.15)


def test_sharpen_writes_result_with_history_and_keywords(star_fits, capsys):
    out = star_fits.with_name("stars_astrosharp.fits")
    assert main(["sharpen", str(star_fits), "--method", "rl", "--sharpen-stars", "0.5", "--quiet"]) == 0
    assert capsys.readouterr().err == ""  # quiet
    assert out.exists()
    with fits.open(out) as hdul:
        hdr, data = hdul[0].header, hdul[0].data
    with fits.open(star_fits) as hdul:
        src = hdul[0].data
    assert data.shape == src.shape and data.dtype == np.dtype(">f4")
    assert hdr["OBJECT"] == "test field" and hdr["CRVAL1"] == 250.4 and hdr["CTYPE2"] == "DEC--TAN"
    history = " ".join(str(h) for h in hdr["HISTORY"])
    assert "astrosharp" in history and "method=rl" in history and "sharpen_stars=0.5" in history
    assert data.max() > src.max()  # sharper stars have higher peaks
    # never overwritten without --overwrite
    assert main(["sharpen", str(star_fits), "--method", "rl"]) == 1
    (line,) = _err_lines(capsys)
    assert line.startswith("astrosharp: error: output") and "already exists" in line and "--overwrite" in line
    assert main(["sharpen", str(star_fits), "--method", "rl", "--overwrite", "-q"]) == 0


def test_output_is_never_the_input(star_fits, capsys):
    assert main(["sharpen", str(star_fits), "-o", str(star_fits), "--overwrite", "--method", "rl"]) == 1
    assert "is the input file" in capsys.readouterr().err


def test_missing_output_folder(star_fits, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "dir" / "x.fits"
    assert main(["sharpen", str(star_fits), "-o", str(out), "--method", "rl"]) == 1
    (line,) = _err_lines(capsys)
    assert line == f"astrosharp: error: output folder {out.parent} does not exist; create it first or choose another output path"


def test_starless_plus_stars_is_the_result_and_uint16(tmp_path, capsys):
    src = _write_star_fits(tmp_path / "rgb.fits", channels=3, nan=True)
    out, sl, so = tmp_path / "o.fits", tmp_path / "starless.fits", tmp_path / "stars.fits"
    rc = main(["sharpen", str(src), "-o", str(out), "--starless", str(sl), "--stars-only", str(so),
               "--method", "wiener", "--quiet"])
    assert rc == 0
    res, a, b = (fits.getdata(p).astype(np.float32) for p in (out, sl, so))
    assert res.shape == (3, 160, 200)
    np.testing.assert_array_equal(np.isnan(res), np.isnan(fits.getdata(src)))
    np.testing.assert_allclose(a + b, res, rtol=1e-6, atol=1e-7)
    assert "layer" in " ".join(str(h) for h in fits.getheader(sl)["HISTORY"])
    out16 = tmp_path / "o16.fits"
    assert main(["sharpen", str(src), "-o", str(out16), "--output-type", "uint16", "--method", "wiener", "-q"]) == 0
    with fits.open(out16) as hdul:
        assert hdul[0].header["BITPIX"] == 16 and hdul[0].header["BZERO"] == 32768
        d16 = hdul[0].data.astype(np.float64) / 65535
    finite = np.isfinite(res)
    np.testing.assert_allclose(d16[finite], np.clip(res[finite], 0, 1), atol=1.0 / 65535)


def test_warnings_are_one_line_and_quiet_silences_them(tmp_path, capsys):
    data = np.full((40, 40), 0.5, np.float32)
    src = tmp_path / "flat.fits"
    fits.PrimaryHDU(data).writeto(src)
    assert main(["sharpen", str(src), "--method", "rl"]) == 0
    err = capsys.readouterr().err
    assert "astrosharp: warning: the image is constant" in err
    assert "Traceback" not in err and "warnings.warn" not in err
    assert main(["sharpen", str(src), "--method", "rl", "--overwrite", "-q"]) == 0
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------
# the real images of ../shared/data/real (the bars)
# ---------------------------------------------------------------------------

_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "BZERO", "BSCALE",
               "HISTORY", "COMMENT", ""}


def _assert_keywords_and_wcs_kept(src_hdr, out_hdr):
    from astropy.wcs import WCS

    for key in src_hdr:
        if key in _STRUCTURAL:
            continue
        assert key in out_hdr, f"keyword {key} lost"
        assert out_hdr[key] == src_hdr[key], f"keyword {key} changed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated keywords of the source file (RADECSYS)
        w0, w1 = WCS(src_hdr, naxis=2), WCS(out_hdr, naxis=2)
    np.testing.assert_allclose(w1.wcs.crval, w0.wcs.crval)
    np.testing.assert_allclose(w1.pixel_to_world_values(10.0, 20.0), w0.pixel_to_world_values(10.0, 20.0))


@pytest.mark.parametrize("name, method, otype", [
    ("reprojected_sdss_r.fits.bz2", "rl", "float32"),
    ("M13_blue_0001.fits", "wiener", "uint16"),
])
def test_sharpen_real_images_keeps_size_keywords_and_wcs(real_dir, tmp_path, capsys, name, method, otype):
    src = real_dir / name
    out = tmp_path / "out.fits"
    assert main(["sharpen", str(src), "-o", str(out), "--method", method, "--output-type", otype, "-q"]) == 0
    with fits.open(src) as a, fits.open(out) as b:
        h0, h1 = a[0].header, b[0].header
        d0, d1 = a[0].data, b[0].data
    assert d1.shape == d0.shape
    assert h1["BITPIX"] == (-32 if otype == "float32" else 16)
    if otype == "uint16":
        assert h1["BZERO"] == 32768
    else:
        assert "BZERO" not in h1
    _assert_keywords_and_wcs_kept(h0, h1)
    assert any("astrosharp" in str(h) and f"method={method}" in str(h) for h in h1["HISTORY"])


@pytest.mark.slow
def test_sharpen_raw_colour_filter_array_frame_is_debayered(real_dir, tmp_path, capsys):
    src = real_dir / "Light_NGC 7023_10.0s_IRCUT_20240730-224436.fit"
    out = tmp_path / "seestar.fits"
    assert main(["sharpen", str(src), "-o", str(out), "--method", "wiener"]) == 0
    err = capsys.readouterr().err
    assert "raw colour-filter-array frame (BAYERPAT GRBG): debayered" in err
    h0 = fits.getheader(src)
    data = fits.getdata(out)
    assert data.shape == (3, h0["NAXIS2"], h0["NAXIS1"])
    assert np.isfinite(data).all()


def test_demo_writes_input_result_and_picture(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "128", "--method", "wiener", "-q"]) == 0
    files = {p.name for p in out.iterdir()}
    assert files == {"demo_input.fits", "demo_astrosharp.fits", "demo_before_after.png"}
    a, b = fits.getdata(out / "demo_input.fits"), fits.getdata(out / "demo_astrosharp.fits")
    assert a.shape == b.shape == (3, 128, 128)
    assert not np.array_equal(a, b)
    assert "method=wiener" in " ".join(str(h) for h in fits.getheader(out / "demo_astrosharp.fits")["HISTORY"])
    png = (out / "demo_before_after.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # a second run does not overwrite without being told
    assert main(["demo", "--out", str(out), "--size", "128", "--method", "wiener"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--size", "128", "--method", "wiener", "--overwrite", "-q"]) == 0


def test_library_chatter_is_not_shown(tmp_path, capsys, monkeypatch):
    import astrosharp.cli as cli

    def noisy(args):
        import warnings as w

        w.warn("Mean of empty slice", RuntimeWarning)
        w.warn("something the user should know", UserWarning)
        return 0

    monkeypatch.setitem(cli.COMMANDS, "info", noisy)
    assert main(["info", "x.fits"]) == 0
    err = capsys.readouterr().err
    assert "Mean of empty slice" not in err
    assert "astrosharp: warning: something the user should know" in err


def test_psf_prints_table_json_and_plot(tmp_path, capsys):
    import json

    src = _write_star_fits(tmp_path / "psf.fits", shape=(200, 240), seed=3)
    js, png = tmp_path / "psf.json", tmp_path / "psf.png"
    assert main(["psf", str(src), "--json", str(js), "--plot", str(png), "-q"]) == 0
    out = capsys.readouterr().out
    row = [ln for ln in out.splitlines() if ln.startswith("mono")][0]
    assert float(row.split()[1]) == pytest.approx(3.5, rel=0.05)  # the FWHM the stars were made with
    data = json.loads(js.read_text())
    assert data["summary"][0]["fwhm"] == pytest.approx(3.5, rel=0.05)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["psf", str(src), "--json", str(js)]) == 1  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err


def test_bench_prints_the_table_and_writes_json(tmp_path, capsys, monkeypatch):
    # the command's plumbing only; the benchmark itself is tested with astrosharp.bench
    import sys
    import types

    calls = {}

    class Result:
        notes = ["nn row skipped: no model file is installed yet"]

        def table(self):
            return "case  method  psnr\nstars rl      30.0"

    def run_bench(quick=False, json_path=None, progress=None, **kw):
        calls.update(quick=quick, json_path=json_path)
        progress("case stars")
        if json_path:
            open(json_path, "w").write("{}")
        return Result()

    monkeypatch.setitem(sys.modules, "astrosharp.bench", types.SimpleNamespace(run_bench=run_bench))
    js = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--json", str(js)]) == 0
    cap = capsys.readouterr()
    assert "stars rl      30.0" in cap.out
    assert "astrosharp: bench: case stars" in cap.err and "nn row skipped" in cap.err
    assert calls == {"quick": True, "json_path": str(js)} and js.exists()
    assert main(["bench", "--json", str(tmp_path / "missing" / "b.json")]) == 1
    assert "output folder" in capsys.readouterr().err


def test_bench_controls_runs_the_control_bars(tmp_path, capsys, monkeypatch):
    # plumbing only: the control evaluation itself is tested in test_controls_eval.py
    import json

    import astrosharp.bench.controls as controls

    calls = {}

    class Res:
        notes = ["seeds 0 1"]

        def table(self):
            return "bar  value  pass\nsharpen 1.0 FWHM ratio  0.50  yes"

        def to_dict(self):
            return {"passed": 1}

    def run_controls(method="nn", quick=False, seeds=None, size=None, model=None, progress=None):
        calls.update(method=method, quick=quick)
        progress("case grid")
        return Res()

    monkeypatch.setattr(controls, "run_controls", run_controls)
    js = tmp_path / "controls.json"
    assert main(["bench", "--controls", "--quick", "--method", "rl", "--json", str(js)]) == 0
    cap = capsys.readouterr()
    assert "FWHM ratio  0.50  yes" in cap.out and "case grid" in cap.err
    assert calls == {"method": "rl", "quick": True}
    assert json.loads(js.read_text()) == {"passed": 1}
    assert main(["bench", "--controls", "--method", "bogus"]) == 2
