"""``astrosharp demo``: sharpen a simulated sky and show it before and after.

The example is made on the spot by the seeded simulator (:mod:`astrosharp.synth`):
an RGB star field over nebulosity, blurred by a field-varying, slightly
aberrated Moffat PSF (FWHM about 4 px), with photon and read noise. Nothing is
downloaded and no image is bundled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import AstrosharpError
from .params import SharpenParams

__all__ = ["DEMO_PARAMS", "demo_image", "stretch", "before_after_png", "run_demo"]

DEMO_PARAMS = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5)
"""The benchmark setting: stars and non-stellar structure to half their FWHM."""


def demo_image(size: int = 640, seed: int = 1) -> np.ndarray:
    """A simulated linear RGB exposure of ``size`` x ``size`` px.

    Returns
    -------
    (3, size, size) ndarray of float32
        Linear data in [0, 1] (saturation at 1), background about 0.02.
    """
    from . import synth

    if size < 64:
        raise AstrosharpError(f"demo size must be at least 64 px, got {size}")
    rng = np.random.default_rng(seed)
    sigma = 1e-3
    scene = synth.make_scene((size, size), 3, rng, kind="nebula", sigma=sigma, saturation=1.0,
                             star_density=1.5e-3)
    psf = synth.make_psf_model((size, size), 3, rng, fwhm=(3.8, 4.4), beta=(2.5, 3.5),
                               ellipticity=(0.05, 0.15), aberrations=True, chromatic=True, vary=True)
    obs = synth.observe(scene, psf, rng, sigma=sigma, background=0.02, saturation=1.0)
    return obs.image.astype(np.float32)


def stretch(data: np.ndarray, level: np.ndarray, sigma: np.ndarray, white: float) -> np.ndarray:
    """Display stretch: asinh of the background-subtracted data, in [0, 1].

    Parameters
    ----------
    data : (C, H, W) ndarray
    level, sigma : (C,) ndarray
        Background level and noise per channel (the black point sits 2 sigma
        below the background; asinh turns over at 3 sigma).
    white : float
        Background-subtracted value shown as white.

    Returns
    -------
    (H, W, C) ndarray of float in [0, 1]
    """
    lv = np.asarray(level, float)[:, None, None]
    sg = np.asarray(sigma, float)[:, None, None]
    k = 3.0 * float(np.median(sg))
    x = (np.nan_to_num(data, nan=0.0) - lv + 2.0 * sg) / k
    y = np.arcsinh(np.clip(x, 0, None)) / np.arcsinh(max(white / k, 1e-6))
    return np.clip(np.moveaxis(y, 0, -1), 0.0, 1.0)


def before_after_png(before: np.ndarray, after: np.ndarray, path: str | Path, *, title: str = "") -> Path:
    """Draw the input and the result side by side (same stretch), with a 4x zoom
    on the brightest unsaturated region below, and save it as PNG."""
    from ._mpl import matplotlib

    matplotlib().use("Agg", force=True)
    import matplotlib.pyplot as plt

    from .noise import estimate_background

    bg = estimate_background(before)
    white = float(np.nanpercentile(before - bg.level[:, None, None], 99.8))
    a = stretch(before, bg.level, bg.sigma, white)
    b = stretch(after, bg.level, bg.sigma, white)
    if a.shape[-1] == 1:
        a, b = a[..., 0], b[..., 0]
    h, w = before.shape[1:]
    z = max(32, min(h, w) // 4)
    # a crowded patch: highest mean of the stretched input over z x z boxes
    lum = a if a.ndim == 2 else a.mean(axis=-1)
    best, y0, x0 = -1.0, 0, 0
    for yy in range(0, h - z + 1, z // 2):
        for xx in range(0, w - z + 1, z // 2):
            m = float(lum[yy : yy + z, xx : xx + z].mean())
            if m > best:
                best, y0, x0 = m, yy, xx
    fig, axes = plt.subplots(2, 2, figsize=(10, 10.6), dpi=100)
    kw: dict[str, Any] = {"cmap": "gray"} if a.ndim == 2 else {}
    for col, (img, label) in enumerate(((a, "before"), (b, "after (astrosharp)"))):
        axes[0, col].imshow(img, origin="lower", interpolation="nearest", **kw)
        axes[0, col].add_patch(plt.Rectangle((x0, y0), z, z, fill=False, edgecolor="yellow", lw=1))
        axes[0, col].set_title(label)
        axes[1, col].imshow(img[y0 : y0 + z, x0 : x0 + z], origin="lower", interpolation="nearest", **kw)
        axes[1, col].set_title(f"{label}, zoom")
        for ax in axes[:, col]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def run_demo(
    out_dir: str | Path,
    *,
    method: str = "nn",
    seed: int = 1,
    size: int = 640,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Path]:
    """Simulate, sharpen and draw: writes ``demo_input.fits``,
    ``demo_astrosharp.fits`` and ``demo_before_after.png`` in ``out_dir``
    (created if needed).

    Returns
    -------
    dict of str to Path
        ``"input"``, ``"result"`` and ``"picture"``.
    """
    from . import __version__
    from .image import Image
    from .io import write_image
    from .io import check_output_path
    from .pipeline import history_line, sharpen

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "input": out / "demo_input.fits",
        "result": out / "demo_astrosharp.fits",
        "picture": out / "demo_before_after.png",
    }
    for p in paths.values():
        check_output_path(p, overwrite=overwrite)
    params = DEMO_PARAMS.replace(method=method)
    data = demo_image(size, seed)
    image = Image(data=data)
    image.header["OBJECT"] = ("astrosharp demo", "simulated sky")
    image.header["DEMOSEED"] = (seed, "seed of astrosharp.synth")
    write_image(image, paths["input"], overwrite=overwrite,
                history=f"astrosharp {__version__} demo: simulated scene, seed {seed}")
    result = sharpen(image, params, progress=progress)
    write_image(result.image, paths["result"], overwrite=overwrite, history=history_line(params, result.method))
    before_after_png(data, result.image.data, paths["picture"],
                     title=f"astrosharp {__version__}: {history_line(params, result.method).split(': ', 1)[1]}")
    return paths
