"""A table of per-source arrays (one row per star), shared by the detection
and the fit results."""

from __future__ import annotations

from dataclasses import fields

import numpy as np


class ArrayTable:
    """Mixin for dataclasses whose fields are equal-length arrays, one of them
    ``x`` and one ``flags`` (0 = usable)."""

    x: np.ndarray
    flags: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def good(self) -> np.ndarray:
        """(N,) bool: rows without flags."""
        return self.flags == 0

    def select(self, index):
        """A subset (boolean mask or index array) of the same type."""
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})
