"""Before/after of the shipped network on the real images, with seam checks.

For each image of ``../shared/data/real`` (and the PixInsight M57 XISF):

* the PSF measured before and after (``astrosharp.psf.measure_psf``): median
  FWHM and ellipticity of the stars;
* the same measures on the same stars: those used before with S/N of at
  least 50, matched (same channel, within 1 px) to a star used after; their
  median ellipticity, and the coherent ellipticity ``|(median e1, median e2)|``
  (an elongation the stars share, as from trailing or astigmatism; noise
  makes each star's ``e`` positive but does not line them up). The plain
  medians above compare different sets of stars: sharpening makes faint
  stars detectable, and a faint star's ellipticity is mostly noise;
* a seam check: the image is sharpened twice, with the network engine's
  tiles (fitted to the image, ``astrosharp.tiles.fit_tile``) and with tiles
  of 320 px (a different grid: every seam moves). Where the
  tiles meet, the two results would disagree if the tiling left a mark; the
  script reports the 90th percentile of |difference| (in noise sigmas) in
  bands of 8 px around the seams of either grid and elsewhere;
* a picture ``OUT/NAME.png``: the central crop before and after with the same
  stretch, and a zoom on a bright star.

Usage::

    python scripts/real_before_after.py [--data ../shared/data] [--out before_after] [--only sdss,NGC]
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np


def _images(data: Path) -> list[Path]:
    real = data / "real"
    files = sorted(p for p in real.iterdir() if p.is_file() and not p.name.startswith("PSF_") and p.suffix != ".md")
    x = data / "xisf" / "test.xisf"
    return files + ([x] if x.exists() else [])


def _seam_bands(shape: tuple[int, int], tile: int, overlap: float, width: int = 8) -> np.ndarray:
    """Pixels within ``width`` of where a tile's blending weight starts or ends."""
    from astrosharp.tiles import plan_grid

    g = plan_grid(shape, tile, overlap)
    band = np.zeros(shape, bool)
    for starts, n, axis in ((g.y_starts, shape[0], 0), (g.x_starts, shape[1], 1)):
        size = min(tile, n)
        for s in starts:
            for edge in (s, s + size):
                if 0 < edge < n:
                    sl = slice(max(0, edge - width), min(n, edge + width))
                    if axis == 0:
                        band[sl, :] = True
                    else:
                        band[:, sl] = True
    return band


def _matched(before, after, min_snr: float = 50.0, radius: float = 1.0):
    """Indices (i_before, i_after) of used stars of S/N >= min_snr found again after."""
    from scipy.spatial import cKDTree

    ib = np.flatnonzero(before.used & (before.snr >= min_snr))
    ia = np.flatnonzero(after.used)
    pairs_b, pairs_a = [], []
    for c in np.unique(before.channel[ib]):
        b = ib[before.channel[ib] == c]
        a = ia[after.channel[ia] == c]
        if not len(a) or not len(b):
            continue
        d, j = cKDTree(np.c_[after.x[a], after.y[a]]).query(np.c_[before.x[b], before.y[b]])
        ok = d <= radius
        pairs_b.append(b[ok])
        pairs_a.append(a[j[ok]])
    if not pairs_b:
        return np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(pairs_b), np.concatenate(pairs_a)


def _coherent_e(t, idx) -> float:
    return float(np.hypot(np.median(t.e1[idx]), np.median(t.e2[idx]))) if len(idx) else float("nan")


def _stretch(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(np.arcsinh((a - lo) / (0.02 * (hi - lo))) / np.arcsinh(1 / 0.02), 0, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("ASTROSHARP_SHARED", "../shared") + "/data")
    ap.add_argument("--out", default="before_after")
    ap.add_argument("--sharpen-stars", type=float, default=1.0)
    ap.add_argument("--sharpen-nonstellar", type=float, default=0.5)
    ap.add_argument("--orientations", type=int, default=1, help="network orientations averaged (1, 2, 4 or 8)")
    ap.add_argument("--only", default="", help="comma-separated parts of the file names to process (default: all)")
    a = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from astrosharp.io import read_image
    from astrosharp.nn import Model
    from astrosharp.noise import estimate_background
    from astrosharp.params import SharpenParams
    from astrosharp import pipeline
    from astrosharp.pipeline import sharpen
    from astrosharp.tiles import fit_tile
    from astrosharp.psf import measure_psf

    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = Model.load()
    rows = []
    only = [t for t in a.only.split(",") if t]
    for path in _images(Path(a.data)):
        if only and not any(t in path.name for t in only):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = read_image(path)
            data = img.data
            p = SharpenParams(sharpen_stars=a.sharpen_stars, sharpen_nonstellar=a.sharpen_nonstellar,
                             orientations=a.orientations)
            res = sharpen(data, p, model=model)
            saved = pipeline.NN_TILES
            pipeline.NN_TILES = (320, 320)
            try:
                res2 = sharpen(data, p, model=model)
            finally:
                pipeline.NN_TILES = saved
            before = measure_psf(data)
            after = measure_psf(res.image.data)
        out = res.image.data
        bg = estimate_background(data)
        sig = np.asarray(bg.sigma, float)
        h, w = data.shape[1:]
        diff = (out - res2.image.data) / sig[:, None, None]
        tile, overlap = fit_tile((h, w), *pipeline.NN_TILES, blend=pipeline.NN_BLEND)
        seams = _seam_bands((h, w), tile, overlap) | _seam_bands((h, w), 320, pipeline.NN_BLEND / 320)
        # robust: the two tilings also differ a little on bright star cores,
        # wherever they are; a seam would raise the typical difference along the bands
        rms_seam = float(np.percentile(np.abs(diff[:, seams]), 90)) if seams.any() else float("nan")
        rms_else = float(np.percentile(np.abs(diff[:, ~seams]), 90)) if (~seams).any() else float("nan")
        sb = before.stars.select(before.stars.used)
        sa = after.stars.select(after.stars.used)
        fb = float(np.median(sb.fwhm)) if len(sb) else float("nan")
        fa = float(np.median(sa.fwhm)) if len(sa) else float("nan")
        eb = float(np.median(sb.ellipticity)) if len(sb) else float("nan")
        ea = float(np.median(sa.ellipticity)) if len(sa) else float("nan")
        mb, ma = _matched(before.stars, after.stars)
        med = (lambda t, i, k: float(np.median(getattr(t, k)[i])) if len(i) else float("nan"))
        matched = (len(mb), med(before.stars, mb, "fwhm"), med(after.stars, ma, "fwhm"),
                   med(before.stars, mb, "ellipticity"), med(after.stars, ma, "ellipticity"),
                   _coherent_e(before.stars, mb), _coherent_e(after.stars, ma))
        rows.append((path.name, data.shape, len(sb), len(sa), fb, fa, eb, ea, rms_seam, rms_else, matched))

        # picture: central crop and a zoom on a bright star, same stretch
        lum_in = data.mean(axis=0)
        lum_out = out.mean(axis=0)
        lvl = float(np.median(np.asarray(bg.level)))
        lo, hi = lvl - float(sig.mean()), float(np.percentile(lum_in, 99.95))
        c = min(h, w, 384)
        y0, x0 = (h - c) // 2, (w - c) // 2
        crop = (slice(y0, y0 + c), slice(x0, x0 + c))
        fig, ax = plt.subplots(2, 2, figsize=(9, 9))
        ax[0, 0].imshow(_stretch(lum_in[crop], lo, hi), cmap="gray", origin="lower")
        ax[0, 0].set_title(f"before: FWHM {fb:.2f} px, e {eb:.3f}")
        ax[0, 1].imshow(_stretch(lum_out[crop], lo, hi), cmap="gray", origin="lower")
        ax[0, 1].set_title(f"after: FWHM {fa:.2f} px, e {ea:.3f}")
        if len(sb):
            j = int(np.argsort(sb.flux)[len(sb) * 9 // 10])
            sy, sx = int(round(sb.y[j])), int(round(sb.x[j]))
        else:
            sy, sx = h // 2, w // 2
        z = max(12, int(6 * (fb if np.isfinite(fb) else 3)))
        zs = (slice(max(0, sy - z), sy + z + 1), slice(max(0, sx - z), sx + z + 1))
        zhi = float(lum_in[zs].max())
        ax[1, 0].imshow(_stretch(lum_in[zs], lo, zhi), cmap="gray", origin="lower", interpolation="nearest")
        ax[1, 0].set_title("before (zoom, star)")
        ax[1, 1].imshow(_stretch(lum_out[zs], lo, zhi), cmap="gray", origin="lower", interpolation="nearest")
        ax[1, 1].set_title(f"after (zoom); tilings differ (p90) {rms_seam:.3f} sigma at seams, {rms_else:.3f} elsewhere")
        for aa in ax.ravel():
            aa.set_xticks([])
            aa.set_yticks([])
        fig.suptitle(f"{path.name}: astrosharp (sharpen stars {p.sharpen_stars:g}, non-stellar {p.sharpen_nonstellar:g})")
        fig.tight_layout()
        fig.savefig(out_dir / (path.stem.replace(" ", "_") + ".png"), dpi=60)
        plt.close(fig)

    print(f"{'image':56s} {'shape':>16s} {'n* in':>5s} {'out':>4s} {'FWHM in':>8s} {'out':>6s} {'ratio':>6s} {'e in':>6s} {'e out':>6s} "
          f"{'seam p90':>8s} {'else':>6s}")
    for name, shape, n, n2, fb, fa, eb, ea, rs, re, _ in rows:
        print(f"{name:56s} {str(shape):>16s} {n:5d} {n2:4d} {fb:8.2f} {fa:6.2f} {fa / fb:6.3f} {eb:6.3f} {ea:6.3f} {rs:8.4f} {re:6.4f}")
    print()
    print("the same stars (S/N >= 50 before, found again after within 1 px):")
    print(f"{'image':56s} {'n':>5s} {'FWHM in':>8s} {'out':>6s} {'ratio':>6s} {'e in':>6s} {'e out':>6s} {'coh in':>7s} {'out':>6s}")
    for name, *_, (n, fb, fa, eb, ea, cb, ca) in rows:
        print(f"{name:56s} {n:5d} {fb:8.2f} {fa:6.2f} {fa / fb:6.3f} {eb:6.3f} {ea:6.3f} {cb:7.3f} {ca:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
