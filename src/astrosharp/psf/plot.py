"""A picture of the PSF field: FWHM as colour, ellipticity as oriented whiskers.

One panel per channel: the interpolated FWHM map (colour, px), a whisker at
each tile node whose length is proportional to the ellipticity and whose
direction is the major axis, the node's FWHM written beside it, and optionally
the stars used (dots). Row 0 is at the bottom (FITS orientation), so angles
read counter-clockwise from +x as defined. Rendered with matplotlib's Agg
backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .field import ORIGINS, PSFField
from .report import channel_names

__all__ = ["plot_psf_field"]


def _coarse_maps(field: PSFField, step: float) -> np.ndarray:
    h, w = field.shape
    hh, ww = max(2, int(np.ceil(h / step))), max(2, int(np.ceil(w / step)))
    small = PSFField(
        shape=(hh, ww),
        ys=field.ys / step,
        xs=field.xs / step,
        values=field.values,
        counts=field.counts,
        scatter=field.scatter,
        origin=field.origin,
    )
    return small.maps(0, 0, hh, ww)


def plot_psf_field(field, path, image: np.ndarray | None = None, stars=None, dpi: int = 110) -> Path:
    """Draw a PSF field (or a ``PSFMeasurement``) to a PNG file.

    Parameters
    ----------
    field : PSFField or PSFMeasurement
        With a measurement, the stars used are drawn too.
    path : str or Path
        Output PNG path.
    image : (C, H, W) or (H, W) ndarray, optional
        The image, drawn faintly (asinh stretch) under the FWHM colours.
    stars : StarTable, optional
        Stars to mark (default: those of a PSFMeasurement).
    dpi : int

    Returns
    -------
    Path
    """
    from .._mpl import matplotlib

    matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if hasattr(field, "field") and isinstance(field.field, PSFField):
        if stars is None:
            stars = field.stars
        field = field.field
    h, w = field.shape
    C = field.channels
    names = channel_names(C)
    step = max(1.0, max(h, w) / 300.0)
    maps = _coarse_maps(field, step)
    fw = maps[:, 0]
    vmin, vmax = float(np.nanmin(fw)), float(np.nanmax(fw))
    if vmax - vmin < 0.05 * max(vmax, 1e-6):
        mid = 0.5 * (vmin + vmax)
        vmin, vmax = mid * 0.97, mid * 1.03
    aspect = h / max(w, 1)
    fig = Figure(figsize=(4.2 * C + 0.8, 4.2 * aspect + 1.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, C, squeeze=False)[0]
    ext = (-0.5, w - 0.5, -0.5, h - 0.5)
    emax = max(0.05, float(field.param("ellipticity").max()))
    L = 0.33 * min(np.diff(field.xs).min() if len(field.xs) > 1 else w, np.diff(field.ys).min() if len(field.ys) > 1 else h)
    im = None
    for c, ax in enumerate(axes):
        im = ax.imshow(fw[c], origin="lower", extent=ext, cmap="viridis", vmin=vmin, vmax=vmax, interpolation="bilinear")
        if image is not None:
            img = np.asarray(image)
            img = img[c] if img.ndim == 3 and img.shape[0] == C else (img.mean(0) if img.ndim == 3 else img)
            s = int(max(1, step))
            im2 = img[::s, ::s].astype(float)
            fin = np.isfinite(im2)
            if fin.any():
                lo, hi = np.percentile(im2[fin], [50, 99.7])
                z = np.arcsinh(np.clip((im2 - lo) / max(hi - lo, 1e-30), 0, None) * 10) / np.arcsinh(10)
                ax.imshow(np.nan_to_num(z), origin="lower", extent=ext, cmap="gray", alpha=0.25, vmin=0, vmax=1)
        if stars is not None and len(stars):
            sel = (np.asarray(stars.channel) == c) & np.asarray(stars.used)
            ax.plot(stars.x[sel], stars.y[sel], ".", ms=2, color="white", alpha=0.6)
        e = field.param("ellipticity")[c]
        ang = np.deg2rad(field.param("angle")[c])
        X, Y = np.meshgrid(field.xs, field.ys)
        length = L * e / emax
        dx, dy = length * np.cos(ang), length * np.sin(ang)
        for yy, xx, ddx, ddy in zip(Y.ravel(), X.ravel(), dx.ravel(), dy.ravel()):
            ax.plot([xx - ddx, xx + ddx], [yy - ddy, yy + ddy], color="red", lw=2.2, solid_capstyle="round")
        for iy, yy in enumerate(field.ys):
            for ix, xx in enumerate(field.xs):
                org = ORIGINS[int(field.origin[c, iy, ix])]
                label = f"{field.values[c, 0, iy, ix]:.2f}" + ("" if org == "own" else "*")
                ax.text(xx, yy - 0.12 * L, label, color="white", fontsize=7, ha="center", va="top")
        ax.set_xlim(ext[0], ext[1])
        ax.set_ylim(ext[2], ext[3])
        ax.set_title(f"{names[c]}: FWHM {field.median(c)['fwhm']:.2f} px, e {field.median(c)['ellipticity']:.2f}", fontsize=9)
        ax.set_xlabel("x (px)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("y (px)", fontsize=8)
    fig.subplots_adjust(bottom=0.2 if field.notes else 0.14, top=0.9, left=0.07, right=0.88, wspace=0.25)
    cax = fig.add_axes([0.9, 0.2 if field.notes else 0.14, 0.015, 0.7 if field.notes else 0.76])
    cb = fig.colorbar(im, cax=cax)
    cb.set_label("FWHM (px)", fontsize=8)
    foot = f"red whiskers: major axis, length = ellipticity (longest = {emax:.2f}); * = node from the whole-image model or a fallback"
    if field.notes:
        foot += "\n" + "; ".join(field.notes)[:220]
    fig.text(0.01, 0.01, foot, fontsize=7, va="bottom")
    out = Path(path)
    fig.savefig(out, format="png", dpi=dpi)
    return out
