"""The PSF field: Moffat parameters per tile node and channel, interpolated
smoothly to any pixel.

Parameters are stored as ``PARAM_NAMES`` = fwhm (px), beta, e1, e2, asym_x,
asym_y where ``e1 = e cos 2θ`` and ``e2 = e sin 2θ`` (e = ellipticity, θ the
major-axis angle) so that orientation interpolates without wrap-around, and
(asym_x, asym_y) is the coma-like asymmetry vector (dimensionless, 0 for a
symmetric PSF; defined in :mod:`astrosharp.psf.fit`).

The measurement that fills a field from stars is :func:`measure_psf_field`
(in :mod:`astrosharp.psf.measure`); this module is only the container.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.interpolate import RectBivariateSpline

from ..params import DEFAULT_BETA

__all__ = ["PARAM_NAMES", "ORIGINS", "PSFField", "moffat_shape"]

PARAM_NAMES = ("fwhm", "beta", "e1", "e2", "asym_x", "asym_y")
ORIGINS = ("own", "neighbours", "image", "fallback", "manual", "model")
"""Where a node's values came from (index stored in :attr:`PSFField.origin`):
its tile's stars (own), neighbouring tiles (neighbours, no longer produced by
the measurement), the whole-image median (image), the default (fallback), the
user's diameter (manual), or the smooth polynomial model of all the image's
stars (model)."""


def moffat_shape(values: np.ndarray) -> dict[str, float]:
    """fwhm, beta, ellipticity, angle (degrees, 0 to 180) of the elliptical
    Moffat that one (P,) vector of field parameters in PARAM_NAMES order
    describes (ellipticity capped at 0.9, beta at least 1.05)."""
    fwhm, beta, e1, e2 = (float(v) for v in values[:4])
    e = float(np.clip(np.hypot(e1, e2), 0.0, 0.9))
    ang = float(np.rad2deg(0.5 * np.arctan2(e2, e1)) % 180.0)
    return {"fwhm": fwhm, "beta": max(beta, 1.05), "ellipticity": e, "angle": ang}


@dataclass
class PSFField:
    """Moffat PSF parameters on a grid of nodes (tile centres), per channel.

    Attributes
    ----------
    shape : (H, W)
        Image size in pixels.
    ys, xs : (ny,), (nx,) ndarray
        Node row and column coordinates (pixels), increasing.
    values : (C, P, ny, nx) ndarray of float64
        Parameters in ``PARAM_NAMES`` order.
    counts : (C, ny, nx) ndarray of int
        Stars used for each node's own estimate.
    scatter : (C, P, ny, nx) ndarray of float64
        Robust scatter (1.4826 MAD) of the stars' values at each node.
    origin : (C, ny, nx) ndarray of int
        Index into ``ORIGINS``.
    notes : list of str
        What a user should know (fallbacks, borrowed tiles), for the output.
    """

    shape: tuple[int, int]
    ys: np.ndarray
    xs: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    scatter: np.ndarray
    origin: np.ndarray
    notes: list[str] = field(default_factory=list)

    # -- construction -------------------------------------------------
    @classmethod
    def uniform(
        cls,
        shape: tuple[int, int],
        channels: int,
        fwhm: float,
        beta: float = DEFAULT_BETA,
        ellipticity: float = 0.0,
        angle: float = 0.0,
        origin: str = "manual",
        note: str | None = None,
    ) -> "PSFField":
        """The same PSF everywhere and in every channel (one node)."""
        h, w = shape
        t = np.deg2rad(angle)
        v = np.array([fwhm, beta, ellipticity * np.cos(2 * t), ellipticity * np.sin(2 * t), 0.0, 0.0])
        values = np.broadcast_to(v[None, :, None, None], (channels, len(PARAM_NAMES), 1, 1)).copy()
        return cls(
            shape=(int(h), int(w)),
            ys=np.array([(h - 1) / 2.0]),
            xs=np.array([(w - 1) / 2.0]),
            values=values,
            counts=np.zeros((channels, 1, 1), dtype=int),
            scatter=np.zeros_like(values),
            origin=np.full((channels, 1, 1), ORIGINS.index(origin), dtype=int),
            notes=[note] if note else [],
        )

    # -- access -------------------------------------------------------
    @property
    def channels(self) -> int:
        return int(self.values.shape[0])

    def param(self, name: str) -> np.ndarray:
        """(C, ny, nx) node values of one parameter (also 'ellipticity', 'angle')."""
        if name == "ellipticity":
            return np.hypot(self.param("e1"), self.param("e2"))
        if name == "angle":
            return np.rad2deg(0.5 * np.arctan2(self.param("e2"), self.param("e1"))) % 180.0
        return self.values[:, PARAM_NAMES.index(name)]

    def _splines(self, c: int, p: int) -> Any:
        z = self.values[c, p]
        ky = min(3, len(self.ys) - 1)
        kx = min(3, len(self.xs) - 1)
        if ky == 0 or kx == 0:
            return None
        return RectBivariateSpline(self.ys, self.xs, z, kx=ky, ky=kx)

    def _interp(self, c: int, p: int, y: np.ndarray, x: np.ndarray, grid: bool) -> np.ndarray:
        """One parameter at rows ``y`` and columns ``x`` (already clamped to
        the node range): on the grid y x x (``grid``, shape (len(y), len(x)))
        or at the points (y[i], x[i]) (shape (len(y),))."""
        z = self.values[c, p]
        shape = (len(y), len(x)) if grid else (len(y),)
        if z.size == 1 or np.all(z == z.flat[0]):
            return np.full(shape, z.flat[0])
        if len(self.ys) == 1 or len(self.xs) == 1:
            # 1-D interpolation along the axis that has nodes
            if len(self.ys) == 1:
                line = np.interp(x, self.xs, z[0])
                return np.broadcast_to(line[None, :], shape) if grid else line
            line = np.interp(y, self.ys, z[:, 0])
            return np.broadcast_to(line[:, None], shape) if grid else line
        sp = self._splines(c, p)
        m = sp(y, x) if grid else sp.ev(y, x)
        return np.clip(m, z.min(), z.max())  # no spline overshoot

    def maps(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """Smoothly interpolated parameters over the box rows y0..y0+h, columns
        x0..x0+w (may extend beyond the image: values are held constant outside
        the node range).

        Returns
        -------
        (C, P, h, w) ndarray of float32
        """
        yy = np.clip(np.arange(y0, y0 + h, dtype=float), self.ys[0], self.ys[-1])
        xx = np.clip(np.arange(x0, x0 + w, dtype=float), self.xs[0], self.xs[-1])
        out = np.empty((self.channels, len(PARAM_NAMES), h, w), dtype=np.float32)
        if len(self.ys) > 1 and len(self.xs) > 1:
            self._grid_maps(yy, xx, out)
            return out
        for c in range(self.channels):
            for p in range(len(PARAM_NAMES)):
                out[c, p] = self._interp(c, p, yy, xx, grid=True)
        return out

    def _grid_maps(self, yy: np.ndarray, xx: np.ndarray, out: np.ndarray) -> None:
        """:meth:`maps` on a grid of at least 2 x 2 nodes, every parameter at
        once: the splines of :meth:`_splines` share their knots (they
        interpolate the same nodes), so each plane is ``By @ C @ Bx.T`` with
        the B-spline design matrices of the rows and columns (the same
        numbers as evaluating each spline, to float32 precision: 1e-6 px in
        a FWHM of 3 px; several times faster, and the tiled engine asks for
        18 planes per tile)."""
        from scipy.interpolate import BSpline

        key = self.values.tobytes()
        cache = self.__dict__.get("_spline_cache")
        if cache is None or cache[0] != key:
            c, p = self.values.shape[:2]
            splines = [[self._splines(ci, pi) for pi in range(p)] for ci in range(c)]
            ty, tx, _ = splines[0][0].tck  # the same knots for all (the same nodes)
            ky, kx = splines[0][0].degrees
            shape = (len(ty) - ky - 1, len(tx) - kx - 1)
            coefs = np.array([[np.reshape(sp.tck[2], shape) for sp in row] for row in splines])
            z = self.values
            cache = (key, coefs, ty, tx, ky, kx, z.min(axis=(2, 3)), z.max(axis=(2, 3)))
            self.__dict__["_spline_cache"] = cache
        _, coefs, ty, tx, ky, kx, lo, hi = cache
        by = BSpline.design_matrix(yy, ty, ky).toarray()
        bx = BSpline.design_matrix(xx, tx, kx).toarray()
        # the small product in float64, the full-size one in float32 (the maps' type)
        np.matmul(np.matmul(by, coefs).astype(np.float32), bx.T.astype(np.float32), out=out)  # (C, P, h, w)
        np.clip(out, lo[..., None, None].astype(np.float32), hi[..., None, None].astype(np.float32), out=out)
        flat = lo == hi  # constant planes exactly constant
        if flat.any():
            out[flat] = lo[flat][:, None, None].astype(np.float32)

    def sample(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The same interpolation as :meth:`maps` at scattered points.

        Parameters
        ----------
        y, x : (N,) array_like
            Row and column of each point (held constant outside the node range).

        Returns
        -------
        (C, P, N) ndarray of float64, parameters in ``PARAM_NAMES`` order
        """
        yy = np.clip(np.asarray(y, float).reshape(-1), self.ys[0], self.ys[-1])
        xx = np.clip(np.asarray(x, float).reshape(-1), self.xs[0], self.xs[-1])
        out = np.empty((self.channels, len(PARAM_NAMES), len(yy)))
        for c in range(self.channels):
            for p in range(len(PARAM_NAMES)):
                out[c, p] = self._interp(c, p, yy, xx, grid=False)
        return out

    def at(self, y: float, x: float, channel: int = 0) -> dict[str, float]:
        """Parameters at one pixel: fwhm, beta, ellipticity, angle (deg), asym_x, asym_y."""
        m = self.maps(int(round(y)), int(round(x)), 1, 1)[channel, :, 0, 0].astype(float)
        d = dict(zip(PARAM_NAMES, m))
        e = float(np.hypot(d["e1"], d["e2"]))
        ang = float(np.rad2deg(0.5 * np.arctan2(d["e2"], d["e1"])) % 180.0)
        return {
            "fwhm": d["fwhm"],
            "beta": d["beta"],
            "ellipticity": e,
            "angle": ang,
            "asym_x": d["asym_x"],
            "asym_y": d["asym_y"],
        }

    def median(self, channel: int = 0) -> dict[str, float]:
        """Median over nodes of each parameter of one channel (plus ellipticity, angle)."""
        out = {n: float(np.median(self.param(n)[channel])) for n in PARAM_NAMES}
        out["ellipticity"] = float(np.median(self.param("ellipticity")[channel]))
        out["angle"] = float(np.median(self.param("angle")[channel]))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description of the field."""
        return {
            "shape": list(self.shape),
            "ys": self.ys.tolist(),
            "xs": self.xs.tolist(),
            "params": list(PARAM_NAMES),
            "values": self.values.tolist(),
            "counts": self.counts.tolist(),
            "scatter": self.scatter.tolist(),
            "origin": [[[ORIGINS[i] for i in row] for row in ch] for ch in self.origin.tolist()],
            "notes": list(self.notes),
        }
