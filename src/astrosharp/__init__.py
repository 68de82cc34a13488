"""astrosharp: neural PSF translation for linear astronomical images.

The public API is curated here; modules whose names start with an underscore
are private.
"""

from __future__ import annotations

from .errors import AstrosharpError, NoStarsWarning
from .image import Image
from .params import SharpenParams

__version__ = "0.1.0"

__all__ = ["AstrosharpError", "Image", "NoStarsWarning", "SharpenParams", "__version__"]
