"""The bench runs end to end on tiny cases, its table and JSON agree, and its
rows move the way physics says (oracle RL beats the input; the ideal row's
residual is the input's noise)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from astrosharp.bench import METHODS, run_bench
from astrosharp.bench.cases import load_case, real_image_paths
from astrosharp.bench.report import format_result
from astrosharp.errors import ParameterError

TINY = (("galaxies_mono", 0, 160), ("noise_mono", 0, 96))


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    messages = []
    res = run_bench(quick=True, json_path=out, methods=("input", "ideal", "rl_oracle", "rl"), cases=TINY,
                    real_dir=tmp_path_factory.mktemp("no_real"), progress=messages.append)
    return res, out, messages


def _row(res, case, method):
    (row,) = [r for r in res.rows if r["name"] == case and r["method"] == method]
    return row


def test_every_case_and_method_has_a_row(result):
    res, _, messages = result
    assert {(r["name"], r["method"]) for r in res.rows} == {
        (c, m) for c, _, _ in TINY for m in ("input", "ideal", "rl_oracle", "rl")
    }
    assert any("galaxies_mono" in m for m in messages)
    assert any("real images skipped" in n for n in res.notes)


def test_oracle_rl_beats_the_input_on_extended_emission(result):
    res, _, _ = result
    inp = _row(res, "galaxies_mono", "input")
    orc = _row(res, "galaxies_mono", "rl_oracle")
    assert orc["psnr_ext"] > inp["psnr_ext"] + 1.0
    assert orc["psnr"] > inp["psnr"] + 1.0
    assert orc["best_iterations"] in [int(k) for k in orc["sweep"]]
    assert orc["time_s"] > 0 and orc["mpix_s"] > 0 and orc["mem_mb"] > 0


def test_ideal_row_residual_is_the_input_noise(result):
    res, _, _ = result
    ideal = _row(res, "noise_mono", "ideal")
    assert ideal["hf_excess"] == pytest.approx(1.0, abs=1e-9)
    assert ideal["spurious"] == 0
    assert math.isnan(ideal["psnr"])  # no scene, no PSNR


def test_json_holds_the_same_numbers_as_the_table(result):
    res, out, _ = result
    data = json.loads(out.read_text())
    assert len(data["rows"]) == len(res.rows)
    table = format_result(res)
    for row in data["rows"]:
        if row["psnr"] is not None:
            assert f"{row['psnr']:.2f}" in table
    assert data["config"]["quick"] is True
    assert res.table() == table


def test_unknown_method_is_refused():
    with pytest.raises(ParameterError):
        run_bench(quick=True, methods=("bogus",), cases=())


def test_case_tables_hold_the_truth_stars():
    bc = load_case("stars_mono", 0, 128)
    assert bc.kind == "stars" and not bc.has_extended
    assert bc.star_fwhm.shape == (1, len(bc.star_x))
    # the target FWHM is half the source FWHM (sharpen stars 1.0)
    assert np.allclose(bc.target_fwhm, 0.5 * bc.star_fwhm, rtol=1e-6)
    assert bc.extended.sum() < bc.valid.sum()  # stars masked


def test_real_image_paths_skip_psf_files(real_dir):
    paths = real_image_paths(real_dir)
    assert paths and not any(p.name.startswith("PSF_") for p in paths)
    assert "SOURCES.md" not in [p.name for p in paths]


def test_real_image_rows(real_dir, tmp_path):
    (tmp_path / "Cut_HSC1.fits").symlink_to(real_dir / "Cut_HSC1.fits")
    res = run_bench(quick=True, methods=("input", "rl"), cases=(), real_dir=tmp_path)
    methods = [r["method"] for r in res.real]
    assert methods == ["input", "rl"]
    before, after = res.real
    if before["stars"]:
        assert after["fwhm"] < before["fwhm"]
    assert set(METHODS) >= set(methods)


def test_nn_d1_row_removes_the_noise_the_nn_row_keeps(tmp_path):
    from astrosharp.bench.runner import model_available

    if not model_available():
        pytest.skip("no network model installed")
    res = run_bench(quick=True, methods=("nn", "nn_d1"), cases=(("noise_mono", 0, 96),), real_dir=tmp_path)
    nn, d1 = _row(res, "noise_mono", "nn"), _row(res, "noise_mono", "nn_d1")
    # on pure noise the residual is the output: denoise 1 must take most of it away
    assert d1["hf_excess"] < 0.5 * nn["hf_excess"]
