"""Per-star flux of the network's output on a bench case, with and without
the star flux conservation step (astrosharp.flux).

Usage::

    python scripts/flux_check.py CASE SEED SIZE [fix|nofix] [true]

``nofix`` skips the conservation step; ``true`` gives the pipeline the true
PSF field instead of measuring it. Prints the frame PSNR and, per channel,
the median signed flux error and the 90th percentile of |error| in the
bench's 5-FWHM aperture (and the same for the untouched input).
"""
import sys, warnings, numpy as np
from astrosharp.bench.cases import load_case
from astrosharp.bench import metrics as M
from astrosharp.params import SharpenParams
from astrosharp.pipeline import sharpen
from astrosharp.nn import Model

name = sys.argv[1] if len(sys.argv) > 1 else "stars_mono"
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 3
size = int(sys.argv[3]) if len(sys.argv) > 3 else 384
truepsf = "true" in sys.argv
if "nofix" in sys.argv:
    import astrosharp.flux as FX
    FX.conserve_star_flux = lambda stars, *a, **k: (stars, FX.FluxCorrection(0, np.zeros(3, int), np.zeros(3), np.zeros(3)))
bc = load_case(name, seed=seed, size=size)
case = bc.case
obs, truth = case.obs, case.truth
model = Model.load()
p = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5)
kw = {}
if truepsf:
    kw["psf_field"] = case.psf.field()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    res = sharpen(obs.image, p, model=model, **kw)
out = np.asarray(res.image.data, float)
t = truth.image
print("psnr", M.psnr(out, t, bc.valid), "input", M.psnr(obs.image, t, bc.valid))
for ch in range(bc.channels):
    sel = bc.selected[ch]
    r = M.star_metrics(out[ch], t[ch], truth.stars[ch], obs.image[ch], bc.star_x[sel], bc.star_y[sel],
                       bc.star_fwhm[ch, sel], float(obs.sigma[ch]), bc.target_fwhm[ch, sel])
    ri = M.aperture_sums(obs.image[ch] - (t[ch] - truth.stars[ch]), bc.star_x[sel], bc.star_y[sel], 5 * bc.star_fwhm[ch, sel]) / \
         M.aperture_sums(truth.stars[ch], bc.star_x[sel], bc.star_y[sel], 5 * bc.star_fwhm[ch, sel])
    fr = r["flux_ratio"]
    print(f"ch{ch} n={len(sel)} flux out-1 median {np.median(fr)-1:+.4f} p90|.| {np.percentile(abs(fr-1),90):.4f}  input-1 median {np.median(ri)-1:+.4f}  fwhm ratio {np.nanmedian(r['fwhm_ratio']):.3f} shift {np.nanmedian(r['shift']):.3f}")


