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


def test_pictures_leave_nothing_under_home(tmp_path):
    """Matplotlib writes a font cache under HOME on its first import unless
    MPLCONFIGDIR names another folder; astrosharp's pictures must leave HOME
    empty (and remove their temporary folder)."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from astrosharp.demo import before_after_png\n"
        "a = np.random.default_rng(0).normal(1.0, 0.01, (1, 64, 64)).astype(np.float32)\n"
        "before_after_png(a, a, 'pic.png')\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    env["HOME"] = str(home)
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=True, timeout=120)
    assert (tmp_path / "pic.png").stat().st_size > 1000
    assert [p.name for p in home.rglob("*")] == []
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == []
