"""Exceptions and warnings raised by astrosharp.

Every error a user can cause (bad file, bad option, bad data) is an
:class:`AstrosharpError` with a one-sentence message a person can act on; the
command line prints that sentence and exits with status 1.
"""

from __future__ import annotations


class AstrosharpError(Exception):
    """Base class of the errors astrosharp reports to users."""


class ImageFormatError(AstrosharpError, ValueError):
    """The file is not an image astrosharp can read, or is damaged."""


class ImageDataError(AstrosharpError, ValueError):
    """The pixel data cannot be processed (wrong shape, too small, ...)."""


class ParameterError(AstrosharpError, ValueError):
    """A control is out of its range or inconsistent with another."""


class OutputExistsError(AstrosharpError, FileExistsError):
    """The output file exists and ``overwrite`` was not given."""


class ModelError(AstrosharpError, RuntimeError):
    """The shipped network is missing, damaged or cannot be run."""


class AstrosharpWarning(UserWarning):
    """Base class of astrosharp's warnings."""


class NoStarsWarning(AstrosharpWarning):
    """No usable stars were found; a fallback PSF is used."""


class DataWarning(AstrosharpWarning):
    """The input was changed on reading (alpha dropped, debayered, ...)."""
