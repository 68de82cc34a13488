"""How much any linear filter could gain on the bench's manual-PSF nebula control.

Usage::

    python scripts/nebula_linear_bound.py [SEEDS] [SIZE] [nn]

e.g. ``python scripts/nebula_linear_bound.py 0,1,2,3 320 nn``. For each seed of
the control case ``nebula_starless_rgb`` (the one behind the bar "manual PSF
on a star-free nebula improves PSNR by at least 5 dB"), fits an *oracle*
linear filter per channel from the noise-free truth itself, then prints the
PSNR gain it gives over the input, next to the gain of the ideal output
(truth plus the input's own noise):

- ``radial``: the best isotropic filter, H(|k|) = <Y X*> / <|X|^2> over 60
  rings of spatial frequency (a Wiener filter that knows the true spectra);
- ``2d wN``: the same ratio smoothed over N x N frequency pixels, no
  isotropy assumed; with small N it nearly overfits this one frame, so it is
  an upper bound on what a linear method could reach, not a method.

With ``nn`` it also prints the gain of the shipped network at the bench's
setting for the case (``cc.params``: the manual PSF diameter of the source).

The network is not linear, but the numbers say how far the data alone carry
a deconvolution of this noise level (docs/controls.md, "manual PSF").
"""
import sys
import warnings

import numpy as np
from scipy.ndimage import uniform_filter

from astrosharp.bench import controls as C
from astrosharp.bench import metrics as M

seeds = [int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "0,1,2,3").split(",")]
size = int(sys.argv[2]) if len(sys.argv) > 2 else 320
model = None
if "nn" in sys.argv[3:]:
    from astrosharp.nn.session import Model

    model = Model.load()


def radial_filter(X, Y, nb=60):
    h, w = X.shape
    k = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    b = np.minimum((k / (np.sqrt(2) / 2 + 1e-4) * nb).astype(int), nb - 1)
    num = np.bincount(b.ravel(), (Y * np.conj(X)).real.ravel(), nb)
    den = np.bincount(b.ravel(), (np.abs(X) ** 2).ravel(), nb)
    return (num / np.maximum(den, 1e-30))[b]


def smoothed_filter(X, Y, win):
    cross = Y * np.conj(X)
    num = uniform_filter(cross.real, win, mode="wrap") + 1j * uniform_filter(cross.imag, win, mode="wrap")
    return num / np.maximum(uniform_filter(np.abs(X) ** 2, win, mode="wrap"), 1e-30)


for s in seeds:
    cc = C.make_control_case("nebula_starless_rgb", s, size)
    truth = C.truth_at(cc, cc.params).image
    obs = cc.obs
    valid = M.valid_mask(obs.saturated, obs.image.shape)
    bg = np.broadcast_to(np.asarray(obs.background, float), obs.image.shape)
    p_in = M.psnr(obs.image, truth, valid)
    row = {"ideal": M.psnr(truth + obs.noise, truth, valid) - p_in}
    filters = {"radial": radial_filter}
    filters.update({f"2d w{w}": (lambda X, Y, w=w: smoothed_filter(X, Y, w)) for w in (5, 11, 21)})
    for name, make in filters.items():
        out = np.empty(obs.image.shape, float)
        for c in range(obs.image.shape[0]):
            X = np.fft.fft2(obs.image[c] - bg[c])
            Y = np.fft.fft2(truth[c] - bg[c])
            out[c] = np.fft.ifft2(make(X, Y) * X).real + bg[c]
        row[name] = M.psnr(out, truth, valid) - p_in
    if model is not None:
        from astrosharp.pipeline import sharpen

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sharpen(obs.image, cc.params.replace(method="nn"), model=model)
        row["network"] = M.psnr(np.asarray(res.image.data), truth, valid) - p_in
    print(f"seed {s}: " + ", ".join(f"{k} {v:+.2f} dB" for k, v in row.items()), flush=True)
