import json

import numpy as np

from astrosharp.psf.field import PSFField
from astrosharp.psf.measure import measure_psf
from astrosharp.psf.plot import plot_psf_field
from astrosharp.psf.report import format_psf_table, psf_to_json

from _psf_helpers import star_image


def test_table_json_and_plot(tmp_path):
    rng = np.random.default_rng(2)
    img, _, _ = star_image(rng, n=120, fwhm=(3.0, 3.6))
    m = measure_psf(np.concatenate([img, img * 1.1, img * 0.9]))
    text = format_psf_table(m)
    assert all(name in text for name in ("R", "G", "B", "centre", "top-left", "bottom-right"))
    med = m.field.median(1)["fwhm"]
    assert f"{med:.2f}" in text
    d = psf_to_json(m)
    back = json.loads(json.dumps(d))
    assert back["summary"][0]["stars"] == int(m.field.counts[0].sum())
    assert len(back["stars"]["x"]) == int(m.stars.used.sum())
    out = plot_psf_field(m, tmp_path / "psf.png", image=img)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fallback_note_is_printed():
    f = PSFField.uniform((100, 100), 1, 3.0, origin="fallback", note="no usable stars found: default PSF")
    assert "note: no usable stars found" in format_psf_table(f)
    assert psf_to_json(f)["notes"] == ["no usable stars found: default PSF"]
