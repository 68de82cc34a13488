"""Run the benchmark: every method on every case, the metrics, the timings.

Rows (methods)
--------------
``input``          the observation itself (nothing done);
``ideal``          the truth at the target PSF plus the input's own noise: the
                   ceiling of any method that keeps the noise (DESIGN.md, 1);
``rl_oracle``      Richardson-Lucy given the TRUE PSF (the simulator's kernel at
                   each tile centre, tiles of ``ORACLE_TILE`` px), re-blurred to
                   the target, at the iteration count that is best for the
                   whole-frame PSNR of that case (swept; the count best for the
                   extended emission is reported beside it);
``wiener_oracle``  Wiener given the true PSF at the balance best for that case;
``rl``, ``wiener`` astrosharp's classical methods through
                   :func:`astrosharp.pipeline.sharpen` with the MEASURED PSF
                   (automatic; manual diameter on star-free cases);
``nn``             the network through the pipeline, when the model file exists;
``nn_d1``          the same at denoise 1.0 (at denoise 0 the network keeps the
                   input's noise, so ``ideal`` is its ceiling; with denoise 1
                   it is measured against the noise-free truth like the others).

All at the bench setting of the case (sharpen stars 1.0, non-stellar 0.5,
automatic PSF or, on star-free cases, a manual diameter = the true FWHM).

Time is wall-clock seconds of the method alone (the oracles include their whole
sweep); memory is the peak of Python/NumPy allocations traced by
:mod:`tracemalloc` during the method (ONNX Runtime's own arena is not traced:
the 100 MP line measures a child process's peak resident set instead).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import tracemalloc
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import metrics as M
from .cases import FULL_CASES, QUICK_CASES, BenchCase, load_case, real_image_paths

__all__ = ["METHODS", "ORACLE_TILE", "BenchResult", "run_bench", "evaluate", "model_available"]

METHODS = ("input", "ideal", "rl_oracle", "wiener_oracle", "rl", "wiener", "nn", "nn_d1")
NN_ROWS = ("nn", "nn_d1")
"""The network's rows: at the bench setting (denoise 0), and the same with denoise 1."""
ORACLE_TILE = 256
ORACLE_ITERATIONS = {
    True: (5, 10, 20, 35, 60, 100),
    False: (3, 5, 8, 12, 18, 25, 35, 50, 70, 100, 140, 200),
}
ORACLE_BALANCES = {True: (0.5, 1.0, 2.0), False: (0.25, 0.5, 1.0, 2.0, 4.0)}
REAL_CROP = {True: 384, False: 512}
"""Real images are cut to their central REAL_CROP x REAL_CROP pixels (time)."""
QUICK_REAL = ("Cut_HSC1", "NGC 7023_20", "sdss_r")
"""``--quick`` runs the real images whose names contain one of these."""

Progress = Callable[[str], None]


@dataclass
class BenchResult:
    """Everything the bench measured (``to_dict`` is what the JSON holds).

    Attributes
    ----------
    rows : list of dict
        One per (case, method): ``case``, ``method``, ``kind`` and the metrics.
    real : list of dict
        One per (real image, method).
    speed : list of dict
        The timing lines (full run only).
    notes : list of str
        What was skipped and why.
    config : dict
        quick, cases, methods, versions.
    """

    rows: list[dict] = field(default_factory=list)
    real: list[dict] = field(default_factory=list)
    speed: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def table(self) -> str:
        from .report import format_result

        return format_result(self)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    return v


def model_available() -> bool:
    """Whether the shipped network file exists (the ``nn`` row runs then)."""
    try:
        from ..nn import default_model_path

        return Path(default_model_path()).exists()
    except Exception:  # noqa: BLE001 - any import or lookup failure means: no model
        return False


# ---------------------------------------------------------------------------
# metrics of one output
# ---------------------------------------------------------------------------


def evaluate(bc: BenchCase, output: np.ndarray, kept_noise: float = 1.0) -> dict[str, Any]:
    """All metrics of one (C, H, W) output of a case.

    ``kept_noise`` is the fraction of the input's noise the output is meant
    to keep (1 for the input, the ideal and the flux-conserving classical
    methods; ``1 - denoise`` for the network): the noise-free star flux
    (``star_flux_nf_*``) takes that much of the input's noise out of each
    star's aperture.
    """
    case = bc.case
    obs, truth = case.obs, case.truth
    t_img = truth.image
    out = np.asarray(output, dtype=np.float64)
    row: dict[str, Any] = {}
    if bc.kind == "noise":
        row["psnr"] = row["psnr_ext"] = float("nan")
    else:
        row["psnr"] = M.psnr(out, t_img, bc.valid)
        row["psnr_ext"] = M.psnr(out, t_img, bc.extended) if bc.has_extended else float("nan")
    per = {k: [] for k in ("fwhm_ratio", "ellipticity", "ellipticity_in", "shift", "flux_ratio", "flux_ratio_nf", "ok")}
    xs, ys = [], []
    depth, worst = [], []
    for ch in range(bc.channels):
        sel = bc.selected[ch]
        if len(sel):
            r = M.star_metrics(
                out[ch], t_img[ch], truth.stars[ch], obs.image[ch], bc.star_x[sel], bc.star_y[sel],
                bc.star_fwhm[ch, sel], float(obs.sigma[ch]), bc.target_fwhm[ch, sel],
                kept_noise=kept_noise * obs.noise[ch],
            )
            for k in per:
                per[k].append(r[k])
            xs.append(bc.star_x[sel])
            ys.append(bc.star_y[sel])
        rs = bc.ringing_stars[ch]
        if len(rs):
            g = M.ringing(out[ch], bc.star_x[rs], bc.star_y[rs], bc.star_fwhm[ch, rs], float(obs.sigma[ch]),
                          background=t_img[ch] - truth.stars[ch])
            depth.append(g["depth"])
            worst.append(g["worst"])
    if xs:
        cat = {k: np.concatenate(v) for k, v in per.items()}
        reg = M.regions(np.concatenate(xs), np.concatenate(ys), obs.image.shape[1:])
        row.update({f"star_{k}": v for k, v in M.summarize(cat, reg).items()})
    else:
        row["star_n"] = 0
    row["ring"] = max(depth) if depth else float("nan")
    row["ring_worst"] = max(worst) if worst else float("nan")
    spur = [M.spurious_sources(out[ch], t_img[ch], float(obs.sigma[ch]), bc.target_fwhm_median) for ch in range(bc.channels)]
    row["spurious"] = int(sum(s["spurious"] for s in spur))
    row["detected"] = int(sum(s["detected"] for s in spur))
    row["truth_sources"] = int(sum(s["truth"] for s in spur))
    if bc.kind in ("starless", "noise"):
        row["hf_excess"] = float(np.mean([M.hf_excess(out[ch], t_img[ch], obs.noise[ch]) for ch in range(bc.channels)]))
    else:
        row["hf_excess"] = float("nan")
    return row


# ---------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------


class _Meter:
    """Wall time and traced peak memory of a block."""

    def __enter__(self) -> "_Meter":
        self.was_tracing = tracemalloc.is_tracing()
        if not self.was_tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        self.base = tracemalloc.get_traced_memory()[0]
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.peak_mb = (tracemalloc.get_traced_memory()[1] - self.base) / 2**20
        if not self.was_tracing:
            tracemalloc.stop()


def _oracle_kernels(bc: BenchCase, ch: int, yc: float, xc: float) -> tuple[np.ndarray, np.ndarray]:
    """True source kernel at a pixel and the target kernel there."""
    from .. import synth
    from ..psf.moffat import kernel_size_for, moffat_kernel

    case = bc.case
    tp = synth.target_params(case.psf, case.params, np.array([yc]), np.array([xc]))
    key = "neb" if case.params.psf_diameter is not None else "star"
    t_f, t_b = float(tp[f"{key}_fwhm"][ch, 0]), float(tp[f"{key}_beta"][ch, 0])
    m = case.psf.moffat_at(yc, xc, ch)
    size = kernel_size_for(m["fwhm"], m["beta"], min(m["ellipticity"], 0.6))
    size = int(np.clip(size, 31, 101)) | 1
    src = case.psf.kernel(yc, xc, ch, size=size)
    return src, moffat_kernel(t_f, t_b, size=size)


def _oracle_rl(bc: BenchCase, iterations: tuple[int, ...]) -> dict[int, np.ndarray]:
    from ..classical import richardson_lucy, translate_tiled

    obs = bc.case.obs
    image = obs.image
    store: dict[tuple, dict[int, np.ndarray]] = {}
    level = obs.background.mean(axis=(1, 2))
    checkpoints = set(iterations)

    def run(tile: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        y0, x0, y1, x1 = box
        res = {k: np.zeros(tile.shape) for k in iterations}
        for ch in range(tile.shape[0]):
            src, tgt = _oracle_kernels(bc, ch, (y0 + y1 - 1) / 2.0, (x0 + x1 - 1) / 2.0)

            def keep(k: int, est: np.ndarray, ch: int = ch) -> None:
                if k in checkpoints:
                    res[k][ch] = est

            richardson_lucy(tile[ch], src, sigma=float(obs.sigma[ch]), background=float(level[ch]),
                            iterations=max(iterations), damping=0.0, chi2_target=None, tol=None,
                            target_psf=tgt, callback=keep, checkpoints=checkpoints)
        store[box] = res
        return res[iterations[0]]

    translate_tiled(image, run, ORACLE_TILE, 0.2)
    return {k: translate_tiled(image, lambda t, b, k=k: store[b][k], ORACLE_TILE, 0.2) for k in iterations}


def _oracle_wiener(bc: BenchCase, balances: tuple[float, ...]) -> dict[float, np.ndarray]:
    from ..classical import translate_tiled, wiener

    obs = bc.case.obs
    level = obs.background.mean(axis=(1, 2))
    kernels: dict[tuple, list] = {}

    def run(balance: float) -> np.ndarray:
        def fn(tile: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
            y0, x0, y1, x1 = box
            if box not in kernels:
                kernels[box] = [_oracle_kernels(bc, ch, (y0 + y1 - 1) / 2.0, (x0 + x1 - 1) / 2.0) for ch in range(tile.shape[0])]
            out = np.empty(tile.shape)
            for ch in range(tile.shape[0]):
                src, tgt = kernels[box][ch]
                out[ch] = wiener(tile[ch], src, tgt, sigma=float(obs.sigma[ch]), background=float(level[ch]), balance=balance)
            return out

        return translate_tiled(obs.image, fn, ORACLE_TILE, 0.2)

    return {b: run(b) for b in balances}


def _pipeline(image: np.ndarray, params, method: str, model: Any = None) -> np.ndarray:
    from ..pipeline import sharpen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the bench measures the sharpened image, which the layer split does not change
        res = sharpen(image, params.replace(method=method), model=model, layers=False)
    return np.asarray(res.image.data)


def _load_model() -> Any:
    from ..nn import Model

    return Model.load()


def _score(bc: BenchCase, output: np.ndarray) -> float:
    """What the oracles maximise: the frame PSNR (minus the MSE on pure noise)."""
    t = bc.case.truth.image
    if bc.kind == "noise":
        return -float(np.mean((np.asarray(output, float) - t)[bc.valid] ** 2))
    return M.psnr(output, t, bc.valid)


def _case_rows(bc: BenchCase, methods: tuple[str, ...], quick: bool, model: Any, say: Progress) -> list[dict]:
    case = bc.case
    obs, truth = case.obs, case.truth
    c, h, w = obs.image.shape
    mp = h * w / 1e6  # megapixels of the frame (one plane)
    rows = []

    def add(method: str, output: np.ndarray, meter: _Meter | None, extra: dict | None = None,
            kept_noise: float = 1.0) -> None:
        row = {"case": bc.label, "name": bc.name, "kind": bc.kind, "method": method, "channels": c}
        row.update(evaluate(bc, output, kept_noise))
        if meter is not None:
            row["time_s"] = meter.seconds
            row["mem_mb"] = meter.peak_mb
            row["mpix_s"] = mp / meter.seconds if meter.seconds > 0 else float("nan")
        else:
            row["time_s"] = row["mem_mb"] = row["mpix_s"] = float("nan")
        row.update(extra or {})
        rows.append(row)

    for method in methods:
        say(f"  {bc.label}: {method}")
        if method == "input":
            add(method, obs.image, None)
        elif method == "ideal":
            add(method, truth.image + obs.noise, None)
        elif method == "rl_oracle":
            its = ORACLE_ITERATIONS[quick]
            with _Meter() as m:
                outs = _oracle_rl(bc, its)
            ps = {k: _score(bc, o) for k, o in outs.items()}
            best = max(ps, key=lambda k: ps[k])
            extra = {"best_iterations": best, "sweep": {str(k): v for k, v in ps.items()}}
            if bc.has_extended and bc.kind != "noise":
                pe = {k: M.psnr(o, truth.image, bc.extended) for k, o in outs.items()}
                be = max(pe, key=lambda k: pe[k])
                extra.update({"best_iterations_ext": be, "psnr_ext_best": pe[be]})
            add(method, outs[best], m, extra)
        elif method == "wiener_oracle":
            bals = ORACLE_BALANCES[quick]
            with _Meter() as m:
                outs = _oracle_wiener(bc, bals)
            ps = {b: _score(bc, o) for b, o in outs.items()}
            best = max(ps, key=lambda b: ps[b])
            add(method, outs[best], m, {"best_balance": best, "sweep": {str(k): v for k, v in ps.items()}})
        elif method in ("rl", "wiener") or method in NN_ROWS:
            if method in NN_ROWS and model is None:
                continue
            params = case.params.replace(denoise=1.0) if method == "nn_d1" else case.params
            with _Meter() as m:
                out = _pipeline(obs.image, params, "nn" if method in NN_ROWS else method,
                                model if method in NN_ROWS else None)
            add(method, out, m, kept_noise=1.0 - params.denoise if method in NN_ROWS else 1.0)
    return rows


# ---------------------------------------------------------------------------
# real images
# ---------------------------------------------------------------------------


def _real_measures(lum: np.ndarray, x: np.ndarray, y: np.ndarray, fwhm: float, sigma: float, guess: float) -> dict:
    f = M.fit_star_shapes(lum, x, y, guess, sigma, size=max(11, 2 * int(np.ceil(3 * fwhm)) + 1))
    ok = f["ok"]
    rad = np.full(x.shape, 5.0 * fwhm)
    ap = M.aperture_sums(lum, x, y, rad)
    # local background: clipped mean of the annulus 6 to 9 FWHM
    prof_bg = []
    h, w = lum.shape
    for xi, yi in zip(x, y):
        r0, r1 = 6 * fwhm, 9 * fwhm
        ya, yb = max(0, int(yi - r1)), min(h, int(yi + r1) + 1)
        xa, xb = max(0, int(xi - r1)), min(w, int(xi + r1) + 1)
        rr = np.hypot(np.arange(ya, yb)[:, None] - yi, np.arange(xa, xb)[None, :] - xi)
        v = lum[ya:yb, xa:xb][(rr >= r0) & (rr <= r1)]
        prof_bg.append(M.clipped_mean(v) if v.size else 0.0)
    flux = ap - np.asarray(prof_bg) * np.pi * rad**2
    ring = M.ringing(lum, x, y, np.full(x.shape, fwhm), sigma)
    return {"fwhm": f["fwhm"], "ellipticity": f["ellipticity"], "flux": flux, "ok": ok, "ring": ring}


def _real_rows(path: Path, methods: tuple[str, ...], quick: bool, model: Any, say: Progress) -> list[dict]:
    from ..io import read_image
    from ..noise import estimate_background
    from ..params import SharpenParams, stellar_target
    from ..psf.detect import detect_stars

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = read_image(path)
    notes = [str(w.message) for w in caught]
    data = np.asarray(img.data, np.float32)
    c, h, w = data.shape
    crop = REAL_CROP[quick]
    y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    data = np.ascontiguousarray(data[:, y0 : y0 + crop, x0 : x0 + crop])
    data = np.where(np.isfinite(data), data, np.nanmedian(data))
    bg = estimate_background(data)
    lum = (data - bg.level[:, None, None]).mean(axis=0)
    sigma = float(np.sqrt(np.mean(np.asarray(bg.sigma) ** 2)) / np.sqrt(c))
    if not sigma > 0:
        return [{"image": path.name, "method": "input", "note": "no background noise measurable"}]
    cand = detect_stars(lum, sigma, fwhm=3.0, threshold=5.0)
    good = (cand.flags == 0) & (cand.peak >= 50)
    if good.sum() < 3:
        good = (cand.flags == 0) & (cand.peak >= 20)
    x, y = cand.x[good], cand.y[good]
    if len(x) > 60:
        pick = np.round(np.linspace(0, len(x) - 1, 60)).astype(int)
        x, y = x[pick], y[pick]
    size_guess = float(np.median(cand.size[good])) if good.any() else 3.0
    base = _real_measures(lum, x, y, size_guess, sigma, size_guess)
    fwhm0 = float(np.nanmedian(base["fwhm"][base["ok"]])) if base["ok"].any() else size_guess
    base = _real_measures(lum, x, y, fwhm0, sigma, fwhm0)
    params = SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5)
    # the output's fits start from the FWHM the tool aims at (half, but never
    # under F_MIN nor wider than the input): for undersampled stars a guess
    # of half their width made the same image measure 9 % narrower and
    # rounder or less round (SDSS i crop: ratio 0.910, ellipticity 0.078 -> 0.084)
    guess = float(stellar_target(fwhm0, 3.0, params.sharpen_stars, 0.0)[0])
    rows = []
    shape = f"{c}x{data.shape[1]}x{data.shape[2]}"
    for method in methods:
        if method in ("ideal", "rl_oracle", "wiener_oracle") or (method in NN_ROWS and model is None):
            continue
        say(f"  {path.name}: {method}")
        if method == "input":
            out, meter = data, None
        else:
            p = params.replace(denoise=1.0) if method == "nn_d1" else params
            with _Meter() as meter:
                out = _pipeline(data, p, "nn" if method in NN_ROWS else method, model if method in NN_ROWS else None)
        o_lum = (np.asarray(out, np.float64) - bg.level[:, None, None]).mean(axis=0)
        r = base if method == "input" else _real_measures(o_lum, x, y, fwhm0, sigma, guess)
        ok = base["ok"] & r["ok"]
        with np.errstate(divide="ignore", invalid="ignore"):
            fr = r["flux"][ok] / base["flux"][ok]
        rows.append({
            "image": path.name,
            "shape": shape,
            "method": method,
            "stars": int(ok.sum()),
            "fwhm": float(np.median(r["fwhm"][ok])) if ok.any() else float("nan"),
            "fwhm_ratio": float(np.median(r["fwhm"][ok] / base["fwhm"][ok])) if ok.any() else float("nan"),
            "ellipticity": float(np.median(r["ellipticity"][ok])) if ok.any() else float("nan"),
            "flux_ratio": float(np.median(fr)) if fr.size else float("nan"),
            "ring": r["ring"]["depth"],
            "time_s": meter.seconds if meter else float("nan"),
        })
    if rows and notes:
        rows[0]["read_notes"] = notes
    return rows


# ---------------------------------------------------------------------------
# speed and memory lines (full run)
# ---------------------------------------------------------------------------


def _big_rgb(shape: tuple[int, int], channels: int) -> np.ndarray:
    """A large synthetic frame made by tiling a 1024 px star-field case."""
    from .. import synth

    base = synth.make_case("stars_rgb_aberrated" if channels == 3 else "stars_mono", 7, 1024).obs.image
    reps = (1, math.ceil(shape[0] / 1024), math.ceil(shape[1] / 1024))
    return np.ascontiguousarray(np.tile(base, reps)[:, : shape[0], : shape[1]])


_CHILD = r"""
import resource, sys, time, numpy as np
from astrosharp._memory import keep_freed_memory
from astrosharp.bench.runner import _big_rgb, _pipeline
from astrosharp.params import SharpenParams
keep_freed_memory()  # as the command line does
img = _big_rgb((10000, 10000), 1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
_pipeline(img, SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5), sys.argv[1])
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"RESULT {dt} {peak} {base}")
"""


CHILD_TIMEOUT = 600
"""Seconds the 100 MP child may run; its peak memory so far is reported if it is cut."""


def _vm_hwm_kib(pid: int) -> int:
    """Peak resident set (VmHWM, KiB) of a running process (Linux), 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _child_memory_line(timeout: float) -> dict:
    """Run the 100 MP mono sharpen in a child process and report its peak memory."""
    what = "sharpen (nn) 100 MP mono: peak resident memory"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, "nn"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.perf_counter()
    peak = 0
    while proc.poll() is None and time.perf_counter() - t0 < timeout:
        peak = max(peak, _vm_hwm_kib(proc.pid))
        time.sleep(0.5)
    if proc.poll() is None:
        peak = max(peak, _vm_hwm_kib(proc.pid))
        proc.kill()
        proc.communicate()
        gb = peak * 1024 / 1e9
        return {"what": what, "seconds": time.perf_counter() - t0, "peak_gb": gb, "bar": "< 6 GB",
                "pass": False if gb >= 6 else None, "note": f"cut after {timeout:.0f} s; peak so far"}
    out, err = proc.communicate()
    res = [ln for ln in out.splitlines() if ln.startswith("RESULT")]
    if not res:
        return {"what": what, "error": err[-500:]}
    dt, peak_kib, _ = res[-1].split()[1:]
    gb = float(peak_kib) * 1024 / 1e9  # ru_maxrss is in KiB on Linux
    return {"what": what, "seconds": float(dt), "peak_gb": gb, "bar": "< 6 GB", "pass": gb < 6}


def _speed_lines(model: Any, say: Progress) -> list[dict]:
    from ..noise import estimate_background
    from ..psf.measure import measure_psf_field

    lines = []
    say("  speed: building a 24 MP RGB frame")
    big = _big_rgb((4000, 6000), 3)
    t = time.perf_counter()
    bg = estimate_background(big)
    measure_psf_field(big, bg)
    dt = time.perf_counter() - t
    lines.append({"what": "measure_psf_field (with background), 24 MP RGB", "seconds": dt, "bar": "< 15 s", "pass": dt < 15})
    if model is not None:
        say("  speed: nn end to end on 24 MP RGB")
        from ..params import SharpenParams

        t = time.perf_counter()
        _pipeline(big, SharpenParams(sharpen_stars=1.0, sharpen_nonstellar=0.5), "nn", model)
        dt = time.perf_counter() - t
        lines.append({"what": "sharpen (nn) end to end, 24 MP RGB", "seconds": dt, "bar": "< 90 s", "pass": dt < 90})
        del big
        say("  memory: nn on 100 MP mono in a child process")
        lines.append(_child_memory_line(CHILD_TIMEOUT))
    return lines


# ---------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------


def run_bench(
    quick: bool = False,
    json_path: str | os.PathLike | None = None,
    methods: tuple[str, ...] | list[str] | None = None,
    progress: Progress | None = None,
    cases: tuple[tuple[str, int, int], ...] | None = None,
    real_dir: str | os.PathLike | None = None,
) -> BenchResult:
    """Run the benchmark and return (and optionally write) its results.

    Parameters
    ----------
    quick : bool
        Small cases, a short oracle sweep, small real-image crops and no speed
        lines (under 2 minutes); otherwise the full run (under 20 minutes).
    json_path : path or None
        Where to write the JSON (the same numbers as the table).
    methods : sequence of str or None
        Rows to run (default: all of ``METHODS``; ``nn`` only when the model
        file exists).
    progress : callable or None
        ``progress(message)`` for each step (the CLI prints them).
    cases : sequence of (name, seed, size) or None
        Override the case list (default ``QUICK_CASES`` or ``FULL_CASES``).
    real_dir : path or None
        Folder of real images (default: the shared data folder; absent = skipped).

    Returns
    -------
    BenchResult
    """
    say: Progress = progress or (lambda msg: None)
    methods = tuple(methods) if methods else METHODS
    bad = [m for m in methods if m not in METHODS]
    if bad:
        from ..errors import ParameterError

        raise ParameterError(f"unknown bench method {bad[0]!r}; choose from {', '.join(METHODS)}")
    result = BenchResult()
    t_all = time.perf_counter()
    model = None
    if any(m in NN_ROWS for m in methods):
        if model_available():
            try:
                model = _load_model()
            except Exception as exc:  # noqa: BLE001 - reported, the row is skipped
                result.notes.append(f"nn row skipped: the model could not be loaded ({exc})")
        else:
            result.notes.append("nn row skipped: no model file is installed yet")
    case_list = cases if cases is not None else (QUICK_CASES if quick else FULL_CASES)
    for name, seed, size in case_list:
        say(f"case {name} (seed {seed}, {size} px)")
        t = time.perf_counter()
        bc = load_case(name, seed, size)
        say(f"  built in {time.perf_counter() - t:.1f} s")
        result.rows.extend(_case_rows(bc, methods, quick, model, say))
    paths = real_image_paths(real_dir)
    if quick:
        paths = [p for p in paths if any(k in p.name for k in QUICK_REAL)] or paths[:3]
    if not paths:
        result.notes.append("real images skipped: ../shared/data/real not found (set ASTROSHARP_SHARED)")
    else:
        try:
            import astrosharp.io  # noqa: F401
        except ImportError:
            paths = []
            result.notes.append("real images skipped: astrosharp.io is not available")
    for p in paths:
        say(f"real image {p.name}")
        try:
            result.real.extend(_real_rows(p, methods, quick, model, say))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the bench
            result.notes.append(f"real image {p.name} skipped: {type(exc).__name__}: {exc}")
    if not quick:
        try:
            result.speed.extend(_speed_lines(model, say))
        except Exception as exc:  # noqa: BLE001
            result.notes.append(f"speed lines failed: {type(exc).__name__}: {exc}")
    from .. import __version__

    result.config = {
        "quick": quick,
        "cases": [list(c) for c in case_list],
        "methods": list(methods),
        "oracle_tile": ORACLE_TILE,
        "oracle_iterations": list(ORACLE_ITERATIONS[quick]),
        "oracle_balances": list(ORACLE_BALANCES[quick]),
        "astrosharp": __version__,
        "seconds": time.perf_counter() - t_all,
    }
    if json_path is not None:
        Path(json_path).write_text(json.dumps(result.to_dict(), indent=1))
    return result
