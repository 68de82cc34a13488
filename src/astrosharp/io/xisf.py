"""XISF, PixInsight's image format: our own reader and writer.

Reading (XISF 1.0 monolithic files): the first ``Image`` element; attached
(``attachment:pos:size``), embedded (``<Data encoding="base64|hex">``) and
inline blocks; ``zlib``, ``lz4``, ``lz4hc`` and ``zstd`` compression with or
without byte shuffling (``+sh``), in one block or in ``subblocks``; block
checksums (SHA-1, SHA-256, SHA-512, SHA3) verified; UInt8/16/32/64 and
Float32/64 samples, little or big endian; Gray and RGB in planar or normal
(interleaved) storage; extra channels beyond the colour space are alpha.
``FITSKeyword`` elements go to :attr:`Image.header`; ``Property`` elements of
the image and of the file's ``Metadata`` go to :attr:`Image.properties` as
:class:`XISFProperty` (type and value, so they can be written back); a
``ColorFilterArray`` element marks a raw Bayer frame. Rows are stored top
first; astrosharp keeps them in that order.

Writing: one Image in an attached block aligned to 4096 bytes, optional
compression (default none: every reader handles it, and float data hardly
compress), an SHA-1 checksum, the FITS keywords and the properties kept
(``XISF:*`` file properties are written afresh).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import struct
import warnings
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from ..errors import ImageDataError, ImageFormatError, ParameterError
from ._raw import CFAInfo, RawImage

__all__ = ["XISFProperty", "read_xisf", "write_xisf", "CODECS"]

SIGNATURE = b"XISF0100"
NAMESPACE = "http://www.pixinsight.com/xisf"
BLOCK_ALIGNMENT = 4096

#: Compression codecs accepted by :func:`write_xisf` (append ``+sh`` to shuffle bytes).
CODECS = ("zlib", "lz4", "lz4hc", "zstd")

_SAMPLE_FORMATS = {
    "UInt8": "u1",
    "UInt16": "u2",
    "UInt32": "u4",
    "UInt64": "u8",
    "Float32": "f4",
    "Float64": "f8",
}
_FORMAT_OF_DTYPE = {np.dtype(v).newbyteorder("<").str: k for k, v in _SAMPLE_FORMATS.items()}

_SCALAR_TYPES = {
    "Int8": int, "Int16": int, "Int32": int, "Int64": int, "Int": int,
    "UInt8": int, "UInt16": int, "UInt32": int, "UInt64": int, "UInt": int,
    "Float32": float, "Float64": float, "Float": float,
}
_VECTOR_DTYPES = {
    "I8": "i1", "UI8": "u1", "I16": "i2", "UI16": "u2", "I32": "i4", "UI32": "u4",
    "I64": "i8", "UI64": "u8", "F32": "f4", "F64": "f8", "C32": "c8", "C64": "c16",
}

_HASHES = {
    "sha1": "sha1", "sha-1": "sha1",
    "sha256": "sha256", "sha-256": "sha256",
    "sha512": "sha512", "sha-512": "sha512",
    "sha3-256": "sha3_256", "sha3-512": "sha3_512",
}


@dataclass(frozen=True)
class XISFProperty:
    """A typed XISF property value.

    Attributes
    ----------
    type : str
        XISF type name (``"String"``, ``"Float64"``, ``"Int32"``, ``"Boolean"``,
        ``"TimePoint"``, ``"F32Vector"``, ``"UI8Matrix"``...).
    value : Any
        str, int, float, bool, or an ndarray for vector and matrix types.
    comment : str
        The property's ``comment`` attribute, if any.
    """

    type: str
    value: Any
    comment: str = ""


# ----------------------------------------------------------------- helpers


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(elem: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in elem if _local(c.tag) == name]


def _shuffle(data: bytes, itemsize: int) -> bytes:
    n = len(data) // itemsize
    if itemsize <= 1 or n == 0:
        return data
    body = np.frombuffer(data, dtype=np.uint8, count=n * itemsize).reshape(n, itemsize)
    return body.T.tobytes() + data[n * itemsize :]


def _unshuffle(data: bytes, itemsize: int) -> bytes:
    n = len(data) // itemsize
    if itemsize <= 1 or n == 0:
        return data
    body = np.frombuffer(data, dtype=np.uint8, count=n * itemsize).reshape(itemsize, n)
    return body.T.tobytes() + data[n * itemsize :]


def _parse_compression(spec: str, name: str) -> tuple[str, bool, int, int]:
    """``codec[+sh]:size[:itemsize]`` -> (codec, shuffled, size, itemsize)."""
    parts = spec.strip().split(":")
    codec = parts[0].strip().lower()
    shuffled = codec.endswith("+sh")
    if shuffled:
        codec = codec[:-3]
    if codec not in CODECS or len(parts) < 2:
        raise ImageFormatError(
            f"{name} uses compression {spec!r}, which astrosharp cannot decode (supported: {', '.join(CODECS)}, with or without +sh)"
        )
    try:
        size = int(parts[1])
        itemsize = int(parts[2]) if shuffled and len(parts) > 2 else 1
    except ValueError:
        raise ImageFormatError(f"{name} has a malformed compression attribute {spec!r}") from None
    return codec, shuffled, size, itemsize


def _decompress(data: bytes, codec: str, size: int, name: str) -> bytes:
    try:
        if codec == "zlib":
            out = zlib.decompress(data)
        elif codec in ("lz4", "lz4hc"):
            import lz4.block

            out = lz4.block.decompress(data, uncompressed_size=size)
        else:  # zstd
            import zstandard

            out = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    except Exception as exc:
        raise ImageFormatError(f"{name}: a {codec}-compressed data block is damaged and cannot be decompressed ({exc})") from exc
    if len(out) != size:
        raise ImageFormatError(f"{name}: a {codec}-compressed block decompressed to {len(out)} bytes, expected {size}")
    return out


def _compress(data: bytes, codec: str) -> bytes:
    if codec == "zlib":
        return zlib.compress(data, 6)
    if codec == "lz4":
        import lz4.block

        return lz4.block.compress(data, store_size=False)
    if codec == "lz4hc":
        import lz4.block

        return lz4.block.compress(data, mode="high_compression", compression=9, store_size=False)
    import zstandard

    return zstandard.ZstdCompressor(level=3).compress(data)


class _Reader:
    """Reads the data blocks of one open XISF file."""

    def __init__(self, handle: BinaryIO, file_size: int, name: str):
        self.handle = handle
        self.file_size = file_size
        self.name = name

    def block(self, elem: ET.Element) -> bytes:
        """Stored bytes of the block that ``elem`` locates, checked and decompressed."""
        attrs = dict(elem.attrib)
        location = attrs.get("location", "").strip()
        if location == "embedded":
            data_elems = _children(elem, "Data")
            if not data_elems:
                raise ImageFormatError(f"{self.name}: an embedded block has no <Data> element")
            attrs.update(data_elems[0].attrib)
            stored = self._decode_text(data_elems[0].text or "", attrs.get("encoding", "base64"))
        elif location.startswith("inline:"):
            stored = self._decode_text(elem.text or "", location.split(":", 1)[1])
        elif location.startswith("attachment:"):
            try:
                _, pos, size = location.split(":")
                pos, size = int(pos), int(size)
            except ValueError:
                raise ImageFormatError(f"{self.name} has a malformed block location {location!r}") from None
            if pos + size > self.file_size:
                raise ImageFormatError(
                    f"{self.name} is truncated: a data block ends at byte {pos + size} but the file has {self.file_size} bytes"
                )
            self.handle.seek(pos)
            stored = self.handle.read(size)
        else:
            raise ImageFormatError(
                f"{self.name} stores a block at {location or 'an unspecified location'!r}; astrosharp reads attached, embedded and inline blocks only"
            )
        checksum = attrs.get("checksum")
        if checksum:
            self._verify(stored, checksum)
        compression = attrs.get("compression")
        if not compression:
            return stored
        codec, shuffled, size, itemsize = _parse_compression(compression, self.name)
        sub = attrs.get("subblocks")
        if sub:
            out = []
            offset = 0
            for item in sub.replace(";", ":").split(":"):
                if not item.strip():
                    continue
                try:
                    csize, usize = (int(v) for v in item.split(","))
                except ValueError:
                    raise ImageFormatError(f"{self.name} has a malformed subblocks attribute {sub!r}") from None
                out.append(_decompress(stored[offset : offset + csize], codec, usize, self.name))
                offset += csize
            data = b"".join(out)
            if len(data) != size:
                raise ImageFormatError(f"{self.name}: compressed subblocks hold {len(data)} bytes, expected {size}")
        else:
            data = _decompress(stored, codec, size, self.name)
        return _unshuffle(data, itemsize) if shuffled else data

    def _decode_text(self, text: str, encoding: str) -> bytes:
        text = "".join(text.split())
        try:
            if encoding.lower() == "base64":
                return base64.b64decode(text, validate=True)
            if encoding.lower() in ("hex", "base16"):
                return binascii.unhexlify(text)
        except (binascii.Error, ValueError) as exc:
            raise ImageFormatError(f"{self.name}: an embedded {encoding} block is damaged ({exc})") from exc
        raise ImageFormatError(f"{self.name} uses block encoding {encoding!r}; astrosharp reads base64 and hex")

    def _verify(self, stored: bytes, checksum: str) -> None:
        algo, _, digest = checksum.partition(":")
        hname = _HASHES.get(algo.strip().lower())
        if hname is None:
            raise ImageFormatError(f"{self.name} uses checksum algorithm {algo!r}, which astrosharp cannot verify")
        actual = hashlib.new(hname, stored).hexdigest()
        if actual.lower() != digest.strip().lower():
            raise ImageFormatError(
                f"{self.name} is damaged: a data block fails its {algo} checksum (stored {digest.strip()[:12]}..., computed {actual[:12]}...)"
            )


# ----------------------------------------------------------------- values


def _parse_fits_value(text: str) -> Any:
    """The value of an XISF FITSKeyword element (FITS syntax, or bare text)."""
    s = text.strip()
    if s.startswith("'"):
        inner = s[1:-1] if s.endswith("'") and len(s) > 1 else s[1:]
        return inner.replace("''", "'").rstrip()
    if s == "T":
        return True
    if s == "F":
        return False
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s.replace("D", "E").replace("d", "e"))
    except ValueError:
        return s


def _format_fits_value(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "T" if value else "F"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value)).upper()
    if value is None or type(value).__name__ == "Undefined":
        return ""
    return "'" + str(value).replace("'", "''") + "'"


def _header_from_keywords(image: ET.Element) -> fits.Header:
    header = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        for kw in _children(image, "FITSKeyword"):
            key = kw.get("name", "").strip().upper()
            value = kw.get("value", "")
            comment = kw.get("comment", "")
            if not key:
                continue
            try:
                if key in ("HISTORY", "COMMENT"):
                    text = comment or str(_parse_fits_value(value))
                    (header.add_history if key == "HISTORY" else header.add_comment)(text)
                elif key in ("SIMPLE", "END", "BITPIX") or key.startswith("NAXIS"):
                    continue
                else:
                    header.append(fits.Card(key, _parse_fits_value(value), comment), end=True)
            except (ValueError, TypeError, KeyError):
                continue  # a keyword FITS cannot hold; skip it
    return header


def _property_from_element(elem: ET.Element, reader: _Reader) -> tuple[str, XISFProperty] | None:
    pid = elem.get("id")
    ptype = elem.get("type", "")
    if not pid:
        return None
    comment = elem.get("comment", "")
    has_block = "location" in elem.attrib
    if ptype in _SCALAR_TYPES:
        try:
            return pid, XISFProperty(ptype, _SCALAR_TYPES[ptype](elem.get("value", "0")), comment)
        except ValueError:
            return pid, XISFProperty("String", elem.get("value", ""), comment)
    if ptype == "Boolean":
        return pid, XISFProperty(ptype, elem.get("value", "").strip().lower() in ("true", "1"), comment)
    if ptype == "TimePoint":
        return pid, XISFProperty(ptype, elem.get("value", ""), comment)
    if ptype == "String":
        if has_block:
            text = reader.block(elem).decode("utf-8", errors="replace")
        else:
            text = elem.text if elem.text is not None else elem.get("value", "")
        return pid, XISFProperty(ptype, text, comment)
    for suffix in ("Vector", "Matrix"):
        if ptype.endswith(suffix):
            prefix = ptype[: -len(suffix)]
            if prefix not in _VECTOR_DTYPES or not has_block:
                return None
            dtype = np.dtype(_VECTOR_DTYPES[prefix]).newbyteorder("<")
            arr = np.frombuffer(reader.block(elem), dtype=dtype).astype(dtype.newbyteorder("="))
            if suffix == "Matrix":
                arr = arr.reshape(int(elem.get("rows", 1)), int(elem.get("columns", arr.size)))
            return pid, XISFProperty(ptype, arr, comment)
    if ptype == "ByteArray" and has_block:
        return pid, XISFProperty(ptype, np.frombuffer(reader.block(elem), dtype=np.uint8).copy(), comment)
    return None  # complex scalars and unknown types are not kept


# ----------------------------------------------------------------- reading


def read_xisf(path: Path) -> RawImage:
    """Read the first image of an XISF file.

    Returns
    -------
    RawImage
        ``raw`` is (N, H, W) in the stored sample type, N = channels
        (colour channels first, then alpha channels, counted in ``n_alpha``).

    Raises
    ------
    ImageFormatError
        Not an XISF file, truncated, a failed checksum, an unknown codec or
        an external block.
    ImageDataError
        Complex samples, CIE L*a*b* colour or images of more than 2 dimensions.
    """
    path = Path(path)
    name = path.name
    with open(path, "rb") as handle:
        head = handle.read(16)
        if len(head) < 16 or head[:8] != SIGNATURE:
            raise ImageFormatError(f"{name} is not an XISF file (it lacks the XISF0100 signature)")
        (length,) = struct.unpack("<I", head[8:12])
        xml = handle.read(length)
        if len(xml) < length:
            raise ImageFormatError(f"{name} is truncated: its XML header needs {length} bytes, the file has {len(xml)} after the signature")
        try:
            root = ET.fromstring(xml.rstrip(b"\x00"))
        except ET.ParseError as exc:
            raise ImageFormatError(f"{name} has a damaged XML header ({exc})") from exc
        handle.seek(0, 2)
        reader = _Reader(handle, handle.tell(), name)
        images = _children(root, "Image")
        if not images:
            raise ImageFormatError(f"{name} holds no image")
        image = images[0]
        geometry = image.get("geometry", "")
        try:
            dims = [int(v) for v in geometry.split(":")]
        except ValueError:
            raise ImageFormatError(f"{name} has a malformed geometry {geometry!r}") from None
        if len(dims) == 2:
            dims.append(1)
        if len(dims) != 3:
            raise ImageDataError(f"{name} holds a {len(dims) - 1}-D image (geometry {geometry}); astrosharp reads 2-D images")
        width, height, channels = dims
        fmt = image.get("sampleFormat", "")
        if fmt not in _SAMPLE_FORMATS:
            raise ImageDataError(f"{name} has sample format {fmt!r}; astrosharp reads {', '.join(_SAMPLE_FORMATS)}")
        order = ">" if image.get("byteOrder", "little").lower() == "big" else "<"
        dtype = np.dtype(_SAMPLE_FORMATS[fmt]).newbyteorder(order)
        space = image.get("colorSpace", "Gray")
        if space not in ("Gray", "RGB"):
            raise ImageDataError(f"{name} is in colour space {space!r}; astrosharp reads Gray and RGB images")
        nominal = 3 if space == "RGB" else 1
        if channels < nominal:
            raise ImageFormatError(f"{name} declares colour space {space} with only {channels} channel(s)")
        data = reader.block(image)
        expected = width * height * channels * dtype.itemsize
        if len(data) != expected:
            raise ImageFormatError(
                f"{name} is damaged: its image block holds {len(data)} bytes, {expected} expected for {geometry} {fmt}"
            )
        arr = np.frombuffer(data, dtype=dtype)
        if image.get("pixelStorage", "Planar") == "Normal":
            arr = arr.reshape(height, width, channels).transpose(2, 0, 1)
        else:
            arr = arr.reshape(channels, height, width)
        arr = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("="))

        header = _header_from_keywords(image)
        properties: dict[str, Any] = {}
        for parent in (image, *_children(root, "Metadata")):
            for elem in _children(parent, "Property"):
                item = _property_from_element(elem, reader)
                if item is not None:
                    properties[item[0]] = item[1]
        for res in _children(image, "Resolution"):
            properties["xisf:Resolution"] = dict(res.attrib)
        cfa = None
        for cfa_elem in _children(image, "ColorFilterArray"):
            pattern = cfa_elem.get("pattern", "")
            if cfa_elem.get("width", "2") == "2" and cfa_elem.get("height", "2") == "2":
                cfa = CFAInfo(pattern=pattern.upper(), source="ColorFilterArray")
            else:
                cfa = CFAInfo(pattern=f"{pattern} ({cfa_elem.get('width')}x{cfa_elem.get('height')})", source="ColorFilterArray")
        if cfa is None and channels == 1 and header.get("BAYERPAT"):
            from .fits import _cfa_info

            cfa = _cfa_info(header)
            if cfa is not None:  # XISF rows are always stored top first
                cfa = CFAInfo(cfa.pattern, cfa.x_offset, cfa.y_offset, False, cfa.source)
    return RawImage(raw=arr, header=header, properties=properties, n_alpha=channels - nominal, cfa=cfa if channels == 1 else None)


# ----------------------------------------------------------------- writing


def _property_element(pid: str, prop: XISFProperty) -> ET.Element | None:
    elem = ET.Element("Property", {"id": pid, "type": prop.type})
    if prop.comment:
        elem.set("comment", prop.comment)
    value = prop.value
    if prop.type == "String":
        elem.text = str(value)
    elif prop.type == "Boolean":
        elem.set("value", "true" if value else "false")
    elif prop.type in _SCALAR_TYPES:
        elem.set("value", repr(float(value)) if _SCALAR_TYPES[prop.type] is float else str(int(value)))
    elif prop.type == "TimePoint":
        elem.set("value", str(value))
    elif isinstance(value, np.ndarray) and (prop.type.endswith(("Vector", "Matrix")) or prop.type == "ByteArray"):
        arr = np.asarray(value)
        if prop.type.endswith("Matrix"):
            rows, cols = arr.shape if arr.ndim == 2 else (1, arr.size)
            elem.set("rows", str(rows))
            elem.set("columns", str(cols))
        else:
            elem.set("length", str(arr.size))
        elem.set("location", "inline:base64")
        elem.text = base64.b64encode(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).decode("ascii")
    else:
        return None
    return elem


def _plain_property(value: Any) -> XISFProperty | None:
    if isinstance(value, XISFProperty):
        return value
    if isinstance(value, (bool, np.bool_)):
        return XISFProperty("Boolean", bool(value))
    if isinstance(value, (int, np.integer)):
        return XISFProperty("Int64", int(value))
    if isinstance(value, (float, np.floating)):
        return XISFProperty("Float64", float(value))
    if isinstance(value, str):
        return XISFProperty("String", value)
    return None


def parse_codec(compression: str | None) -> tuple[str, bool] | None:
    """``"zlib"``, ``"lz4+sh"``, ... -> (codec, shuffle); None -> None."""
    if compression is None or str(compression).lower() in ("", "none"):
        return None
    spec = str(compression).lower()
    shuffle = spec.endswith("+sh")
    codec = spec[:-3] if shuffle else spec
    if codec not in CODECS:
        raise ParameterError(
            f"XISF compression {compression!r} is not supported; choose one of {', '.join(CODECS)}, optionally with +sh (byte shuffling), or None"
        )
    return codec, shuffle


def write_xisf(
    handle: BinaryIO,
    data: np.ndarray,
    header: fits.Header,
    properties: dict[str, Any],
    *,
    compression: str | None = None,
    creator: str = "astrosharp",
) -> None:
    """Write one image as a monolithic XISF 1.0 file.

    Parameters
    ----------
    handle : binary file
        Destination.
    data : (C, H, W) ndarray
        Samples in the output type (uint8/16/32, float32/64); C is 1 (Gray)
        or 3 (RGB), stored planar.
    header : astropy.io.fits.Header
        Written as FITSKeyword elements (structural keywords left out).
    properties : dict
        :class:`XISFProperty` values (plain str/int/float/bool are typed
        automatically; others are skipped); ``XISF:*`` ids are regenerated.
    compression : str or None
        ``"zlib"``, ``"lz4"``, ``"lz4hc"``, ``"zstd"``, each optionally with
        ``"+sh"`` (byte shuffling). None (default) stores the block as is.
    creator : str
        ``XISF:CreatorApplication``.
    """
    from .fits import clean_header

    codec = parse_codec(compression)
    channels, height, width = data.shape
    le = data.dtype.newbyteorder("<")
    fmt = _FORMAT_OF_DTYPE.get(le.str)
    if fmt is None:
        raise ParameterError(f"XISF cannot store samples of type {data.dtype.name}")
    raw = np.ascontiguousarray(data, dtype=le).tobytes()
    attrs = {
        "geometry": f"{width}:{height}:{channels}",
        "sampleFormat": fmt,
        "colorSpace": "RGB" if channels == 3 else "Gray",
        "pixelStorage": "Planar",
    }
    if fmt.startswith("Float"):
        finite = data[np.isfinite(data)]
        lo = min(0.0, float(finite.min())) if finite.size else 0.0
        hi = max(1.0, float(finite.max())) if finite.size else 1.0
        attrs["bounds"] = f"{lo!r}:{hi!r}"
    if codec is not None:
        name, shuffle = codec
        payload = _compress(_shuffle(raw, le.itemsize) if shuffle else raw, name)
        attrs["compression"] = f"{name}+sh:{len(raw)}:{le.itemsize}" if shuffle else f"{name}:{len(raw)}"
    else:
        payload = raw
    attrs["checksum"] = "sha1:" + hashlib.sha1(payload).hexdigest()

    def build(position: int) -> bytes:
        root = ET.Element(
            "xisf",
            {
                "version": "1.0",
                "xmlns": NAMESPACE,
                "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
                "xsi:schemaLocation": f"{NAMESPACE} http://pixinsight.com/xisf/xisf-1.0.xsd",
            },
        )
        image = ET.SubElement(root, "Image", dict(attrs, location=f"attachment:{position}:{len(payload)}"))
        for card in clean_header(header).cards:
            key = card.keyword
            if key in ("HISTORY", "COMMENT", ""):
                ET.SubElement(image, "FITSKeyword", {"name": key or "COMMENT", "value": "", "comment": str(card.value)})
            else:
                ET.SubElement(
                    image, "FITSKeyword", {"name": key, "value": _format_fits_value(card.value), "comment": card.comment or ""}
                )
        for pid, value in properties.items():
            if pid.startswith(("XISF:", "xisf:", "tiff:")):
                continue  # file properties are written afresh; other formats' tags do not apply
            prop = _plain_property(value)
            elem = _property_element(pid, prop) if prop is not None else None
            if elem is not None:
                image.append(elem)
        resolution = properties.get("xisf:Resolution")
        if isinstance(resolution, dict):
            ET.SubElement(image, "Resolution", {str(k): str(v) for k, v in resolution.items()})
        meta = ET.SubElement(root, "Metadata")
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for pid, ptype, value in (
            ("XISF:CreationTime", "String", now),  # as PixInsight writes it
            ("XISF:CreatorApplication", "String", creator),
            ("XISF:BlockAlignmentSize", "UInt16", BLOCK_ALIGNMENT),
        ):
            elem = _property_element(pid, XISFProperty(ptype, value))
            meta.append(elem)  # type: ignore[arg-type]
        if codec is not None:
            meta.append(_property_element("XISF:CompressionCodecs", XISFProperty("String", attrs["compression"].split(":")[0])))  # type: ignore[arg-type]
        meta.append(_property_element("XISF:ChecksumAlgorithms", XISFProperty("String", "sha1")))  # type: ignore[arg-type]
        return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="utf-8", xml_declaration=False)

    position = BLOCK_ALIGNMENT
    while True:
        xml = build(position)
        if 16 + len(xml) <= position:
            break
        position = -(-(16 + len(xml)) // BLOCK_ALIGNMENT) * BLOCK_ALIGNMENT
    handle.write(SIGNATURE + struct.pack("<II", len(xml), 0))
    handle.write(xml)
    handle.write(b"\x00" * (position - 16 - len(xml)))
    handle.write(payload)
