"""The bench's text report: one table of cases x methods, the real images
before and after, the speed lines and the notes."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["COLUMNS", "format_result", "format_rows", "format_real", "format_speed"]

# (header, key, format) of the synthetic-case table
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("PSNR", "psnr", "{:.2f}"),
    ("PSNRext", "psnr_ext", "{:.2f}"),
    ("n*", "star_n", "{:d}"),
    ("FWHMr", "star_fwhm_ratio", "{:.3f}"),
    ("ctr", "star_fwhm_ratio_centre", "{:.3f}"),
    ("crn", "star_fwhm_ratio_corner", "{:.3f}"),
    ("ell", "star_ellipticity", "{:.3f}"),
    ("shift", "star_shift", "{:.3f}"),
    ("flux|1-r|", "star_flux_med", "{:.4f}"),
    ("p90", "star_flux_p90", "{:.4f}"),
    ("nf|1-r|", "star_flux_nf_med", "{:.4f}"),
    ("nf p90", "star_flux_nf_p90", "{:.4f}"),
    ("ring", "ring", "{:.2f}"),
    ("spur", "spurious", "{:d}"),
    ("HF", "hf_excess", "{:.2f}"),
    ("s", "time_s", "{:.1f}"),
    ("MP/s", "mpix_s", "{:.3f}"),
    ("MB", "mem_mb", "{:.0f}"),
)


def _fmt(v: Any, f: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return "-"
    try:
        if "d" in f:
            return f.format(int(v))
        return f.format(float(v))
    except (TypeError, ValueError):
        return str(v)


def _grid(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in body])


def format_rows(rows: list[dict]) -> str:
    """The synthetic-case table: one block of rows per case."""
    header = ["case / method"] + [c[0] for c in COLUMNS]
    body: list[list[str]] = []
    last = None
    for r in rows:
        if r["case"] != last:
            body.append([f"{r['case']} ({r['kind']})"] + [""] * len(COLUMNS))
            last = r["case"]
        label = "  " + r["method"]
        if "best_iterations" in r:
            label += f" [{r['best_iterations']} it]"
        if "best_balance" in r:
            label += f" [b={r['best_balance']:g}]"
        body.append([label] + [_fmt(r.get(k), f) for _, k, f in COLUMNS])
    return _grid(header, body)


def format_real(rows: list[dict]) -> str:
    """Real images: FWHM, ellipticity, flux and ringing before and after."""
    header = ["image / method", "stars", "FWHM", "ratio", "ell", "flux ratio", "ring", "s"]
    body = []
    last = None
    for r in rows:
        if r["image"] != last:
            body.append([f"{r['image']} ({r.get('shape', '')})"] + [""] * 7)
            last = r["image"]
        body.append([
            "  " + r["method"],
            _fmt(r.get("stars"), "{:d}"),
            _fmt(r.get("fwhm"), "{:.2f}"),
            _fmt(r.get("fwhm_ratio"), "{:.3f}"),
            _fmt(r.get("ellipticity"), "{:.3f}"),
            _fmt(r.get("flux_ratio"), "{:.3f}"),
            _fmt(r.get("ring"), "{:.2f}"),
            _fmt(r.get("time_s"), "{:.1f}"),
        ])
    return _grid(header, body)


def format_speed(lines: list[dict]) -> str:
    out = []
    for ln in lines:
        if "error" in ln:
            out.append(f"{ln['what']}: FAILED ({ln['error']})")
            continue
        s = f"{ln['what']}: {ln['seconds']:.1f} s"
        if "peak_gb" in ln:
            s += f", peak {ln['peak_gb']:.2f} GB"
        verdict = {True: "pass", False: "FAIL", None: "not decided"}[ln["pass"]]
        s += f"  (bar {ln['bar']}: {verdict})"
        if ln.get("note"):
            s += f" [{ln['note']}]"
        out.append(s)
    return "\n".join(out)


def format_result(result: Any) -> str:
    """The whole report of a :class:`~astrosharp.bench.runner.BenchResult`."""
    parts = [
        "astrosharp bench" + (" --quick" if result.config.get("quick") else "")
        + f"  (sharpen stars 1.0, non-stellar 0.5, auto PSF / manual on star-free;"
        f" {result.config.get('seconds', float('nan')):.0f} s)",
        "",
        format_rows(result.rows),
        "",
        "PSNR/PSNRext: dB vs the noise-free truth at the target PSF (frame without saturated cores / stars masked);",
        "FWHMr: star FWHM output/input (median; ctr centre, crn corners); ell: ellipticity; shift: px vs the truth;",
        "flux|1-r|, p90: median and 90th percentile of |1 - flux ratio| (aperture 5 FWHM vs truth);",
        "nf|1-r|, nf p90: the same with the noise the output keeps (the input's, times 1 - denoise) taken out;",
        "ring: dark-ring depth (noise sigma); spur: spurious sources (5 sigma); HF: residual high-frequency power /",
        "the input noise's (star-free cases); s, MP/s, MB: time, megapixels/s, traced peak memory.",
    ]
    if result.real:
        parts += ["", "Real images (before = input; no truth):", format_real(result.real)]
    if result.speed:
        parts += ["", "Speed and memory:", format_speed(result.speed)]
    if result.notes:
        parts += ["", "Notes:"] + [f"- {n}" for n in result.notes]
    return "\n".join(parts)
