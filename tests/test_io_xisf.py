"""XISF: PixInsight's files, our writer, codecs, checksums and cross-compatibility."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from astrosharp.errors import DataWarning, ImageFormatError, ParameterError
from astrosharp.image import Image
from astrosharp.io import XISFProperty, read_image, write_image
from astrosharp.io.xisf import _shuffle, _unshuffle

M57 = "xisf-image-gray-256x256-16bits-zlib_sh.xisf"
NS = 'xmlns="http://www.pixinsight.com/xisf"'


def _xisf_files(xisf_dir: Path) -> list[Path]:
    return sorted(xisf_dir.glob("*.xisf"))


def _handmade(path: Path, image_attrs: str, inner: str = "", attached: bytes | None = None) -> Path:
    """A minimal XISF file; ``{POS}`` in the attributes becomes the attachment offset."""
    pos = 4096
    xml = f'<?xml version="1.0" encoding="UTF-8"?><xisf version="1.0" {NS}><Image {image_attrs}>{inner}</Image></xisf>'
    xml_b = xml.replace("{POS}", str(pos)).encode()
    body = b"XISF0100" + struct.pack("<II", len(xml_b), 0) + xml_b
    body += b"\0" * (pos - len(body))
    path.write_bytes(body + (attached or b""))
    return path


# ----------------------------------------------------------------- PixInsight's files


def test_every_xisf_file_reads_and_round_trips(xisf_dir, tmp_path):
    files = _xisf_files(xisf_dir)
    assert len(files) >= 5
    for src in files:
        img = read_image(src)
        assert img.source_format == "xisf" and img.source_dtype == "uint16" and img.scale == 65535.0
        counts = np.rint(img.data * 65535)
        for dtype, compression in (("uint16", None), ("float32", "zlib+sh")):
            out = write_image(img, tmp_path / f"{src.stem}_{dtype}.xisf", dtype=dtype, compression=compression)
            back = read_image(out)
            assert back.source_dtype == dtype
            if dtype == "uint16":
                np.testing.assert_array_equal(np.rint(back.data * 65535), counts)
            else:
                assert back.data.tobytes() == img.data.tobytes()
            assert list(back.header.items())[: len(img.header)] == list(img.header.items())
            for key, prop in img.properties.items():
                if not key.startswith("XISF:"):
                    assert back.properties[key] == prop, (src.name, key)


def test_m57_statistics_in_16_bit_units(xisf_dir):
    img = read_image(xisf_dir / M57)
    assert img.shape == (1, 256, 256)
    counts = np.rint(img.data * 65535).astype(np.int64)
    assert np.median(counts) == 1648
    assert counts.max() == 50624
    assert np.all(counts % 16 == 0)  # a 12-bit camera's samples in a 16-bit file


def test_shuffled_and_plain_zlib_pixinsight_files_agree_with_reference_reader(xisf_dir):
    import xisf

    attached = [p for p in _xisf_files(xisf_dir) if b'location="embedded"' not in p.read_bytes()[:65536]]
    assert len(attached) >= 3  # the reference reader cannot read embedded blocks
    for src in attached:
        ours = np.rint(read_image(src).data * 65535).astype(np.uint16)
        ref = xisf.XISF.read(str(src))  # (H, W, C)
        np.testing.assert_array_equal(ours, np.moveaxis(ref, -1, 0))


def test_keywords_and_typed_properties_of_test_xisf(xisf_dir, tmp_path):
    img = read_image(xisf_dir / "test.xisf")
    hdr = img.header
    assert hdr["INSTRUME"] == "CCD Simulator" and hdr["EXPTIME"] == 1 and hdr["PIXSIZE1"] == 5.2
    assert hdr["OBJCTRA"] == "23 57 18.46" and hdr["DATE-OBS"] == "2026-03-13T16:01:26.232"
    assert hdr.comments["FOCALLEN"] == "Focal Length (mm)"
    props = img.properties
    assert props["Instrument:ExposureTime"] == XISFProperty("Float32", 1.0)
    assert props["Observation:Location:Latitude"] == XISFProperty("Float64", 48.1331)
    assert props["Instrument:Camera:XBinning"] == XISFProperty("Int32", 1)
    assert props["Observation:Time:Start"] == XISFProperty("TimePoint", "2026-03-13T16:01:26Z")
    assert props["Instrument:Filter:Name"] == XISFProperty("String", "Red")
    back = read_image(write_image(img, tmp_path / "t.fits"))
    assert back.header["FOCALLEN"] == 300 and back.header["OBJECT"] == "SKY_OBJECT"


def test_compressed_string_property_and_sha1_checksums(xisf_dir):
    img = read_image(xisf_dir / "200x150-u16-zstd-shuffle-process-history-display-function-icc-sha1.xisf")
    assert np.all(np.rint(img.data * 65535) == 32768)
    history = img.properties["PixInsight:ProcessingHistory"]
    assert history.type == "String" and len(history.value) == 14357 and "<" in history.value[:100]


# ----------------------------------------------------------------- our writer


@pytest.mark.parametrize("compression", [None, "zlib", "zlib+sh", "lz4", "lz4+sh", "lz4hc", "lz4hc+sh", "zstd", "zstd+sh"])
def test_codecs_round_trip_rgb_float32_bit_exact(tmp_path, compression):
    rng = np.random.default_rng(1)
    data = rng.normal(100, 30, size=(3, 33, 47)).astype(np.float32)
    data[0, 0, 0], data[2, 5, 5] = np.nan, -np.inf
    img = Image(data)
    img.header["OBJECT"] = "M 42"
    out = write_image(img, tmp_path / "c.xisf", compression=compression)
    back = read_image(out)
    assert back.data.tobytes() == data.tobytes()
    assert back.header["OBJECT"] == "M 42"
    xml = out.read_bytes()[16:4096].decode(errors="ignore")
    assert 'checksum="sha1:' in xml
    if compression:
        assert f'compression="{compression}:' in xml


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32", "float64"])
def test_sample_formats_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(4)
    data = rng.random((1, 20, 30)).astype(np.float32)
    out = write_image(Image(data), tmp_path / "s.xisf", dtype=dtype, compression="zstd+sh")
    back = read_image(out)
    assert back.source_dtype == dtype
    tol = 0.5 / np.iinfo(dtype).max if dtype.startswith("uint") else 0.0
    np.testing.assert_allclose(back.data, data, rtol=0, atol=tol + 1e-7 if tol else 0)
    fmt = {"uint8": "UInt8", "uint16": "UInt16", "uint32": "UInt32", "float32": "Float32", "float64": "Float64"}[dtype]
    assert f'sampleFormat="{fmt}"' in out.read_bytes()[:4096].decode(errors="ignore")


def test_properties_written_back_with_their_types(tmp_path):
    img = Image(np.zeros((1, 20, 20), np.float32))
    img.properties.update(
        {
            "Instrument:ExposureTime": XISFProperty("Float32", 300.0),
            "Instrument:Camera:Gain": XISFProperty("UInt16", 100),
            "Observation:Time:Start": XISFProperty("TimePoint", "2024-01-02T03:04:05Z"),
            "Processing:Flag": XISFProperty("Boolean", True),
            "Observation:Object:Name": XISFProperty("String", "M 51 & <friends>"),
            "Test:Vector": XISFProperty("F64Vector", np.array([1.5, -2.0, 3.25])),
            "Test:Matrix": XISFProperty("UI16Matrix", np.arange(6, dtype=np.uint16).reshape(2, 3)),
        }
    )
    back = read_image(write_image(img, tmp_path / "p.xisf"))
    for key in ("Instrument:ExposureTime", "Instrument:Camera:Gain", "Observation:Time:Start", "Processing:Flag", "Observation:Object:Name"):
        assert back.properties[key] == img.properties[key], key
    np.testing.assert_array_equal(back.properties["Test:Vector"].value, [1.5, -2.0, 3.25])
    np.testing.assert_array_equal(back.properties["Test:Matrix"].value, np.arange(6).reshape(2, 3))
    assert back.properties["XISF:CreatorApplication"].value.startswith("astrosharp ")


def test_our_float32_rgb_reads_in_the_xisf_package_and_back(tmp_path):
    import xisf

    rng = np.random.default_rng(7)
    data = rng.random((3, 40, 56)).astype(np.float32) * 2 - 0.5  # also outside [0, 1]
    img = Image(data)
    img.header["EXPTIME"] = (120.0, "seconds")
    img.header["FILTER"] = "L"
    out = write_image(img, tmp_path / "ours.xisf", compression="lz4hc+sh")
    ref = xisf.XISF(str(out))
    arr = ref.read_image(0)
    assert arr.dtype == np.float32 and arr.tobytes() == np.ascontiguousarray(np.moveaxis(data, 0, -1)).tobytes()
    kws = ref.get_images_metadata()[0]["FITSKeywords"]
    assert kws["FILTER"][0]["value"].strip("'") == "L" and float(kws["EXPTIME"][0]["value"]) == 120.0

    meta = {"FITSKeywords": {"OBJECT": [{"value": "'NGC 7000'", "comment": "target"}]}}
    theirs = tmp_path / "theirs.xisf"
    xisf.XISF.write(str(theirs), np.moveaxis(data, 0, -1).copy(), image_metadata=meta, codec="zstd", shuffle=True)
    back = read_image(theirs)
    assert back.shape == (3, 40, 56) and back.data.tobytes() == data.tobytes()
    assert back.header["OBJECT"] == "NGC 7000" and back.header.comments["OBJECT"] == "target"


# ----------------------------------------------------------------- hand-made layouts


def test_embedded_hex_block_normal_storage_and_sha256(tmp_path):
    rgb = np.arange(3 * 16 * 18, dtype=np.uint16).reshape(3, 16, 18) * 7
    interleaved = np.moveaxis(rgb, 0, -1).astype("<u2").tobytes()
    digest = hashlib.sha256(interleaved).hexdigest()
    path = _handmade(
        tmp_path / "hex.xisf",
        'geometry="18:16:3" sampleFormat="UInt16" colorSpace="RGB" pixelStorage="Normal" location="embedded"',
        f'<Data encoding="hex" checksum="sha-256:{digest}">{interleaved.hex()}</Data>'
        '<FITSKeyword name="GAIN" value="120" comment="gain"/>'
        '<FITSKeyword name="HISTORY" value="" comment="calibrated"/>',
    )
    img = read_image(path)
    np.testing.assert_array_equal(np.rint(img.data * 65535), rgb)
    assert img.header["GAIN"] == 120 and "calibrated" in str(img.header["HISTORY"])


def test_big_endian_float_in_subblocks(tmp_path):
    data = np.linspace(-1, 3, 20 * 24, dtype=np.float64).reshape(1, 20, 24)
    raw = data.astype(">f8").tobytes()
    half = len(raw) // 2
    shuffled_whole = zlib.compress(_shuffle(raw, 8))
    path = _handmade(
        tmp_path / "be.xisf",
        f'geometry="24:20:1" sampleFormat="Float64" colorSpace="Gray" byteOrder="big" '
        f'compression="zlib+sh:{len(raw)}:8" location="attachment:{{POS}}:{len(shuffled_whole)}"',
        attached=shuffled_whole,
    )
    np.testing.assert_array_equal(read_image(path).data, data.astype(np.float32))
    plain = [zlib.compress(raw[:half]), zlib.compress(raw[half:])]
    sub = f"{len(plain[0])},{half}:{len(plain[1])},{len(raw) - half}"
    path = _handmade(
        tmp_path / "sub.xisf",
        f'geometry="24:20:1" sampleFormat="Float64" colorSpace="Gray" byteOrder="big" '
        f'compression="zlib:{len(raw)}" subblocks="{sub}" location="attachment:{{POS}}:{len(plain[0]) + len(plain[1])}"',
        attached=plain[0] + plain[1],
    )
    np.testing.assert_array_equal(read_image(path).data, data.astype(np.float32))


def test_shuffle_is_inverted_with_a_remainder():
    data = bytes(range(251)) * 3
    for itemsize in (1, 2, 4, 8):
        assert _unshuffle(_shuffle(data, itemsize), itemsize) == data
    assert _shuffle(b"abcdef", 2) == b"acebdf"


def test_rgba_drops_alpha_with_warning(tmp_path):
    planes = np.stack([np.full((16, 20), v, np.uint8) for v in (10, 20, 30, 255)])
    path = _handmade(
        tmp_path / "rgba.xisf",
        f'geometry="20:16:4" sampleFormat="UInt8" colorSpace="RGB" location="attachment:{{POS}}:{planes.size}"',
        attached=planes.tobytes(),
    )
    with pytest.warns(DataWarning, match="alpha"):
        img = read_image(path)
    assert img.shape == (3, 16, 20)
    np.testing.assert_allclose(img.data[:, 0, 0], np.array([10, 20, 30]) / 255, rtol=1e-6)


def test_color_filter_array_element_debayers(tmp_path):
    h, w = 20, 24
    cfa = np.zeros((h, w), np.uint16)
    cfa[0::2, 0::2] = 1000  # R in RGGB
    cfa[0::2, 1::2] = cfa[1::2, 0::2] = 2000
    cfa[1::2, 1::2] = 3000
    path = _handmade(
        tmp_path / "cfa.xisf",
        f'geometry="{w}:{h}:1" sampleFormat="UInt16" colorSpace="Gray" location="attachment:{{POS}}:{cfa.nbytes}"',
        '<ColorFilterArray pattern="RGGB" width="2" height="2"/>',
        attached=cfa.astype("<u2").tobytes(),
    )
    with pytest.warns(DataWarning, match="ColorFilterArray RGGB"):
        img = read_image(path)
    np.testing.assert_allclose(img.data * 65535, np.stack([np.full((h, w), v) for v in (1000, 2000, 3000)]), rtol=1e-5)


def test_checksum_mismatch_is_refused(tmp_path):
    out = write_image(Image(np.ones((1, 20, 20), np.float32)), tmp_path / "ok.xisf")
    raw = bytearray(out.read_bytes())
    raw[-5] ^= 0xFF
    bad = tmp_path / "bad.xisf"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ImageFormatError, match="bad.xisf is damaged: a data block fails its sha1 checksum"):
        read_image(bad)


def test_unknown_codec_and_bad_compression_request(tmp_path):
    path = _handmade(
        tmp_path / "lzma.xisf",
        'geometry="20:20:1" sampleFormat="UInt8" colorSpace="Gray" compression="lzma:400" location="attachment:{POS}:4"',
        attached=b"abcd",
    )
    with pytest.raises(ImageFormatError, match="compression 'lzma:400'.*supported: zlib, lz4, lz4hc, zstd"):
        read_image(path)
    with pytest.raises(ParameterError, match="XISF compression 'rar'"):
        write_image(Image(np.zeros((1, 20, 20), np.float32)), tmp_path / "x.xisf", compression="rar")


def test_embedded_base64_block_damaged(tmp_path):
    good = base64.b64encode(np.zeros(400, np.uint8).tobytes()).decode()
    path = _handmade(
        tmp_path / "b64.xisf",
        'geometry="20:20:1" sampleFormat="UInt8" colorSpace="Gray" location="embedded"',
        f'<Data encoding="base64">{good[:-5]}!!</Data>',
    )
    with pytest.raises(ImageFormatError, match="embedded base64 block is damaged"):
        read_image(path)


@pytest.mark.parametrize(
    "name, shape, median",
    [
        ("400x300-u16-lz4hc-shuffle.xisf", (1, 300, 400), 42),
        ("200x150-u16-zstd-shuffle-process-history-display-function-icc-sha1.xisf", (1, 150, 200), 32768),
        ("xisf-image-gray-256x256-16bits-zlib.xisf", (1, 256, 256), 74),
        ("test.xisf", (1, 1024, 1280), 5),
    ],
)
def test_pixinsight_and_other_writers_values(xisf_dir, name, shape, median):
    img = read_image(xisf_dir / name)
    assert img.shape == shape
    assert np.median(np.rint(img.data * 65535)) == median
