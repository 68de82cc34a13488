"""PSF models and the measurement of the PSF field (stars in, a PSF map out)."""

from .detect import Candidates, detect_stars
from .field import PSFField
from .fit import StarFits, asymmetry, fit_kernel, fit_stars, render_moffat
from .measure import PSFMeasurement, StarTable, measure_psf, measure_psf_field
from .moffat import (
    alpha_from_fwhm,
    fwhm_from_alpha,
    moffat_image,
    moffat_kernel,
    moffat_otf,
)
from .plot import plot_psf_field
from .report import format_psf_table, psf_to_json

__all__ = [
    "alpha_from_fwhm",
    "fwhm_from_alpha",
    "moffat_image",
    "moffat_kernel",
    "moffat_otf",
    "PSFField",
    "Candidates",
    "detect_stars",
    "StarFits",
    "asymmetry",
    "fit_kernel",
    "fit_stars",
    "render_moffat",
    "PSFMeasurement",
    "StarTable",
    "measure_psf",
    "measure_psf_field",
    "plot_psf_field",
    "format_psf_table",
    "psf_to_json",
]
