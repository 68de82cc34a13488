"""Image files: FITS, XISF and TIFF behind one :func:`read_image` / :func:`write_image`.

See ``docs/files.md`` for the conventions (integer scaling, what metadata is
kept, raw colour-filter-array frames, row order).
"""

from __future__ import annotations

from ._atomic import check_output_path
from ._api import SUPPORTED_EXTENSIONS, default_output_path, format_of, read_image, write_image
from ._common import OUTPUT_DTYPES
from .xisf import XISFProperty

__all__ = [
    "OUTPUT_DTYPES",
    "SUPPORTED_EXTENSIONS",
    "XISFProperty",
    "check_output_path",
    "default_output_path",
    "format_of",
    "read_image",
    "write_image",
]
