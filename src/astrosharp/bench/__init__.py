"""The benchmark: fixed simulated cases and the real images, every method,
fidelity metrics against the truth at the target PSF (``astrosharp bench``)."""

from .runner import METHODS, BenchResult, run_bench

__all__ = ["METHODS", "BenchResult", "run_bench"]
