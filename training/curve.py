"""Validation curve of a run: CSV (and a PNG) from its log.jsonl.

::

    python -m training.curve runs/small/log.jsonl --csv docs/training_curve.csv --png docs/training_curve.png

Several logs, in order, join the curves of a run continued from another's
weights (the shipped model's: training/checkpoints/small-log.jsonl,
wide-log.jsonl, wide3-log.jsonl).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Sequence

COLUMNS = ("step", "hours", "val_loss", "psnr_u", "psnr_u_d1", "val_loss_d1", "flux_bias_median", "flux_abs_p90")


def read_evals(log_paths: str | Sequence[str]) -> list[dict]:
    """The ``eval`` records of one log, or of several joined in order (a run
    continued from another's weights): each later log's hours are counted on
    from the last hours the logs before it reached."""
    paths = [log_paths] if isinstance(log_paths, str) else list(log_paths)
    out: list[dict] = []
    offset = 0.0
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"training log {path} not found")
        last = 0.0
        with open(path) as f:
            for r in map(json.loads, f):
                if isinstance(r.get("hours"), (int, float)):
                    last = float(r["hours"])
                    r["hours"] = last + offset
                if r.get("event") == "eval":
                    out.append(r)
        offset += last
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.curve")
    ap.add_argument("log", nargs="+", help="log.jsonl of the run; several, in order, for a run continued from another's weights")
    ap.add_argument("--csv", required=True)
    ap.add_argument("--png", default=None)
    a = ap.parse_args(argv)
    evals = read_evals(a.log)
    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in evals:
            w.writerow([r.get(c, "") if not isinstance(r.get(c), float) else f"{r[c]:.5g}" for c in COLUMNS])
    if a.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in evals]
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
        axes[0].plot(steps, [r["val_loss"] for r in evals], "o-", label="denoise 0")
        axes[0].plot(steps, [r["val_loss_d1"] for r in evals], "s-", label="denoise 1")
        axes[0].axhline(0.3235, color="grey", ls="--", lw=1, label="input (d 0)")
        axes[0].set_title("validation loss")
        axes[0].legend(fontsize=8)
        axes[1].plot(steps, [r["psnr_u"] for r in evals], "o-", label="denoise 0 (vs target + noise)")
        axes[1].plot(steps, [r["psnr_u_d1"] for r in evals], "s-", label="denoise 1 (vs noise-free truth)")
        axes[1].set_title("PSNR, compressed domain (dB)")
        axes[1].legend(fontsize=8)
        axes[2].plot(steps, [100 * r.get("flux_bias_median", float("nan")) for r in evals], "o-", label="median bias")
        axes[2].plot(steps, [100 * r.get("flux_abs_p90", float("nan")) for r in evals], "s-", label="90th pct |error|")
        axes[2].set_ylim(-30, 30)
        axes[2].set_title("stars layer flux vs truth (%)")
        axes[2].legend(fontsize=8)
        for ax in axes:
            ax.set_xlabel("step")
        fig.tight_layout()
        fig.savefig(a.png, dpi=80)
    print(f"{len(evals)} evaluations -> {a.csv}" + (f", {a.png}" if a.png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
