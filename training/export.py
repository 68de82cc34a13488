"""Export trained (EMA) weights to ONNX with a manifest, verified against PyTorch.

::

    python -m training.export --checkpoint runs/small/best_ema.pt \\
        --out src/astrosharp/nn/models/astrosharp-small.onnx --log runs/small/log.jsonl

Writes ``NAME.onnx`` (opset 17, dynamic batch, height and width) and
``NAME.json`` (the manifest read by :class:`astrosharp.nn.Model`), and checks
that ONNX Runtime and PyTorch agree on a batch of inputs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from astrosharp.nn import inputs as nn_inputs
from astrosharp.nn.session import file_sha256

from .arch import UNet, UNetConfig, count_params
from .curve import read_evals

__all__ = ["load_weights", "export_onnx", "write_manifest", "main", "MODEL_VERSION"]

MODEL_VERSION = "0.1"
OPSET = 17


def load_weights(checkpoint: str) -> tuple[UNet, dict[str, Any]]:
    """The EMA network of a checkpoint (best_ema.pt, last_ema.pt or last.pt)."""
    st = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = st["config"]
    model = UNet(UNetConfig(**cfg["model"]))
    model.load_state_dict(st["ema"])
    model.eval()
    return model, st


def export_onnx(model: UNet, path: str, check_size: int = 64, seed: int = 0, x_check: np.ndarray | None = None) -> float:
    """Write the ONNX file; return the max |ORT - torch| on ``x_check``
    (realistic inputs, e.g. a validation batch) or on random inputs."""
    # as astrosharp.nn.Model.load does: ONNX Runtime writes a telemetry folder
    # under the home directory when imported, unless this is set first
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    model = model.float().eval()
    x = torch.zeros(1, nn_inputs.N_INPUTS, 64, 64)
    tmp = path + ".tmp"
    torch.onnx.export(
        model,
        (x,),
        tmp,
        opset_version=OPSET,
        input_names=["inputs"],
        output_names=["outputs"],
        dynamic_axes={"inputs": {0: "batch", 2: "height", 3: "width"}, "outputs": {0: "batch", 2: "height", 3: "width"}},
        dynamo=False,
    )
    os.replace(tmp, path)
    if x_check is not None:
        xc = np.ascontiguousarray(x_check, dtype=np.float32)
    else:
        rng = np.random.default_rng(seed)
        xc = rng.standard_normal((2, nn_inputs.N_INPUTS, check_size, check_size + 16)).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    y_ort = sess.run(None, {"inputs": xc})[0]
    with torch.no_grad():
        y_pt = model(torch.from_numpy(xc)).numpy()
    err = float(np.abs(y_ort - y_pt).max())
    if not err < 1e-3:
        raise RuntimeError(f"ONNX Runtime and PyTorch disagree by {err:g} after export")
    return err


def _curve(log_paths: str | Sequence[str] | None) -> list[dict[str, Any]]:
    """The validation records of the log(s), joined as :func:`training.curve.read_evals` does."""
    if not log_paths:
        return []
    return [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items() if k != "event"}
            for r in read_evals(log_paths)]


def write_manifest(
    onnx_path: str,
    model: UNet,
    st: dict[str, Any],
    log_path: str | Sequence[str] | None,
    max_err: float,
    notes: str = "",
) -> dict[str, Any]:
    """Write NAME.json beside NAME.onnx and return it."""
    cfg = st.get("config", {})
    curve = _curve(log_path)
    # the log's record of the checkpoint's step, where there is one (a log that
    # joins several runs counts the hours from the first), else the checkpoint's own
    ev = (next((c for c in reversed(curve) if c.get("step") == st.get("step")), None)
          or st.get("eval") or (curve[-1] if curve else {}))
    name = os.path.splitext(os.path.basename(onnx_path))[0]
    try:
        from astrosharp import synth

        data_version = getattr(synth, "DATA_VERSION", getattr(synth, "__version__", "synth"))
    except Exception:  # pragma: no cover
        data_version = "unknown"
    manifest = {
        "name": name,
        "version": MODEL_VERSION,
        "file": os.path.basename(onnx_path),
        "sha256": file_sha256(onnx_path),
        "format": f"onnx opset {OPSET}",
        "architecture": {"type": "residual U-Net, no normalisation layers", **cfg.get("model", {})},
        "params": count_params(model),
        "inputs": {
            "name": "inputs",
            "layout": "B, C_in, H, W float32 (H, W multiples of tile_multiple)",
            "channels": nn_inputs.input_channel_names(),
        },
        "outputs": {
            "name": "outputs",
            "layout": "B, 6, H, W float32: stars u_faint (3), non-stellar u_faint (3)",
        },
        "normalisation": nn_inputs.normalisation_constants(),
        "tile_multiple": nn_inputs.TILE_MULTIPLE,
        "training": {
            "data": f"astrosharp.synth.training_example ({data_version}), pool {cfg.get('pool_count')} items "
            f"seed {cfg.get('pool_seed')}"
            + "".join(f" + {cfg.get('extra_pool_count')} items seed {x}" for x in cfg.get("extra_pool_seeds", []))
            + "".join(f" + {p.get('count')} items seed {p.get('seed')} ({p.get('mix', 'default')})"
                      for p in cfg.get("extra_pools", []))
            + f", {cfg.get('patch')} px; validation {cfg.get('val_count')} items seed "
            f"{cfg.get('val_seed')}",
            "steps": int(st.get("step", 0)),
            "batch_size": cfg.get("batch_size"),
            "hours": round(float(ev.get("hours", 0.0)), 3),
            "config": cfg,
        },
        "validation": {k: v for k, v in ev.items() if k not in ("event",)},
        "validation_curve": curve,
        "export_check_max_abs_error": max_err,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "notes": notes,
    }
    with open(os.path.splitext(onnx_path)[0] + ".json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="best_ema.pt, last_ema.pt or last.pt of a run")
    ap.add_argument("--out", default="src/astrosharp/nn/models/astrosharp-small.onnx")
    ap.add_argument("--log", nargs="+", default=None,
                    help="the run's log.jsonl (validation curve for the manifest); several logs, in order, for a "
                         "run continued from another's weights (their hours add up)")
    ap.add_argument("--notes", default="")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    model, st = load_weights(a.checkpoint)
    x_check = None
    val_dir = st.get("config", {}).get("val_dir")
    if val_dir and os.path.isdir(val_dir):
        from .data import BatchOptions, load_pool, make_batch

        val = load_pool(val_dir)
        x_check, _, _ = make_batch(val, np.arange(min(8, len(val))), np.random.default_rng(0), BatchOptions(augment=False))
    err = export_onnx(model, a.out, x_check=x_check)
    man = write_manifest(a.out, model, st, a.log, err, a.notes)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.2f} MB, sha256 {man['sha256'][:12]}, "
          f"step {man['training']['steps']}, max |ORT - torch| {err:.2e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
