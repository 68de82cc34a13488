"""The ``astrosharp`` command line: it parses, then calls the library.

Exit status: 0 success, 1 error (one sentence on standard error; the traceback
only with ``--debug``), 2 usage error (from argparse).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._memory import keep_freed_memory
from .errors import AstrosharpError
from .params import METHODS, ORIENTATION_COUNTS, SharpenParams

__all__ = ["main", "build_parser"]

PROG = "astrosharp"


# ---------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------


def _psf_diameter(text: str) -> float | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number of pixels, got {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output and diagnostics")
    g.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors (no progress bar)")
    g.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``astrosharp`` command (with its subcommands)."""
    d = SharpenParams()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Neural PSF translation (deconvolution) of linear astronomical images.",
        epilog="Run 'astrosharp COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # sharpen ------------------------------------------------------------
    s = sub.add_parser(
        "sharpen",
        help="sharpen a linear image (FITS, XISF or TIFF)",
        description="Measure the PSF across the image and translate it into a smaller, rounder one. "
        "Without -o the result is written beside the input as NAME_astrosharp.EXT.",
    )
    s.add_argument("input", metavar="IN", help="input image (.fits/.fit/.fts/.fz/.gz/.bz2, .xisf, .tif/.tiff)")
    s.add_argument("-o", "--output", metavar="OUT", help="output image (default: IN's NAME_astrosharp.EXT)")
    st = s.add_argument_group("stellar adjustments")
    st.add_argument("--sharpen-stars", type=_number, default=d.sharpen_stars, metavar="S",
                    help=f"0 to 1: star FWHM becomes (1 - 0.5 S) of its source (default {d.sharpen_stars:g})")
    st.add_argument("--adjust-halos", type=_number, default=d.adjust_halos, metavar="H",
                    help=f"-0.5 to 0.5: below 0 tighter, darker star halos; above 0 brighter, wider "
                    f"(default {d.adjust_halos:g})")
    ns = s.add_argument_group("non-stellar adjustments")
    ns.add_argument("--psf-diameter", type=_psf_diameter, default=d.psf_diameter, metavar="auto|PX",
                    help="'auto' measures the PSF from the stars in each tile; a FWHM of 0 to 8 px "
                    "sets it by hand (starless, planetary or lunar images) (default auto)")
    ns.add_argument("--sharpen-nonstellar", type=_number, default=d.sharpen_nonstellar, metavar="N",
                    help=f"0 to 1: non-stellar structure is sharpened to (1 - N) of the source FWHM, "
                    f"at least 1 px (default {d.sharpen_nonstellar:g})")
    op = s.add_argument_group("processing options")
    op.add_argument("--correct-only", action="store_true",
                    help="only make the PSF round and equal in all channels (no sharpening)")
    op.add_argument("--correct-first", action="store_true", help="correct, then sharpen, in two passes")
    op.add_argument("--nonstellar-then-stellar", action="store_true",
                    help="sharpen non-stellar structure first, then stars, in two passes")
    op.add_argument("--denoise", type=_number, default=d.denoise, metavar="D",
                    help=f"0 to 1: fraction of the input's noise removed (default {d.denoise:g})")
    op.add_argument("--method", choices=METHODS, default=d.method,
                    help="nn: the network (default); rl: Richardson-Lucy; wiener: Wiener/Tikhonov")
    op.add_argument("--orientations", type=int, choices=ORIENTATION_COUNTS, default=d.orientations, metavar="K",
                    help="run the network in K orientations (1, 2, 4 or 8) and average: rounder, better-centred "
                    "stars at K times the network's time (default 1)")
    out = s.add_argument_group("outputs")
    out.add_argument("--starless", metavar="OUT", help="also write the non-stellar layer (a starless image)")
    out.add_argument("--stars-only", metavar="OUT", help="also write the stars layer (starless + stars = result)")
    out.add_argument("--overwrite", action="store_true", help="replace output files that exist")
    out.add_argument("--output-type", choices=("float32", "uint16"), default="float32",
                     help="sample type of the written files (default float32)")
    _common(s)

    # info ---------------------------------------------------------------
    i = sub.add_parser("info", help="describe an image: shape, type, range, background, noise",
                       description="Print an image's shape, sample type, channels, value range, and the "
                       "background level and noise of each channel.")
    i.add_argument("input", metavar="IN")
    _common(i)

    # psf ----------------------------------------------------------------
    p = sub.add_parser("psf", help="measure the PSF across the field",
                       description="Measure the PSF from the stars, per tile and channel, and print it "
                       "(median FWHM, beta, ellipticity, angle, star count; centre and corners).")
    p.add_argument("input", metavar="IN")
    p.add_argument("--json", metavar="OUT", help="also write the field as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="also draw the field (FWHM colour, ellipticity whiskers)")
    p.add_argument("--overwrite", action="store_true", help="replace output files that exist")
    _common(p)

    # bench --------------------------------------------------------------
    b = sub.add_parser("bench", help="run the benchmark (synthetic cases with known truth, real images)",
                       description="Run the fixed benchmark cases and print one table of quality, "
                       "time and memory per method.")
    b.add_argument("--quick", action="store_true", help="a reduced run (about 2 minutes)")
    b.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    b.add_argument("--controls", action="store_true",
                   help="instead, judge every control (sharpen stars, halos, non-stellar, correct only, colour, "
                   "starless, denoise) against its bar on seeded scenes")
    b.add_argument("--method", choices=("nn", "rl", "wiener", "input", "ideal"), default="nn",
                   help="with --controls: the method judged (default nn; input and ideal are references)")
    _common(b)

    # demo ---------------------------------------------------------------
    m = sub.add_parser("demo", help="sharpen a synthetic example and draw a before/after picture",
                       description="Simulate a star field with nebulosity and a known, field-varying PSF, "
                       "sharpen it, and write the input, the result and a before/after PNG.")
    m.add_argument("--out", metavar="DIR", default="astrosharp-demo",
                   help="folder for the files (default ./astrosharp-demo, created if needed)")
    m.add_argument("--method", choices=METHODS, default=d.method, help="method (default nn)")
    m.add_argument("--seed", type=int, default=1, help="seed of the simulated scene (default 1)")
    m.add_argument("--size", type=int, default=640, help="image height and width in pixels (default 640)")
    m.add_argument("--overwrite", action="store_true", help="replace files that exist")
    _common(m)
    return parser


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


def _cmd_sharpen(args: argparse.Namespace) -> int:
    from .pipeline import sharpen_file

    params = SharpenParams(
        sharpen_stars=args.sharpen_stars,
        adjust_halos=args.adjust_halos,
        psf_diameter=args.psf_diameter,
        sharpen_nonstellar=args.sharpen_nonstellar,
        correct_only=args.correct_only,
        correct_first=args.correct_first,
        nonstellar_then_stellar=args.nonstellar_then_stellar,
        denoise=args.denoise,
        method=args.method,
        orientations=args.orientations,
    )
    if not Path(args.input).exists():
        raise AstrosharpError(f"input file {args.input} does not exist")
    result, written = sharpen_file(
        args.input,
        args.output,
        params,
        overwrite=args.overwrite,
        output_type=args.output_type,
        starless=args.starless,
        stars_only=args.stars_only,
        progress=not args.quiet,
    )
    shown = getattr(args, "shown_warnings", set())
    for note in result.notes:
        if note not in shown:  # a warning already said it
            _say(args, f"{PROG}: note: {note}")
    t = result.timings.get("total", 0.0)
    what = "unchanged copy" if result.method == "none" else f"{result.method}, {params.describe()}"
    _say(args, f"{PROG}: wrote {written} ({what}; {t:.1f} s)")
    if args.starless:
        _say(args, f"{PROG}: wrote {args.starless} (non-stellar layer)")
    if args.stars_only:
        _say(args, f"{PROG}: wrote {args.stars_only} (stars layer)")
    return 0


def _read(path: str) -> Any:
    from .io import read_image

    if not Path(path).exists():
        raise AstrosharpError(f"input file {path} does not exist")
    return read_image(path)


def _cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from .noise import estimate_background

    img = _read(args.input)
    data = img.data
    c, h, w = data.shape
    names = ["R", "G", "B"] if c == 3 else ["mono"]
    finite = np.isfinite(data)
    print(f"file:       {args.input}")
    print(f"format:     {img.source_format or '?'} ({img.source_dtype} samples"
          + (f", divided by {img.scale:g} on reading" if img.scale != 1.0 else "") + ")")
    print(f"size:       {w} x {h} px, {c} channel{'s' if c > 1 else ''} ({'RGB' if c == 3 else 'mono'})")
    bad = int((~finite).sum())
    if bad:
        print(f"bad pixels: {bad} NaN/Inf values")
    bg = estimate_background(data) if finite.any() else None
    print(f"{'channel':<8} {'min':>12} {'max':>12} {'median':>12} {'background':>12} {'noise':>12}")
    for k in range(c):
        v = data[k][finite[k]]
        if v.size == 0:
            print(f"{names[k]:<8} {'(no finite pixels)':>12}")
            continue
        lvl = f"{bg.level[k]:12.6g}" if bg is not None else f"{'-':>12}"
        sig = f"{bg.sigma[k]:12.6g}" if bg is not None else f"{'-':>12}"
        print(f"{names[k]:<8} {v.min():12.6g} {v.max():12.6g} {np.median(v):12.6g} {lvl} {sig}")
    return 0


def _cmd_psf(args: argparse.Namespace) -> int:
    import json

    from .io import check_output_path
    from .pipeline import measure_psf
    from .psf.report import format_psf_table, psf_to_json

    for out in (args.json, args.plot):
        if out:
            check_output_path(Path(out), overwrite=args.overwrite, input_path=Path(args.input))
    img = _read(args.input)
    measurement = measure_psf(img, details=True)
    print(format_psf_table(measurement))
    if args.json:
        Path(args.json).write_text(json.dumps(psf_to_json(measurement), indent=1))
        _say(args, f"{PROG}: wrote {args.json}")
    if args.plot:
        from .psf.plot import plot_psf_field

        plot_psf_field(measurement, args.plot, image=img.data)
        _say(args, f"{PROG}: wrote {args.plot}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    if args.json:
        from .io import check_output_path

        check_output_path(Path(args.json), overwrite=True)  # the folder must exist before the long run

    def say(message: str) -> None:
        _say(args, f"{PROG}: bench: {message}")

    if args.controls:
        import json

        from .bench.controls import run_controls

        res = run_controls(args.method, args.quick, None, None, progress=say)
        print(res.table())
        for note in res.notes:
            _say(args, f"{PROG}: note: {note}")
        if args.json:
            Path(args.json).write_text(json.dumps(res.to_dict(), indent=1))
            _say(args, f"{PROG}: wrote {args.json}")
        return 0
    result = run_bench(quick=args.quick, json_path=args.json, progress=say)
    print(result.table())
    for note in result.notes:
        _say(args, f"{PROG}: note: {note}")
    if args.json:
        _say(args, f"{PROG}: wrote {args.json}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    paths = run_demo(Path(args.out), method=args.method, seed=args.seed, size=args.size,
                     overwrite=args.overwrite, progress=not args.quiet)
    for label, path in paths.items():
        _say(args, f"{PROG}: wrote {path} ({label})")
    return 0


COMMANDS = {
    "sharpen": _cmd_sharpen,
    "info": _cmd_info,
    "psf": _cmd_psf,
    "bench": _cmd_bench,
    "demo": _cmd_demo,
}


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------


def _one_sentence(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``astrosharp`` command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (``sys.argv[1:]`` when None).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)

    args.shown_warnings = set()
    keep_freed_memory()  # each tile reuses the pages the one before it freed (astrosharp._memory)

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        args.shown_warnings.add(str(message))
        if not args.quiet:
            print(f"{PROG}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        if not args.debug:  # numerical and library chatter is not for users
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            warnings.filterwarnings("ignore", module="astropy")
        warnings.showwarning = show
        try:
            return COMMANDS[args.command](args)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except (AstrosharpError, OSError, ValueError) as exc:
            if args.debug:
                raise
            print(f"{PROG}: error: {_one_sentence(exc)}", file=sys.stderr)
            return 1
        except Exception as exc:  # an unexpected failure: still one sentence, and how to see more
            if args.debug:
                raise
            print(
                f"{PROG}: error: unexpected {type(exc).__name__}: {_one_sentence(exc)} "
                f"(run again with --debug for the traceback and please report it)",
                file=sys.stderr,
            )
            return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
