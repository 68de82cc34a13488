"""Quick check of an exported model on the simulator's bench cases (not the
bench itself: ``astrosharp bench`` is the reference). Runs the network on the
whole case as one tile with the *true* PSF field, and prints PSNR against the
noise-free truth (linear, saturated pixels excluded) for the input, the
output and the ceiling "truth + the input's own noise", plus the median and
90th-percentile flux error of the 40 brightest stars in 3-FWHM apertures
(output minus the truth's non-stellar layer, against the truth's stars).

::

    python -m training.quick_eval --cases stars_mono nebula_rgb --size 256
"""

from __future__ import annotations

import argparse

import numpy as np

from astrosharp import synth
from astrosharp.nn import Model


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    rng = float(b[mask].max() - b[mask].min())
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return 10 * np.log10(rng**2 / max(mse, 1e-30))


def evaluate_case(model: Model, name: str, seed: int, size: int) -> dict[str, float]:
    case = synth.make_case(name, seed=seed, size=size)
    obs = case.obs
    img = obs.image[None].astype(np.float32)
    c, h, w = obs.image.shape
    maps = case.psf.field().maps(0, 0, h, w)[None]
    if case.params.psf_diameter is not None:
        from astrosharp.psf.field import PSFField

        maps = PSFField.uniform((h, w), c, float(case.params.psf_diameter)).maps(0, 0, h, w)[None]
    stars, ns = model.translate(img, obs.background[None].astype(np.float32), obs.sigma, obs.saturation, maps,
                                case.params)
    out = (stars + ns)[0]
    truth = case.truth.image
    mask = ~obs.saturated
    res = {
        "psnr_input": _psnr(obs.image, truth, mask),
        "psnr_out": _psnr(out, truth, mask),
        "psnr_ceiling": _psnr((truth + obs.noise).astype(np.float32), truth, mask),
    }
    sc = case.scene
    if len(sc.star_x):
        yy, xx = np.mgrid[0:h, 0:w]
        f_err = []
        bright = np.argsort(-sc.star_flux.sum(0))[:40]
        for k in bright:
            x0, y0 = sc.star_x[k], sc.star_y[k]
            if not (12 <= x0 < w - 12 and 12 <= y0 < h - 12):
                continue
            fw = case.psf.moffat_at(y0, x0, 0)["fwhm"]
            ap = np.hypot(yy - y0, xx - x0) < 3 * fw
            ft = float((case.truth.stars[:, ap]).sum())
            if ft <= 50 * float(obs.sigma.mean()) * 3 * fw:
                continue
            fo = float((out - (truth - case.truth.stars))[:, ap].sum())
            f_err.append(fo / ft - 1)
        if f_err:
            res["flux_err_median"] = float(np.median(f_err))
            res["flux_err_p90"] = float(np.percentile(np.abs(f_err), 90))
            res["stars_measured"] = len(f_err)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.quick_eval")
    ap.add_argument("--model", default=None)
    ap.add_argument("--cases", nargs="*", default=["stars_mono", "nebula_rgb", "galaxies_mono"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    model = Model.load(a.model, threads=a.threads)
    print(model.describe())
    for name in a.cases:
        r = evaluate_case(model, name, a.seed, a.size)
        print(name, " ".join(f"{k}={v:.4g}" for k, v in r.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
