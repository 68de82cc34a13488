"""The sharpening pipeline: measure, plan, translate tile by tile, compose.

Data flow (DESIGN.md section 2), every step a function on arrays:

1. **Bad pixels.** NaN and infinite pixels are excluded: background and PSF
   measurement ignore them, processing sees them filled with the smooth local
   background, and afterwards they are put back where they were (in the
   non-stellar layer; the stars layer is 0 there). Their count is reported.
2. **Degenerate images.** An image whose finite pixels are all equal in every
   channel (all zero, constant, or empty after masking) has nothing to sharpen:
   it is returned unchanged with a note and a :class:`DataWarning`. An image
   with no finite pixel at all raises :class:`ImageDataError`. Negative values
   are allowed (linear data may be sky-subtracted).
3. **Borders** from calibration or stacking (:mod:`astrosharp.edges`) are
   hidden from the estimates, processed as a reflection of the interior next
   to them, and given back unchanged.
4. **Background and noise** per channel (:mod:`astrosharp.noise`). A noise of
   zero (noise-free synthetic data) is floored at ``SIGMA_FLOOR`` of the
   signal range so that normalisation stays finite.
5. **PSF field**: measured from the stars (:mod:`astrosharp.psf.measure`), or
   given by the caller. A manual ``psf_diameter`` is the round source PSF of
   non-stellar work (the method receives it through the parameters); stars
   keep the measured field, unless no star was found at all, when the manual
   PSF is the source everywhere.
6. **Lateral chromatic shift** (colour images, :mod:`astrosharp.chroma`): the
   offsets of the red and blue star images from the green ones, fitted as a
   plane over the field from the PSF measurement's stars, are removed by
   resampling those channels before the translation, when significant.
7. **Translation** tile by tile on the engine's plan (:func:`astrosharp.tiles.run_tiled`)
   with the network (``method="nn"``) or a classical method (``"rl"``,
   ``"wiener"``, :mod:`astrosharp.classical`), giving a stars layer and a
   non-stellar layer whose sum is the sharpened image. The network normalises
   each tile by the smooth background map; the classical methods get the
   scalar sky level per channel (Richardson-Lucy keeps its estimate above the
   background it is given, so a map following nebulosity would clip).
8. **Passes.** ``correct_first`` runs a correct-only pass, then the sharpening
   pass on its output, sharing the measurement: after correction the PSF is
   round, with the same FWHM (the median of the channels') and beta.
   ``nonstellar_then_stellar`` runs a non-stellar pass (stars at their source
   size, made round) then a stellar pass (non-stellar structure left as it is).
   Denoising is done in the first pass, where the input's noise still is.
9. **Network only**: star flux conservation (:mod:`astrosharp.flux`), then the
   layer split repair (:mod:`astrosharp.layers`), which moves star light the
   network left in the non-stellar layer to the stars layer (the sum is
   unchanged).

If the shipped network cannot be loaded, ``method="nn"`` falls back to
Richardson-Lucy with a warning and a note (the result says which method ran).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AstrosharpWarning, DataWarning, ImageDataError, ModelError
from .image import Image
from .params import DEFAULT_BETA, F_MIN, SharpenParams
from .psf.field import ORIGINS, PARAM_NAMES, PSFField
from .tiles import TILE_SIZE, extract_tile, fit_tile, padded_edge, plan_grid, run_tiled

__all__ = [
    "SharpenResult",
    "SIGMA_FLOOR",
    "sharpen",
    "measure_psf",
    "sharpen_file",
    "round_field",
    "detect_saturation",
    "history_line",
]

SIGMA_FLOOR = 1e-4
"""Smallest noise used for normalisation, as a fraction of the signal range
(99.9th percentile minus background) of the channel."""
BATCH = 4
"""Tiles of the classical engine (``params.tile_size``) per call (memory holds
one batch of tiles)."""
NN_TILES = (768, 1152)
"""Range of tile edges for the network's engine: the edge that processes the
fewest pixels for the image (:func:`astrosharp.tiles.fit_tile`), with tiles
blended over at least ``NN_BLEND`` pixels. The PSF field's nodes stay on
``params.tile_size`` and ``params.overlap``; the network reads the field per
pixel, so its tiles need not match them."""
NN_BLEND = 102
"""Overlap (pixels) of the network's tiles: 20 % of the 512 px plan."""
NN_BATCH_PIXELS = BATCH * padded_edge(TILE_SIZE, TILE_SIZE) ** 2
"""Padded pixels per network call (batches of 512 px tiles' worth: the memory
of one call does not grow with the tile edge)."""


def _engine_plan(shape: tuple[int, int], method: str, params: SharpenParams) -> tuple[int, float, int]:
    """(tile, overlap, batch) of the engine for one pass.

    The network's passes use :func:`fit_tile` (a 4000 x 6000 frame is
    processed 1.25 times instead of 1.85 times with 512 px tiles and 20 %
    overlap); correct-only takes the PSF at each tile's centre, so it keeps
    ``params.tile_size``, as do the classical methods."""
    if method != "nn" or params.correct_only:
        return params.tile_size, params.overlap, BATCH
    tile, overlap = fit_tile(shape, *NN_TILES, blend=NN_BLEND)
    return tile, overlap, max(1, NN_BATCH_PIXELS // (padded_edge(shape[0], tile) * padded_edge(shape[1], tile)))


@dataclass
class SharpenResult:
    """What :func:`sharpen` produced, with its diagnostics.

    Attributes
    ----------
    image : Image
        The sharpened image (input metadata kept), ``stars + nonstellar``.
    stars, nonstellar : (C, H, W) ndarray of float32
        The two layers; the background and the noise belong to ``nonstellar``,
        which alone is a starless image. NaN / Inf input pixels are put back in
        ``nonstellar`` (``stars`` is 0 there).
    psf_field : PSFField or None
        The source PSF field used (None for a degenerate image).
    params : SharpenParams
        The controls used.
    method : str
        The method that actually ran (``"nn"``, ``"rl"``, ``"wiener"`` or
        ``"none"`` for a degenerate image returned unchanged).
    notes : list of str
        What a user should know (fallbacks, bad pixels, ...).
    timings : dict of str to float
        Seconds spent per step, and ``"total"``.
    bad_pixels : int
        Number of NaN / Inf input values (over all channels).
    """

    image: Image
    stars: np.ndarray
    nonstellar: np.ndarray
    psf_field: PSFField | None
    params: SharpenParams
    method: str
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    bad_pixels: int = 0


# ---------------------------------------------------------------------------
# helpers on arrays
# ---------------------------------------------------------------------------


def _as_image(image: Image | np.ndarray) -> Image:
    if isinstance(image, Image):
        return image
    return Image(data=np.asarray(image))


def detect_saturation(data: np.ndarray) -> np.ndarray | None:
    """Saturation level per channel where the data were clipped, else None.

    Uses :func:`astrosharp.psf.detect.saturation_level` (a plateau of at least
    3 pixels at the channel's maximum); channels that are not clipped get
    ``inf``; None when no channel is clipped.

    Parameters
    ----------
    data : (C, H, W) ndarray

    Returns
    -------
    (C,) ndarray of float64 or None
    """
    from .psf.detect import saturation_level

    sat = saturation_level(data)
    return None if np.all(np.isinf(sat)) else sat


def round_field(psf: PSFField, equalise_channels: bool) -> PSFField:
    """The PSF field after a pass of translation: round (no ellipticity, no
    asymmetry), same FWHM and beta; with ``equalise_channels`` every channel
    gets the median FWHM of the channels (what correct-only produces)."""
    values = psf.values.copy()
    for name in ("e1", "e2", "asym_x", "asym_y"):
        values[:, PARAM_NAMES.index(name)] = 0.0
    if equalise_channels and psf.channels > 1:
        i = PARAM_NAMES.index("fwhm")
        values[:, i] = np.median(values[:, i], axis=0, keepdims=True)
    return PSFField(
        shape=psf.shape,
        ys=psf.ys.copy(),
        xs=psf.xs.copy(),
        values=values,
        counts=psf.counts.copy(),
        scatter=psf.scatter.copy(),
        origin=psf.origin.copy(),
        notes=list(psf.notes),
    )


def _noise_floor(data: np.ndarray, level: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    out = np.asarray(sigma, dtype=np.float64).copy()
    for c in range(data.shape[0]):
        ch = data[c, ::4, ::4]  # a decimated sample is plenty for a percentile
        ch = ch[np.isfinite(ch)]
        span = float(np.percentile(ch, 99.9) - level[c]) if ch.size else 0.0
        floor = max(SIGMA_FLOOR * abs(span), 1e-12)
        if not np.isfinite(out[c]) or out[c] < floor:
            out[c] = floor
    return out


def _measure_field(data: np.ndarray, background: Any, params: SharpenParams,
                   saturation: np.ndarray | None = None, progress: bool = False) -> Any:
    """The PSF measurement (:class:`~astrosharp.psf.measure.PSFMeasurement`)."""
    from ._progress import progress_bar
    from .psf.measure import measure_psf as _measure

    with progress_bar(100, "measuring the PSF", quiet=not progress, unit="%") as bar:
        done = [0]

        def tick(stage: str, fraction: float) -> None:
            bar.set_description(f"measuring the PSF ({stage})")
            step = int(round(100 * fraction)) - done[0]
            if step > 0:
                bar.update(step)
                done[0] += step

        return _measure(data, background, tile=params.tile_size, overlap=params.overlap,
                        saturation=saturation, progress=tick)


def measure_psf(image: Image | np.ndarray, *, tile: int = 512, overlap: float = 0.2,
                details: bool = False) -> Any:
    """The PSF field of an image (stars in, a PSF map out).

    Parameters
    ----------
    image : Image or (C, H, W) / (H, W) ndarray
        Linear image; NaN / Inf pixels are filled with the local background
        first (as :func:`sharpen` does).
    tile, overlap : int, float
        The engine's tile plan (one field node per tile).
    details : bool
        Return the whole :class:`~astrosharp.psf.measure.PSFMeasurement`
        (field, fitted stars, background) instead of the field alone.

    Returns
    -------
    PSFField, or PSFMeasurement when ``details``
    """
    from .noise import estimate_background
    from .psf.measure import measure_psf as _measure

    img = _as_image(image)
    bg = estimate_background(img.data)
    filled = _fill_bad(img.data, ~np.isfinite(img.data), bg)
    m = _measure(filled, bg, tile=tile, overlap=overlap, saturation=detect_saturation(img.data))
    return m if details else m.field


def _fill_bad(data: np.ndarray, bad: np.ndarray, bg: Any) -> np.ndarray:
    if not bad.any():
        return data
    filled = data.copy()
    for c in range(data.shape[0]):
        if bad[c].any():
            filled[c][bad[c]] = bg.map(c)[bad[c]]
    return filled


def _load_model_file() -> Any:
    from .nn import Model

    return Model.load()


def _load_model(notes: list[str]) -> Any | None:
    try:
        return _load_model_file()
    except (ModelError, ImportError) as exc:
        msg = f"the network could not be loaded ({exc}); Richardson-Lucy was used instead"
        notes.append(msg)
        warnings.warn(msg, AstrosharpWarning, stacklevel=3)
        return None


def _tile_function(method: str, params: SharpenParams, psf: PSFField, bg: Any, sigma: np.ndarray,
                   saturation: np.ndarray | None, model: Any, level_map: np.ndarray | None = None):
    """fn(tiles, boxes) -> (stars, nonstellar) for one pass."""

    def fn(tiles: np.ndarray, boxes: list) -> tuple[np.ndarray, np.ndarray]:
        b0 = boxes[0]
        maps = np.empty((len(boxes), psf.channels, len(PARAM_NAMES), b0.ph, b0.pw), np.float32)
        for i, b in enumerate(boxes):
            maps[i] = psf.maps(b.py0, b.px0, b.ph, b.pw)
        if method == "nn":
            # the network normalises by the smooth local background map
            if level_map is not None:  # cut from the whole-image map (cheaper than a map per tile)
                bgm = np.empty_like(tiles)
                for i, b in enumerate(boxes):
                    bgm[i] = extract_tile(level_map, b)
            else:
                bgm = np.stack([bg.map(box=(b.py0, b.px0, b.py0 + b.ph, b.px0 + b.pw)) for b in boxes])
            if params.correct_only:
                # sharpen to a round PSF, then convolve to the round target (astrosharp.correct)
                from .correct import correct_tiles

                return correct_tiles(model, tiles, bgm, sigma, saturation, maps, params)
            stars, nonst = model.translate(tiles, bgm, sigma, saturation, maps, params)
            return np.asarray(stars, np.float32), np.asarray(nonst, np.float32)
        from .classical import classical_translate

        # Richardson-Lucy keeps its estimate above the background it is given, so it
        # gets the sky level (a scalar per channel): a map that follows nebulosity
        # would clip the data below it into flat patches.
        # Pixels mirrored beyond the image edge are not data: Richardson-Lucy is
        # told (data_box) so that stars cut by the edge do not become spikes.
        h, w = psf.shape
        stars = np.empty_like(tiles)
        nonst = np.empty_like(tiles)
        for i, b in enumerate(boxes):
            data_box = (max(0, -b.py0), max(0, -b.px0), min(b.ph, h - b.py0), min(b.pw, w - b.px0))
            stars[i], nonst[i] = classical_translate(
                tiles[i], maps[i], params, sigma, method, background=np.asarray(bg.level, float),
                data_box=data_box,
            )
        return stars, nonst

    return fn


#: with a manual PSF diameter, an image where fewer stars than this were
#: measured (in its best channel) is treated as starless: a knot or two of a
#: nebula taken for stars must not set the source PSF
MANUAL_BELOW_STARS = 5
#: with a manual PSF diameter D, only fitted sources of FWHM up to this many
#: times D count as stars (wider ones are galaxy cores or nebular knots)
MANUAL_STAR_WIDTH = 1.5


def _nonstellar_blur(psf: PSFField, params: SharpenParams) -> np.ndarray:
    """Per channel, the FWHM (px) of the Gaussian that takes the non-stellar
    layer from its target back to the source PSF (median over the field):
    ``sqrt(F**2 - T**2)``, 0 for correct-only (the layer stays at F)."""
    from .params import nonstellar_layer_fwhm

    f = np.array([psf.median(k)["fwhm"] for k in range(psf.channels)], dtype=float)
    t = nonstellar_layer_fwhm(f, params)
    return np.sqrt(np.maximum(f * f - t * t, 0.0))


def _passes(params: SharpenParams, psf: PSFField) -> list[tuple[SharpenParams, PSFField]]:
    """The passes to run, each with its controls and its source PSF field."""
    base = params.replace(correct_first=False, nonstellar_then_stellar=False)
    passes: list[tuple[SharpenParams, PSFField]] = []
    current = psf
    if params.correct_first:
        # correct-only means automatic PSF and every other control at zero
        passes.append((base.replace(correct_only=True, sharpen_stars=0.0, adjust_halos=0.0,
                                    sharpen_nonstellar=0.0, psf_diameter=None), current))
        current = round_field(current, equalise_channels=True)
    if params.nonstellar_then_stellar:
        passes.append((base.replace(sharpen_stars=0.0, adjust_halos=0.0), current))
        current = round_field(current, equalise_channels=False)
        passes.append((base.replace(sharpen_nonstellar=0.0), current))
    else:
        passes.append((base, current))
    # denoise once, in the first pass
    if params.denoise:
        passes = [(p if i == 0 else p.replace(denoise=0.0), f) for i, (p, f) in enumerate(passes)]
    return passes


def nothing_to_translate(params: SharpenParams, psf: PSFField) -> bool:
    """True when the network would be asked for the identity everywhere:
    every target equals the source PSF, nothing is denoised and nothing
    corrected. That is the case of an undersampled PSF, under the
    :data:`~astrosharp.params.F_MIN` floor of the targets, with no change
    of halos (or of no sharpening at all). The network is not exactly the
    identity there; it made the 0.5 to 0.7 px stars of the SDSS crops 10 %
    narrower and more elongated (docs/bench.md), so such a pass is skipped.

    The targets are those the network is given
    (:func:`astrosharp.nn.inputs.target_features`), evaluated at the
    field's nodes: between them the field is interpolated within the
    nodes' range, so the floor holds everywhere when it holds there.
    """
    if params.correct_only or params.denoise > 0:
        return False
    from .nn.inputs import Controls, target_features

    nodes = np.asarray(psf.values, np.float32)[None]  # (1, C, P, gy, gx)
    targets = target_features(nodes, Controls.from_params(params, 1))
    return bool(np.all(targets[:, :-2] == 0.0))  # the log2 ratios; the last two are the flags


# ---------------------------------------------------------------------------
# the API
# ---------------------------------------------------------------------------


def sharpen(
    image: Image | np.ndarray,
    params: SharpenParams | None = None,
    *,
    model: Any = None,
    psf_field: PSFField | None = None,
    progress: bool = False,
    layers: bool = True,
) -> SharpenResult:
    """Sharpen (PSF-translate) a linear image.

    Parameters
    ----------
    image : Image or (C, H, W) / (H, W) ndarray
        Linear pixels (C = 1 or 3, at least 16 px a side); not modified.
    params : SharpenParams, optional
        The controls (defaults: ``SharpenParams()``).
    model : object, optional
        A loaded network (:class:`astrosharp.nn.Model`, anything with its
        ``translate`` method); loaded from the package when needed and absent.
    psf_field : PSFField, optional
        Source PSF field to use instead of measuring one (e.g. the true PSF in
        the bench); its ``shape`` must be the image's (H, W).
    progress : bool
        Show a progress bar on standard error.
    layers : bool
        Repair the split between the stars and non-stellar layers after the
        network (:mod:`astrosharp.layers`). The sharpened image is the same
        either way; False saves the time when only the image is wanted.

    Returns
    -------
    SharpenResult
        ``result.image.data == result.stars + result.nonstellar``.

    Raises
    ------
    ImageDataError
        If the data has a wrong shape or no finite pixel.
    """
    from ._progress import progress_bar
    from .noise import estimate_background

    t_start = time.perf_counter()
    params = SharpenParams() if params is None else params
    img = _as_image(image)
    data = img.data
    c, h, w = data.shape
    notes: list[str] = []
    timings: dict[str, float] = {}

    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    if n_bad == data.size:
        raise ImageDataError("image has no finite pixels (all are NaN or infinite)")
    if n_bad:
        notes.append(f"{n_bad} NaN/Inf pixel values were excluded from processing and put back in the output")

    if n_bad:
        masked = np.where(bad, np.nan, data)
        ptp = np.nanmax(masked, axis=(1, 2)) - np.nanmin(masked, axis=(1, 2))
        del masked
    else:
        ptp = data.max(axis=(1, 2)) - data.min(axis=(1, 2))
    if np.all(~(ptp > 0)):
        msg = "the image is constant (every finite pixel has the same value): it was left unchanged"
        warnings.warn(msg, DataWarning, stacklevel=2)
        notes.append(msg)
        stars = np.zeros_like(data)
        nonst = data.copy()
        timings["total"] = time.perf_counter() - t_start
        return SharpenResult(img.with_data(stars + nonst), stars, nonst, None, params, "none", notes, timings, n_bad)

    t0 = time.perf_counter()
    # calibration / stacking borders (astrosharp.edges): NaN for the estimates,
    # a reflection of the interior for processing, given back unchanged at the end
    from .edges import fill_borders, find_borders, hide_borders

    borders = find_borders(data)
    measured = data
    if borders.any:
        notes.append(borders.describe())
        measured = hide_borders(data, borders.mask)
    bg = estimate_background(measured)
    filled = _fill_bad(measured, (bad | borders.mask) if borders.any else bad, bg)
    sigma = _noise_floor(filled, np.asarray(bg.level), np.asarray(bg.sigma))
    saturation = detect_saturation(measured)
    timings["background"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    chroma = None
    star_table = None  # the measurement's star fits in the input (when measured here)
    starless = False  # no star to trust: the manual PSF is the source everywhere
    if psf_field is None:
        mp = params
        if params.method in ("rl", "wiener"):
            # the classical methods follow the field per sub-tile (classical.CLASSICAL_TILE)
            from .classical import CLASSICAL_TILE

            mp = params.replace(tile_size=min(params.tile_size, CLASSICAL_TILE))
        measurement = _measure_field(filled, bg, mp, saturation, progress)
        psf = measurement.field
        if c > 1:
            from .chroma import measure_channel_shift

            chroma = measure_channel_shift(measurement.stars, (h, w), c)
        n_found = int(psf.counts.reshape(psf.channels, -1).sum(axis=1).max())
        n_point = n_found
        if params.psf_diameter is not None and params.psf_diameter > 0:
            # the manual diameter is the PSF the user knows: a "star" much wider
            # than it is a galaxy core or a nebular knot, not a point source
            st = measurement.stars
            point = np.asarray(st.used, bool) & (np.asarray(st.fwhm) <= MANUAL_STAR_WIDTH * params.psf_diameter)
            n_point = int(max((np.sum(point & (np.asarray(st.channel) == k)) for k in range(c)), default=0))
        star_table = measurement.stars
        del measurement
        if params.psf_diameter is not None and (np.all(psf.origin == ORIGINS.index("fallback"))
                                                or n_point < MANUAL_BELOW_STARS):
            # no stars, or too few to trust (planet, Moon, starless data where a
            # knot or two, or galaxy cores, pass for stars): the manual PSF is
            # the source everywhere
            d = max(float(params.psf_diameter), F_MIN)
            if n_found == 0:
                why = "no stars found"
            elif n_point < n_found:
                why = (f"only {n_point} of the {n_found} star(s) found are no wider than "
                       f"{MANUAL_STAR_WIDTH:g} x the manual PSF diameter, too few to trust")
            else:
                why = f"only {n_found} star(s) found, too few to trust"
            starless = True
            psf = PSFField.uniform((h, w), c, d, DEFAULT_BETA, origin="manual",
                                   note=f"{why}: the manual PSF diameter ({params.psf_diameter:g} px) "
                                   f"is used as the source PSF everywhere")
    else:
        if tuple(psf_field.shape) != (h, w) or psf_field.channels != c:
            raise ImageDataError(
                f"psf_field is for a {psf_field.channels}-channel {psf_field.shape[1]}x{psf_field.shape[0]} image, "
                f"not this {c}-channel {w}x{h} one"
            )
        psf = psf_field
    notes.extend(n for n in psf.notes if n not in notes)
    timings["psf"] = time.perf_counter() - t0

    method = params.method
    if method == "nn" and model is None:
        model = _load_model(notes)
        if model is None:
            method = "rl"
    run_params = params if method == params.method else params.replace(method=method)

    passes = _passes(run_params, psf)
    if method == "nn":
        # a pass whose every target is its source leaves the image as it is
        idle = [nothing_to_translate(p, f) for p, f in passes]
        for k in np.nonzero(idle)[0]:
            notes.append(
                f"nothing to translate{' in pass ' + str(k + 1) if len(passes) > 1 else ''}: every target "
                f"equals the source PSF (at most {float(np.max(passes[k][1].param('fwhm'))):.2f} px FWHM; targets "
                f"never go under {F_MIN:g} px, below which the PSF is undersampled), so the image is left as it is")
        passes = [pf for pf, skip in zip(passes, idle) if not skip]
    level_map = bg.level_map if method == "nn" and passes else None  # (C, H, W), shared by all passes
    plans = [_engine_plan((h, w), method, p) for p, _ in passes]
    n_tiles = sum(len(plan_grid((h, w), t, o)) for t, o, _ in plans)
    source = fill_borders(filled, borders.mask) if borders.any else filled  # what the first pass reads
    if chroma is not None and chroma.significant.any():
        # lateral chromatic shift: register the channels before the translation
        from .chroma import align_channels, registered_table

        t0 = time.perf_counter()
        source = align_channels(source, chroma, saturation)
        # the stars' positions as the translation sees them: the network's
        # stars layer is re-registered on these (recentre), not on where the
        # channels put their stars before
        star_table = registered_table(star_table, chroma)
        notes.append(chroma.describe())
        timings["chroma"] = time.perf_counter() - t0
    current = source
    stars = nonst = None
    if not passes:  # nothing translated: the image as it is, all in the non-stellar layer
        stars, nonst = np.zeros_like(current), np.array(current, dtype=np.float32, copy=True)
    if method == "nn":
        from .outside import MARGIN, extend_frame

        sky_box = borders.interior_box()  # a straight border is the frame edge (None: ragged or none)
    t0 = time.perf_counter()
    with progress_bar(n_tiles, f"sharpening ({method})", quiet=not progress) as bar:
        for k, (p, f) in enumerate(passes):
            if k:
                current = stars + nonst  # the next pass works on the previous pass's result
            fn = _tile_function(method, p, f, bg, sigma, saturation, model, level_map)
            margin = 0
            if method == "nn":
                # beyond the frame edge (and across a straight stacking border) the
                # network sees the mirrored sky with the stars cut by the edge
                # continued (astrosharp.outside)
                t1 = time.perf_counter()
                current, _ = extend_frame(current, f, sigma, level_map, saturation, MARGIN, box=sky_box)
                margin = MARGIN
                timings["outside"] = timings.get("outside", 0.0) + time.perf_counter() - t1
            tile, overlap, batch = plans[k]
            stars, nonst = run_tiled(
                current, fn, tile=tile, overlap=overlap, batch=batch, outputs=2, progress=bar.update, margin=margin,
            )
            del current
    timings["translate"] = time.perf_counter() - t0
    assert stars is not None and nonst is not None

    if method == "nn" and passes:
        # a change of PSF moves a star's light, it does not make or lose any
        from .flux import conserve_star_flux
        from .recentre import recentre_stars

        t0 = time.perf_counter()
        # a change of PSF does not move a star either
        stars, rc = recentre_stars(stars, star_table, sigma, exclude=borders.mask if borders.any else None,
                                   copy=False, reference=source, nonstellar=nonst,
                                   nonstellar_blur=_nonstellar_blur(psf, params),
                                   # correct-only's stars come out round already (a round
                                   # kernel after the network, astrosharp.correct); on its
                                   # trailed stars, whose profile is no Moffat, the fit's
                                   # ellipticity is no finer guide than that (controls bench:
                                   # median ellipticity 0.015 -> 0.029 with the rounding)
                                   round_stars=not params.correct_only)
        if rc.changed:
            notes.append(rc.describe())
        timings["recentre"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        stars, fc = conserve_star_flux(stars, nonst, source, psf, params, sigma, saturation,
                                       exclude=borders.mask if borders.any else None, copy=False)
        notes.append(fc.describe())
        timings["flux"] = time.perf_counter() - t0
    if method == "nn":
        from .layers import separate_layers

        # star light the network left in the non-stellar layer joins its star
        # (the layers change, their sum does not); with nothing translated the
        # stars layer is empty and takes the stars from the image this way
        if layers and starless:
            # no star was found to trust: what the network calls stars here are
            # knots of the nebula or galaxy cores, and they stay with the rest
            nonst += stars
            stars[...] = 0.0
            notes.append("stars layer: empty, since no star was found to trust (everything is in the non-stellar layer)")
        elif layers:
            t0 = time.perf_counter()
            split = separate_layers(stars, nonst, psf, params, sigma,
                                    exclude=borders.mask if borders.any else None)
            notes.append(split.describe())
            timings["layers"] = time.perf_counter() - t0

    if n_bad:
        stars[bad] = 0.0
        nonst[bad] = data[bad]
    if borders.any:
        from .edges import restore_borders

        restore_borders(stars, nonst, data, borders.mask)
    out = stars + nonst
    timings["total"] = time.perf_counter() - t_start
    return SharpenResult(img.with_data(out), stars, nonst, psf, params, method, notes, timings, n_bad)


# ---------------------------------------------------------------------------
# files (the only I/O of this module)
# ---------------------------------------------------------------------------


def history_line(params: SharpenParams, method: str | None = None, layer: str | None = None) -> str:
    """The HISTORY record of a sharpening run: version, method and settings."""
    from . import __version__

    if method == "none":
        text = f"astrosharp {__version__} sharpen: {params.describe()} (image constant: left unchanged)"
    else:
        p = params if method in (None, params.method) else params.replace(method=method)
        text = f"astrosharp {__version__} sharpen: {p.describe()}"
    if layer:
        text += f" (layer: {layer})"
    return text


def sharpen_file(
    in_path: str | Path,
    out_path: str | Path | None = None,
    params: SharpenParams | None = None,
    *,
    overwrite: bool = False,
    output_type: str = "float32",
    starless: str | Path | None = None,
    stars_only: str | Path | None = None,
    progress: bool = False,
    model: Any = None,
) -> tuple[SharpenResult, Path]:
    """Read an image file, sharpen it and write the result.

    Parameters
    ----------
    in_path : path
        Input image (FITS, XISF or TIFF).
    out_path : path, optional
        Output image; ``NAME_astrosharp.EXT`` beside the input when omitted.
    params : SharpenParams, optional
    overwrite : bool
        Replace existing output files.
    output_type : {"float32", "uint16"}
        Sample type of the written files.
    starless, stars_only : path, optional
        Also write the non-stellar layer / the stars layer there.
    progress : bool
        Show a progress bar on standard error.

    Returns
    -------
    (SharpenResult, Path)
        The result and where the sharpened image was written.
    """
    from .io import check_output_path, default_output_path, read_image, write_image

    params = SharpenParams() if params is None else params
    src = Path(in_path)
    out = Path(out_path) if out_path is not None else Path(default_output_path(src))
    extra = [Path(p) for p in (starless, stars_only) if p is not None]
    for p in [out, *extra]:  # fail before the long computation, not after it
        check_output_path(p, overwrite=overwrite, input_path=src)
    image = read_image(src)
    # the layer split only matters where a layer is written
    result = sharpen(image, params, progress=progress, model=model,
                     layers=starless is not None or stars_only is not None)
    written = write_image(result.image, out, overwrite=overwrite, dtype=output_type,
                          history=history_line(params, result.method))
    if starless is not None:
        write_image(result.image.with_data(result.nonstellar), starless, overwrite=overwrite, dtype=output_type,
                    history=history_line(params, result.method, "non-stellar (starless)"))
    if stars_only is not None:
        write_image(result.image.with_data(result.stars), stars_only, overwrite=overwrite, dtype=output_type,
                    history=history_line(params, result.method, "stars only"))
    return result, Path(written)
