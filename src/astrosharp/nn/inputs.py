"""The network's input and output layout, shared by training and inference.

Everything here is NumPy only: training (``training/``) and the ONNX Runtime
session (:mod:`astrosharp.nn.session`) call the same two functions,
:func:`build_inputs` and :func:`decode_outputs`, so the normalisation the
network was trained with is the one it is run with.

Normalisation
-------------
A tile ``x`` (linear, image units) becomes ``n = (x - b) / sigma`` with ``b``
the background level (per channel, or a map) and ``sigma`` the background
noise standard deviation per channel. The image enters at two compressions,
``u_faint = asinh(n / FAINT_SCALE)`` and ``u_bright = asinh(n / BRIGHT_SCALE)``.
The two output layers (stars, non-stellar) are predicted in the ``u_faint``
domain and decoded with ``n = FAINT_SCALE * sinh(y)``, ``x = n * sigma + b``
where the background ``b`` and the noise belong to the non-stellar layer.

Colour
------
The network always sees three colour channels. A mono tile is replicated to
three channels and the three outputs are averaged (training shows it such
replicated tiles too).

Input channels (``N_INPUTS`` = 41, in this order, ``c`` = colour channel)
------------------------------------------------------------------------
====  =====================================================================
0-2   u_faint per colour channel
3-5   u_bright per colour channel
6-8   noise map: log of the expected noise std relative to ``sigma``,
      ``0.5 * log1p(k * max(n, 0))`` with ``k`` the Poisson factor
      (``1 / (gain * sigma)``; 0 when unknown)
9-11  saturation mask (1 where the input reached its saturation level)
12-29 source PSF per colour channel (6 each, ``PSF_FEATURES`` order):
      log2(fwhm / 3), log2(beta / 3), 2 e1, 2 e2, asym_x, asym_y
30-38 targets per colour channel (3 each): log2(star FWHM target / fwhm),
      log2(star beta target / beta), log2(non-stellar FWHM target / fwhm)
39    correct-only flag (0 or 1)
40    denoise amount (0 to 1)
====  =====================================================================

Outputs (``N_OUTPUTS`` = 6): stars layer u_faint (3), non-stellar layer
u_faint (3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..params import BETA_LIMITS, F_MIN, SharpenParams

__all__ = [
    "FAINT_SCALE",
    "BRIGHT_SCALE",
    "NET_CHANNELS",
    "PSF_FEATURES",
    "N_INPUTS",
    "N_OUTPUTS",
    "TILE_MULTIPLE",
    "Controls",
    "normalisation_constants",
    "input_channel_names",
    "psf_features",
    "target_features",
    "transform_images",
    "untransform_images",
    "transform_psf_params",
    "ORIENTATIONS",
    "orient_inputs",
    "build_inputs",
    "decode_outputs",
    "encode_layer",
]

FAINT_SCALE = 3.0
"""asinh scale (noise sigmas) of the faint compression; also the output domain."""
BRIGHT_SCALE = 300.0
"""asinh scale (noise sigmas) of the bright compression."""
NET_CHANNELS = 3
"""Colour channels the network works on (mono is replicated)."""
PSF_FEATURES = ("fwhm", "beta", "e1", "e2", "asym_x", "asym_y")
"""Order of the source PSF parameters (as in :data:`astrosharp.psf.field.PARAM_NAMES`)."""
FWHM_REF = 3.0
BETA_REF = 3.0
BETA_MAX = 20.0
"""Largest beta the network is told (the star fit's upper bound; a PSF with no
Moffat wings, e.g. defocused, fits to beta -> infinity)."""
ELLIPTICITY_GAIN = 2.0
ASYM_MAX = 0.1
"""Largest |asym_x|, |asym_y| the network is told. The training PSFs' fields
stay within 0.075; a measurement from one or two odd stars can give far more
(a 512 px crop of NGC 7023, one star: asym_x 21 in red, 10 in blue), and
told that, the network is outside anything it learned (that crop came out
with its background 3 to 5.5 times too bright)."""
N_PER_CHANNEL_TARGETS = 3
N_INPUTS = 4 * NET_CHANNELS + len(PSF_FEATURES) * NET_CHANNELS + N_PER_CHANNEL_TARGETS * NET_CHANNELS + 2
N_OUTPUTS = 2 * NET_CHANNELS
TILE_MULTIPLE = 16
"""Network input height and width must be multiples of this (pad by reflection)."""
SATURATION_TOLERANCE = 1e-5
"""A pixel counts as saturated at ``x >= saturation * (1 - SATURATION_TOLERANCE)``."""


def _asinh(x: np.ndarray, scale: float, out: np.ndarray | None = None) -> np.ndarray:
    """``asinh(x / scale)`` in float32 as ``sign(x) log(|x|/scale + sqrt((x/scale)^2 + 1))``
    (into ``out`` when given).

    NumPy's ``arcsinh`` and ``sinh`` are not vectorised (4 to 5 times slower
    than its ``log``, ``exp`` and ``sqrt`` on a (4, 3, 544, 544) batch); these
    forms agree with them within 1e-6 absolute, far below the noise (one unit
    of ``n`` is one sigma)."""
    a = np.abs(np.asarray(x, dtype=np.float32)) * np.float32(1.0 / scale)
    r = np.multiply(a, a, out=out)
    r += np.float32(1.0)
    np.sqrt(r, out=r)
    r += a
    np.log(r, out=r)
    return np.copysign(r, x, out=r)


def _sinh(y: np.ndarray, scale: float) -> np.ndarray:
    """``scale * sinh(y)`` in float32 as ``scale/2 (e^y - e^-y)`` (see :func:`_asinh`)."""
    e = np.exp(np.asarray(y, dtype=np.float32))
    r = np.divide(np.float32(-1.0), e)
    r += e
    r *= np.float32(0.5 * scale)
    return r


def normalisation_constants() -> dict[str, Any]:
    """The constants of this layout, for a model's manifest."""
    return {
        "faint_scale": FAINT_SCALE,
        "bright_scale": BRIGHT_SCALE,
        "net_channels": NET_CHANNELS,
        "psf_features": list(PSF_FEATURES),
        "fwhm_ref": FWHM_REF,
        "beta_ref": BETA_REF,
        "ellipticity_gain": ELLIPTICITY_GAIN,
        "n_inputs": N_INPUTS,
        "n_outputs": N_OUTPUTS,
        "tile_multiple": TILE_MULTIPLE,
        "saturation_tolerance": SATURATION_TOLERANCE,
        "output_domain": "u = asinh(((x - background) / sigma) / faint_scale); stars then non-stellar",
    }


def input_channel_names() -> list[str]:
    """Names of the network's input channels, in order."""
    rgb = ("r", "g", "b")
    names = [f"u_faint_{c}" for c in rgb] + [f"u_bright_{c}" for c in rgb]
    names += [f"noise_{c}" for c in rgb] + [f"saturated_{c}" for c in rgb]
    feat = ("log2_fwhm_over_3", "log2_beta_over_3", "2e1", "2e2", "asym_x", "asym_y")
    names += [f"psf_{f}_{c}" for c in rgb for f in feat]
    tg = ("log2_star_fwhm_ratio", "log2_star_beta_ratio", "log2_nonstellar_fwhm_ratio")
    names += [f"target_{t}_{c}" for c in rgb for t in tg]
    return names + ["correct_only", "denoise"]


@dataclass(frozen=True)
class Controls:
    """Per-tile control values as arrays of shape (B,) (training samples them
    per item; inference takes them from one :class:`SharpenParams`).

    ``psf_diameter`` is NaN for automatic PSF, else the manual diameter D:
    the non-stellar target FWHM is then ``nonstellar_target(D, n)`` in pixels
    (as the simulator renders it), never wider than the local source FWHM,
    and D = 0 leaves non-stellar structure untouched.
    """

    sharpen_stars: np.ndarray
    adjust_halos: np.ndarray
    sharpen_nonstellar: np.ndarray
    correct_only: np.ndarray
    denoise: np.ndarray
    psf_diameter: np.ndarray

    @classmethod
    def from_params(cls, params: SharpenParams, batch: int) -> "Controls":
        """The same controls for ``batch`` tiles."""
        diameter = np.nan if params.psf_diameter is None else float(params.psf_diameter)
        def full(v: float) -> np.ndarray:
            return np.full(batch, float(v), dtype=np.float64)

        return cls(
            sharpen_stars=full(params.sharpen_stars),
            adjust_halos=full(params.adjust_halos),
            sharpen_nonstellar=full(params.sharpen_nonstellar),
            correct_only=full(1.0 if params.correct_only else 0.0),
            denoise=full(params.denoise),
            psf_diameter=full(diameter),
        )

    @classmethod
    def from_arrays(
        cls,
        sharpen_stars: Any,
        adjust_halos: Any,
        sharpen_nonstellar: Any,
        correct_only: Any,
        denoise: Any,
    ) -> "Controls":
        """Per-item controls (automatic PSF), e.g. from training examples."""
        s = np.asarray(sharpen_stars, dtype=np.float64).reshape(-1)
        return cls(
            sharpen_stars=s,
            adjust_halos=np.asarray(adjust_halos, dtype=np.float64).reshape(-1),
            sharpen_nonstellar=np.asarray(sharpen_nonstellar, dtype=np.float64).reshape(-1),
            correct_only=np.asarray(correct_only, dtype=np.float64).reshape(-1),
            denoise=np.asarray(denoise, dtype=np.float64).reshape(-1),
            psf_diameter=np.full(s.shape, np.nan),
        )


def _as_bchw(v: Any, b: int, c: int, name: str) -> np.ndarray:
    """Broadcast a per-channel value ((C,), (B, C), (B, C, h, w) or scalar) to 4-D."""
    a = np.asarray(v, dtype=np.float32)
    if a.ndim == 0:
        return a.reshape(1, 1, 1, 1)
    if a.ndim == 1:
        if a.shape[0] not in (1, c):
            raise ParameterError(f"{name} has {a.shape[0]} values for {c} channels")
        return a.reshape(1, -1, 1, 1)
    if a.ndim == 2:
        return a.reshape(a.shape[0], a.shape[1], 1, 1)
    if a.ndim == 4:
        return a
    raise ParameterError(f"{name} must be a scalar, (C,), (B, C) or (B, C, h, w) array, got shape {a.shape}")


def _replicate(a: np.ndarray, c: int) -> np.ndarray:
    """Repeat a channel axis of length 1 to NET_CHANNELS (axis 1)."""
    if c == NET_CHANNELS:
        return a
    return np.repeat(a, NET_CHANNELS, axis=1) if a.shape[1] == 1 else a


def psf_features(src_maps: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Normalised source PSF features.

    Parameters
    ----------
    src_maps : (B, C, P, h, w) ndarray
        Source PSF parameters in ``PSF_FEATURES`` order (from ``PSFField.maps``).
    out : (B, C * P, h, w) float32 ndarray, optional
        Where to write them (e.g. a view of the network's input stack).

    Returns
    -------
    (B, C * P, h, w) ndarray of float32
    """
    m = np.asarray(src_maps, dtype=np.float32)
    b, c, p, h, w = m.shape
    if out is None:
        out = np.empty((b, c * p, h, w), dtype=np.float32)
    res = out
    out = out.reshape(b, c, p, h, w)  # splits an axis: a view of the same memory
    f32 = np.float32
    # in place, plane by plane (these are the largest arrays the engine builds)
    for v, lo, hi, ref, k in ((m[:, :, 0], 0.3, None, FWHM_REF, 0), (m[:, :, 1], 1.01, BETA_MAX, BETA_REF, 1)):
        o = out[:, :, k]
        np.clip(v, f32(lo), None if hi is None else f32(hi), out=o)
        o *= f32(1.0 / ref)
        np.log2(o, out=o)
    np.multiply(m[:, :, 2:4], f32(ELLIPTICITY_GAIN), out=out[:, :, 2:4])
    np.clip(m[:, :, 4:6], f32(-ASYM_MAX), f32(ASYM_MAX), out=out[:, :, 4:6])
    return res


def target_features(src_maps: np.ndarray, controls: Controls, out: np.ndarray | None = None) -> np.ndarray:
    """Target maps from the source PSF and the controls (params.py formulas).

    Parameters
    ----------
    src_maps : (B, C, P, h, w) ndarray
        Source PSF parameters (``PSF_FEATURES`` order).
    controls : Controls
        Per-tile controls, arrays of shape (B,).
    out : (B, C * 3 + 2, h, w) float32 ndarray, optional
        Where to write them (e.g. a view of the network's input stack).

    Returns
    -------
    (B, C * 3 + 2, h, w) ndarray of float32
        Per channel: log2 star FWHM ratio, log2 star beta ratio, log2
        non-stellar FWHM ratio (targets over source); then the correct-only
        flag and the denoise amount.

    Notes
    -----
    Correct-only gives every channel the median of the channels' FWHM (per
    pixel) and keeps beta; it ignores the sharpening controls. Sharpening
    gives stars ``max(F_MIN, fwhm * (1 - 0.5 s))``, never wider than the
    source, and ``clip(beta * 2**(-2 h), 1.2, 10)``,
    and non-stellar ``max(F_MIN, (1 - n) fwhm)``, never wider than the source.
    """
    m = np.asarray(src_maps, dtype=np.float32)
    b, c, _, h, w = m.shape
    f32 = np.float32
    log_f = np.maximum(m[:, :, 0], f32(0.3))
    np.log2(log_f, out=log_f)
    log_beta = np.clip(m[:, :, 1], f32(1.01), f32(BETA_MAX))
    np.log2(log_beta, out=log_beta)
    if out is None:
        out = np.empty((b, c * N_PER_CHANNEL_TARGETS + 2, h, w), dtype=np.float32)
    k3 = c * N_PER_CHANNEL_TARGETS
    star, beta_r, neb = (out[:, j:k3:N_PER_CHANNEL_TARGETS] for j in range(3))  # (B, C, h, w) views

    def pick(a: np.ndarray, i: int) -> float:
        return float(a[i]) if a.size > 1 else float(a[0])

    lo, hi = (float(np.log2(v)) for v in BETA_LIMITS)
    log_fmin = float(np.log2(F_MIN))

    def floored(log_ratio: float, i: int, dst: np.ndarray) -> None:
        # log2(min(max(F_MIN / F, ratio), 1)): shrink by ratio, no further than F_MIN, never widen
        np.subtract(f32(log_fmin), log_f[i], out=dst)
        np.maximum(dst, f32(log_ratio), out=dst)
        np.minimum(dst, f32(0.0), out=dst)

    for i in range(b):
        co = pick(controls.correct_only, i)
        if co > 0.5:  # correct-only: the channels' median FWHM, beta kept, both layers
            if c == 1:
                star[i] = 0.0
            else:
                f = np.maximum(m[i, :, 0], f32(0.3))
                med = f.sum(0) - f.max(0) - f.min(0) if c == 3 else np.median(f, axis=0)
                np.subtract(np.log2(med)[None], log_f[i], out=star[i])
            beta_r[i] = 0.0
            neb[i] = star[i]
        else:
            s, hal = pick(controls.sharpen_stars, i), pick(controls.adjust_halos, i)
            n, dia = pick(controls.sharpen_nonstellar, i), pick(controls.psf_diameter, i)
            floored(float(np.log2(1.0 - 0.5 * s)), i, star[i])
            # log2(clip(beta 2^(-2h), limits) / beta)
            dst = beta_r[i]
            np.subtract(log_beta[i], f32(2.0 * hal), out=dst)
            np.clip(dst, f32(lo), f32(hi), out=dst)
            dst -= log_beta[i]
            if np.isfinite(dia):
                if dia > 0:
                    t = min(max(F_MIN, (1.0 - n) * dia), dia)
                    np.minimum(np.log2(t) - log_f[i], 0.0, out=neb[i])
                else:
                    neb[i] = 0.0
            else:
                floored(float(np.log2(1.0 - n)) if n < 1.0 else -np.inf, i, neb[i])
        out[i, -2] = co
        out[i, -1] = pick(controls.denoise, i)
    return out


def _check(tiles: np.ndarray, src_maps: np.ndarray) -> tuple[int, int, int, int]:
    if tiles.ndim != 4:
        raise ParameterError(f"tiles must be a (B, C, h, w) array, got shape {tiles.shape}")
    b, c, h, w = tiles.shape
    if c not in (1, NET_CHANNELS):
        raise ParameterError(f"tiles must have 1 or {NET_CHANNELS} channels, got {c}")
    if src_maps.ndim != 5 or src_maps.shape[0] != b or src_maps.shape[1] != c or src_maps.shape[3:] != (h, w):
        raise ParameterError(
            f"src_maps must be (B, C, {len(PSF_FEATURES)}, h, w) = ({b}, {c}, {len(PSF_FEATURES)}, {h}, {w}), "
            f"got shape {src_maps.shape}"
        )
    if src_maps.shape[2] != len(PSF_FEATURES):
        raise ParameterError(f"src_maps must hold {len(PSF_FEATURES)} PSF parameters, got {src_maps.shape[2]}")
    return b, c, h, w


def build_inputs(
    tiles: np.ndarray,
    background: Any,
    sigma: Any,
    saturation: Any,
    src_maps: np.ndarray,
    controls: Controls,
    poisson_k: Any = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Stack the network's input channels for a batch of tiles.

    Parameters
    ----------
    tiles : (B, C, h, w) ndarray
        Linear image tiles, NaN-free; C is 1 (replicated) or 3.
    background : scalar, (C,), (B, C) or (B, C, h, w)
        Background level (image units).
    sigma : scalar, (C,) or (B, C)
        Background noise standard deviation (image units), > 0.
    saturation : scalar, (C,), (B, C) or None
        Saturation level (image units); None when nothing is clipped.
    src_maps : (B, C, P, h, w) ndarray
        Source PSF parameters (``PSF_FEATURES`` order, from ``PSFField.maps``).
    controls : Controls
        Per-tile controls.
    poisson_k : scalar, (C,), (B, C) or None
        Poisson factor ``1 / (gain * sigma)`` (variance per unit of ``n``, in
        ``sigma**2``); None or 0 when unknown.
    out : (B, N_INPUTS, h, w) float32 ndarray, optional
        Where to write the stack (e.g. a band of rows of a larger one: every
        plane is computed pixel by pixel, so bands can be built apart).

    Returns
    -------
    (B, N_INPUTS, h, w) ndarray of float32
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    src_maps = np.asarray(src_maps, dtype=np.float32)
    b, c, h, w = _check(tiles, src_maps)
    bg = _as_bchw(background, b, c, "background")
    sg = _as_bchw(sigma, b, c, "sigma")
    if not np.all(sg > 0):
        raise ParameterError("sigma (background noise) must be positive in every channel")
    n = (tiles - bg) / sg
    n = _replicate(n, c)
    maps = _replicate(src_maps, c)
    # the planes are computed in the stack itself (these are the largest
    # arrays the engine builds: no temporary copy of them)
    if out is None:
        out = np.empty((b, N_INPUTS, h, w), dtype=np.float32)
    elif out.shape != (b, N_INPUTS, h, w) or out.dtype != np.float32:
        raise ParameterError(f"out must be a float32 array of shape {(b, N_INPUTS, h, w)}, got {out.dtype} {out.shape}")
    k = NET_CHANNELS
    _asinh(n, FAINT_SCALE, out=out[:, 0:k])
    _asinh(n, BRIGHT_SCALE, out=out[:, k : 2 * k])
    if poisson_k is None:
        out[:, 2 * k : 3 * k] = 0.0
    else:
        pk = _as_bchw(poisson_k, b, c, "poisson_k")  # broadcasts over replicated channels
        # log(1 + v) rather than log1p (not vectorised in NumPy; v >= 0, so the
        # absolute error stays below 1e-7)
        v = np.maximum(n, np.float32(0.0), out=out[:, 2 * k : 3 * k])
        v *= np.maximum(pk, np.float32(0.0))
        v += np.float32(1.0)
        np.log(v, out=v)
        v *= np.float32(0.5)
    if saturation is None:
        out[:, 3 * k : 4 * k] = 0.0
    else:
        sat = _as_bchw(saturation, b, c, "saturation")
        mask = (tiles >= sat * (1.0 - SATURATION_TOLERANCE)).astype(np.float32)
        out[:, 3 * k : 4 * k] = mask  # broadcasts over replicated channels
    p0 = 4 * k
    p1 = p0 + len(PSF_FEATURES) * k
    psf_features(maps, out=out[:, p0:p1])
    target_features(maps, controls, out=out[:, p1:])
    return out


def encode_layer(layer_n: np.ndarray) -> np.ndarray:
    """A layer in noise-sigma units to the network's output domain (u_faint)."""
    return _asinh(layer_n, FAINT_SCALE)


def decode_outputs(
    y: np.ndarray,
    background: Any,
    sigma: Any,
    channels: int = NET_CHANNELS,
) -> tuple[np.ndarray, np.ndarray]:
    """Network outputs to linear stars and non-stellar layers.

    Parameters
    ----------
    y : (B, N_OUTPUTS, h, w) ndarray
        Raw network output (stars u_faint, then non-stellar u_faint).
    background, sigma
        As given to :func:`build_inputs` (for the original ``channels``).
    channels : int
        Channels of the original tiles (1: the three outputs are averaged).

    Returns
    -------
    stars, nonstellar : (B, channels, h, w) ndarray of float32
        Linear image units; the background belongs to the non-stellar layer,
        so ``stars + nonstellar`` is the sharpened image.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 4 or y.shape[1] != N_OUTPUTS:
        raise ParameterError(f"network output must be (B, {N_OUTPUTS}, h, w), got shape {y.shape}")
    b = y.shape[0]
    k = NET_CHANNELS
    stars_n = _sinh(y[:, :k], FAINT_SCALE)
    ns_n = _sinh(y[:, k:], FAINT_SCALE)
    if channels == 1:
        stars_n = stars_n.mean(axis=1, keepdims=True)
        ns_n = ns_n.mean(axis=1, keepdims=True)
    elif channels != k:
        raise ParameterError(f"channels must be 1 or {k}, got {channels}")
    bg = _as_bchw(background, b, channels, "background")
    sg = _as_bchw(sigma, b, channels, "sigma")
    # in place (float32 throughout): stars_n * sg and ns_n * sg + bg
    stars = np.multiply(stars_n, sg, out=stars_n)
    nonstellar = np.multiply(ns_n, sg, out=ns_n)
    nonstellar += bg
    return stars, nonstellar


# ---------------------------------------------------------------------------
# orientations (the dihedral transforms of training's augmentation, and of
# inference with SharpenParams.orientations > 1)


def transform_images(a: np.ndarray, transpose: bool, flip_y: bool, flip_x: bool) -> np.ndarray:
    """Apply transpose (x <-> y), then row flip, then column flip to the last two axes (a view)."""
    if transpose:
        a = np.swapaxes(a, -1, -2)
    if flip_y:
        a = a[..., ::-1, :]
    if flip_x:
        a = a[..., ::-1]
    return a


def untransform_images(a: np.ndarray, transpose: bool, flip_y: bool, flip_x: bool) -> np.ndarray:
    """The inverse of :func:`transform_images` (a view)."""
    if flip_x:
        a = a[..., ::-1]
    if flip_y:
        a = a[..., ::-1, :]
    if transpose:
        a = np.swapaxes(a, -1, -2)
    return a


def transform_psf_params(p: np.ndarray, transpose: bool, flip_y: bool, flip_x: bool) -> np.ndarray:
    """PSF parameters (axis -3 = ``PSF_FEATURES``, last two axes spatial) under
    the same transform as :func:`transform_images`.

    With the major-axis angle θ measured from +x towards +y, e1 = e cos 2θ,
    e2 = e sin 2θ: a transpose maps θ to 90° - θ (e1 -> -e1), a flip of either
    axis maps θ to -θ or 180° - θ (e2 -> -e2). The asymmetry vector
    (asym_x, asym_y) transforms as a vector: swapped by a transpose, one
    component negated by a flip. The same holds for the network's encoding
    of them (``2 e1``, ``2 e2``, clipped asymmetry).
    """
    p = np.array(transform_images(p, transpose, flip_y, flip_x), copy=True)
    if transpose:
        p[..., 2, :, :] *= -1.0
        p[..., [4, 5], :, :] = p[..., [5, 4], :, :]
    if flip_y:
        p[..., 3, :, :] *= -1.0
        p[..., 5, :, :] *= -1.0
    if flip_x:
        p[..., 3, :, :] *= -1.0
        p[..., 4, :, :] *= -1.0
    return p


ORIENTATIONS: tuple[tuple[bool, bool, bool], ...] = (
    (False, False, False), (True, False, True), (False, True, True), (True, True, False),  # 0, 90, 180, 270 degrees
    (True, False, False), (False, True, False), (False, False, True), (True, True, True),  # their mirror images
)
"""(transpose, flip_y, flip_x) of the eight orientations, ordered so that the
first K (``SharpenParams.orientations`` = 1, 2, 4 or 8) are the ones the
network is run in: the identity, then 90 degrees, then all four rotations,
then all eight. A rotation by 90 degrees negates e1 and e2, so two
orientations already cancel a shared elongation the network adds."""


def orient_inputs(x: np.ndarray, transpose: bool, flip_y: bool, flip_x: bool) -> np.ndarray:
    """Network inputs (B, N_INPUTS, h, w) as the same sky seen transformed
    (:func:`transform_images`): every plane moves, and the source PSF's
    ellipticity and asymmetry channels change as :func:`transform_psf_params`
    says; the other channels (image, noise, saturation, targets, flags) are
    scalars per pixel. Returns a new contiguous array."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != N_INPUTS:
        raise ParameterError(f"network inputs must be (B, {N_INPUTS}, h, w), got shape {x.shape}")
    out = np.ascontiguousarray(transform_images(x, transpose, flip_y, flip_x))
    if transpose or flip_y or flip_x:
        b, _, h, w = out.shape
        k, p = NET_CHANNELS, len(PSF_FEATURES)
        p0 = 4 * k
        psf = x[:, p0:p0 + k * p].reshape(b, k, p, x.shape[2], x.shape[3])
        out[:, p0:p0 + k * p] = transform_psf_params(psf, transpose, flip_y, flip_x).reshape(b, k * p, h, w)
    return out
