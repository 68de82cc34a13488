"""A tiny training run, resume, ONNX export and loading it with ONNX Runtime."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from astrosharp.errors import ModelError  # noqa: E402
from astrosharp.nn import Model  # noqa: E402
from astrosharp.params import SharpenParams  # noqa: E402
from training.data import pool_from_examples  # noqa: E402
from training.export import export_onnx, load_weights, write_manifest  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402

TINY = {"widths": [8, 16], "blocks": [1, 1], "dec_blocks": [1]}


@pytest.fixture(scope="module")
def pools():
    from astrosharp import synth

    pool = pool_from_examples([synth.training_example(np.random.default_rng([11, i]), size=32) for i in range(2)])
    return pool, pool


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, pools):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(model=TINY, batch_size=2, total_steps=2, warmup_steps=1, eval_every=2, log_every=1, threads=1)
    ev = train(cfg, str(out), pools=pools, device_name="cpu")
    assert np.isfinite(ev["val_loss"])
    return out


def test_two_steps_write_log_and_checkpoints(run_dir):
    recs = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    kinds = [r["event"] for r in recs]
    assert kinds.count("train") == 2 and kinds.count("eval") == 1
    assert all(np.isfinite(r["loss"]) for r in recs if r["event"] == "train")
    for name in ("last.pt", "best_ema.pt", "last_ema.pt", "config.json"):
        assert (run_dir / name).is_file()


def test_resume_continues_the_step_count(run_dir, pools):
    cfg = TrainConfig(model=TINY, batch_size=2, total_steps=3, warmup_steps=1, eval_every=10, log_every=1, threads=1)
    train(cfg, str(run_dir), resume=True, pools=pools, device_name="cpu")
    st = torch.load(run_dir / "last.pt", weights_only=False)
    assert st["step"] == 3


def test_export_runs_in_onnx_runtime(run_dir, tmp_path):
    model, st = load_weights(str(run_dir / "best_ema.pt"))
    onnx_path = tmp_path / "tiny.onnx"
    err = export_onnx(model, str(onnx_path), check_size=32)
    assert err < 1e-3
    write_manifest(str(onnx_path), model, st, str(run_dir / "log.jsonl"), err)
    m = Model.load(tmp_path / "tiny.json", threads=1)
    tiles = np.full((2, 1, 40, 40), 0.1, np.float32)  # 40 px: padded to a multiple of the tile size inside
    maps = np.zeros((2, 1, 6, 40, 40), np.float32)
    maps[:, :, 0], maps[:, :, 1] = 3.0, 3.0
    stars, ns = m.translate(tiles, np.array([0.1]), np.array([0.01]), None, maps, SharpenParams())
    assert stars.shape == ns.shape == (2, 1, 40, 40)
    assert np.isfinite(stars).all() and np.isfinite(ns).all()

    # a changed weights file no longer matches its manifest
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(tmp_path / "tiny.json", bad / "tiny.json")
    data = bytearray(onnx_path.read_bytes())
    data[-1] ^= 0xFF
    (bad / "tiny.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="do not match"):
        Model.load(bad / "tiny.json")
    (bad / "tiny.onnx").unlink()
    with pytest.raises(ModelError, match="not found"):
        Model.load(bad / "tiny.onnx")


def test_extra_pools_each_with_its_own_size_and_mixture(tmp_path):
    from training.train import _extra_pools, load_config

    cfg = {"extra_pool_seeds": [7], "extra_pool_count": 30, "extra_pool_mix": "correct",
           "extra_pools": [{"seed": 11, "count": 20, "mix": "manual"}, {"seed": 12, "count": 5}]}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    assert _extra_pools(load_config(str(path))) == [(7, 30, "correct"), (11, 20, "manual"), (12, 5, "default")]
    path.write_text(json.dumps({"extra_pools": [{"seed": 3, "mixture": "manual"}]}))
    with pytest.raises(ValueError, match="needs seed and count"):
        _extra_pools(load_config(str(path)))


def test_manifest_joins_logs_of_continued_runs(run_dir, tmp_path):
    """A run continued from another's weights: the manifest's curve covers both
    logs, the second one's hours counted on from the first's, and its
    validation record is the log's record of the checkpoint's own step."""
    model, st = load_weights(str(run_dir / "best_ema.pt"))
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text(json.dumps({"event": "eval", "step": 0, "hours": 2.5, "val_loss": 0.9}) + "\n"
                       + json.dumps({"event": "train", "step": 0, "hours": 3.0}) + "\n")
    onnx_path = tmp_path / "tiny.onnx"
    err = export_onnx(model, str(onnx_path), check_size=32)
    run_log = str(run_dir / "log.jsonl")
    alone = write_manifest(str(onnx_path), model, st, run_log, err)
    joined = write_manifest(str(onnx_path), model, st, [str(earlier), run_log], err)
    assert [c["step"] for c in joined["validation_curve"]] == [0] + [c["step"] for c in alone["validation_curve"]]
    assert joined["validation"]["step"] == st["step"]
    assert joined["training"]["hours"] == pytest.approx(alone["training"]["hours"] + 3.0, abs=1e-3)
    with pytest.raises(FileNotFoundError, match="not found"):
        write_manifest(str(onnx_path), model, st, [str(tmp_path / "missing.jsonl")], err)


def test_config_base_gives_the_keys_a_config_does_not_set(tmp_path):
    from training.train import load_config

    (tmp_path / "a.json").write_text(json.dumps({"lr": 3e-4, "total_steps": 100, "model": TINY}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text(json.dumps({"base": "../a.json", "lr": 1e-4}))
    cfg = load_config(str(tmp_path / "sub" / "b.json"))
    assert (cfg.lr, cfg.total_steps, cfg.model) == (1e-4, 100, TINY)
    (tmp_path / "c.json").write_text(json.dumps({"base": "a.json", "lr_typo": 1.0}))
    with pytest.raises(ValueError, match="unknown config keys"):
        load_config(str(tmp_path / "c.json"))
    (tmp_path / "d.json").write_text(json.dumps({"base": "e.json"}))
    (tmp_path / "e.json").write_text(json.dumps({"base": "d.json"}))
    with pytest.raises(ValueError, match="its own base"):
        load_config(str(tmp_path / "d.json"))
