"""astrosharp: neural PSF translation for linear astronomical images.

The public API is curated here; modules whose names start with an underscore
are private. Heavier parts (file formats, the pipeline, the simulator) are
imported on first use, so ``import astrosharp`` stays quick.

>>> import astrosharp as asp
>>> img = asp.read_image("m13.fits")                                # doctest: +SKIP
>>> res = asp.sharpen(img, asp.SharpenParams(sharpen_stars=0.5))    # doctest: +SKIP
>>> asp.write_image(res.image, "m13_sharp.fits")                    # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AstrosharpError,
    DataWarning,
    ImageDataError,
    ImageFormatError,
    ModelError,
    NoStarsWarning,
    OutputExistsError,
    ParameterError,
)
from .image import Image
from .params import SharpenParams

__version__ = "0.1.0"

# name -> (module, attribute or None for the module itself)
_LAZY = {
    "read_image": (".io", "read_image"),
    "write_image": (".io", "write_image"),
    "default_output_path": (".io", "default_output_path"),
    "sharpen": (".pipeline", "sharpen"),
    "sharpen_file": (".pipeline", "sharpen_file"),
    "measure_psf": (".pipeline", "measure_psf"),
    "SharpenResult": (".pipeline", "SharpenResult"),
    "measure_psf_field": (".psf.measure", "measure_psf_field"),
    "PSFField": (".psf.field", "PSFField"),
    "estimate_background": (".noise", "estimate_background"),
    "run_tiled": (".tiles", "run_tiled"),
    "synth": (".synth", None),
    "keep_freed_memory": ("._memory", "keep_freed_memory"),
}

__all__ = [
    "AstrosharpError",
    "DataWarning",
    "Image",
    "ImageDataError",
    "ImageFormatError",
    "ModelError",
    "NoStarsWarning",
    "OutputExistsError",
    "ParameterError",
    "PSFField",
    "SharpenParams",
    "SharpenResult",
    "__version__",
    "default_output_path",
    "estimate_background",
    "keep_freed_memory",
    "measure_psf",
    "measure_psf_field",
    "read_image",
    "run_tiled",
    "sharpen",
    "sharpen_file",
    "synth",
    "write_image",
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'astrosharp' has no attribute {name!r}") from None
    mod = importlib.import_module(module, __name__)
    return mod if attr is None else getattr(mod, attr)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from . import synth
    from ._memory import keep_freed_memory
    from .io import default_output_path, read_image, write_image
    from .noise import estimate_background
    from .pipeline import SharpenResult, measure_psf, sharpen, sharpen_file
    from .psf.field import PSFField
    from .psf.measure import measure_psf_field
    from .tiles import run_tiled
