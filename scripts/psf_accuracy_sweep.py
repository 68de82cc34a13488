"""Accuracy of the PSF field measurement on the simulator's images of known PSF.

For each case the measured field is compared at every tile node with the truth
at that node, taken two ways:

* ``kernel``: the Moffat fit of the simulator's true kernel at the node pixel
  (``psf.kernel(y, x, centred=False)``, i.e. as rendered in the image, including
  the broadening from blending laterally shifted node PSFs, fitted by
  :func:`astrosharp.psf.fit.fit_kernel`): what an ideal measurement finds there;
* ``moffat_at``: the simulator's own interpolation of its node fits
  (``psf.moffat_at``).

Bars (issue 3): FWHM within 3 %, beta within 15 %, ellipticity within 0.03,
angle within 5 degrees where ellipticity >= 0.1.

Usage::

    python scripts/psf_accuracy_sweep.py [--size 1024] [--seeds 0 1 2] [--cases ...]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from astrosharp import synth
from astrosharp.psf.fit import fit_kernel
from astrosharp.psf.measure import measure_psf

WIDE = {
    "wide_fwhm2": dict(fwhm=(2.0, 2.3), beta=(1.5, 6.0), ellipticity=(0.0, 0.4)),
    "wide_fwhm4": dict(fwhm=(3.5, 4.5), beta=(1.5, 6.0), ellipticity=(0.0, 0.4)),
    "wide_fwhm8": dict(fwhm=(7.0, 8.0), beta=(1.5, 6.0), ellipticity=(0.0, 0.4)),
}


def wide_case(name: str, seed: int, size: int):
    rng = np.random.default_rng([seed, 99, list(WIDE).index(name)])
    r = WIDE[name]
    psf = synth.make_psf_model((size, size), 3, rng, aberrations=False, chromatic=True, vary=True, nodes=3, **r)
    scene = synth.make_scene((size, size), 3, rng, kind="mixed", sigma=1e-3, saturation=1.0)
    obs = synth.observe(scene, psf, rng, sigma=1e-3, background=0.02, gradient=0.1, saturation=1.0)
    return psf, obs


def evaluate(psf, image):
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter("always")
        m = measure_psf(image)
    dt = time.perf_counter() - t0
    f = m.field
    rows = []
    for c in range(f.channels):
        for iy, y in enumerate(f.ys):
            for ix, x in enumerate(f.xs):
                k = fit_kernel(psf.kernel(y, x, c, size=61, centred=False))
                ma = psf.moffat_at(y, x, c)
                me = f.at(y, x, c)
                for truth, name in ((k, "kernel"), (ma, "moffat_at")):
                    da = np.nan
                    if truth["ellipticity"] >= 0.1:
                        da = abs(((me["angle"] - truth["angle"] + 90) % 180) - 90)
                    rows.append((name, c, me["fwhm"] / truth["fwhm"] - 1, me["beta"] / truth["beta"] - 1,
                                 me["ellipticity"] - truth["ellipticity"], da, truth["fwhm"], truth["beta"], truth["ellipticity"],
                                 int(f.origin[c, iy, ix])))
    return m, rows, dt, [str(w.message) for w in wlist]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--cases", nargs="+", default=["stars_mono", "stars_rgb_aberrated", "cluster_rgb", "galaxies_mono", "nebula_rgb"] + list(WIDE))
    args = ap.parse_args(argv)
    print(f"{'case':<22}{'seed':>4}{'truth':>10}{'|dF| max':>9}{'med':>7}{'|dB| max':>9}{'|de| max':>9}{'|da| max':>9}"
          f"{'F':>6}{'beta':>6}{'e':>6}{'stars':>6}{'s':>6}")
    allrows = []
    for name in args.cases:
        for seed in args.seeds:
            if name in WIDE:
                psf, obs = wide_case(name, seed, args.size)
            else:
                case = synth.make_case(name, seed, args.size)
                psf, obs = case.psf, case.obs
            m, rows, dt, warns = evaluate(psf, obs.image)
            for truth in ("kernel", "moffat_at"):
                r = [q for q in rows if q[0] == truth]
                a = np.array([q[2:9] for q in r], float)
                da = a[:, 3]
                print(f"{name:<22}{seed:>4}{truth:>10}{np.max(np.abs(a[:, 0])) * 100:8.1f}%{np.median(a[:, 0]) * 100:6.1f}%"
                      f"{np.max(np.abs(a[:, 1])) * 100:8.1f}%{np.max(np.abs(a[:, 2])):9.3f}"
                      f"{(np.nanmax(da) if np.isfinite(da).any() else float('nan')):9.1f}"
                      f"{np.median(a[:, 4]):6.2f}{np.median(a[:, 5]):6.2f}{np.median(a[:, 6]):6.2f}{int(m.stars.used.sum()):6d}{dt:6.1f}")
                allrows += [(name, seed) + q for q in r]
            for wmsg in warns:
                print("   warning:", wmsg[:100])
    for truth in ("kernel", "moffat_at"):
        a = np.array([q[4:9] for q in allrows if q[2] == truth], float)
        print(f"\n{truth}: nodes {len(a)}; within bars: FWHM 3% {np.mean(np.abs(a[:, 0]) <= 0.03) * 100:.0f}%, "
              f"beta 15% {np.mean(np.abs(a[:, 1]) <= 0.15) * 100:.0f}%, e 0.03 {np.mean(np.abs(a[:, 2]) <= 0.03) * 100:.0f}%, "
              f"angle 5 deg {np.mean(a[np.isfinite(a[:, 3]), 3] <= 5) * 100 if np.isfinite(a[:, 3]).any() else float('nan'):.0f}% "
              f"(of {int(np.isfinite(a[:, 3]).sum())})")


if __name__ == "__main__":
    main()
