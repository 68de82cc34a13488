"""PSF models and the measurement of the PSF field (stars in, a PSF map out)."""

from .moffat import (
    alpha_from_fwhm,
    fwhm_from_alpha,
    moffat_image,
    moffat_kernel,
    moffat_otf,
)

__all__ = [
    "alpha_from_fwhm",
    "fwhm_from_alpha",
    "moffat_image",
    "moffat_kernel",
    "moffat_otf",
]
