"""Shared test fixtures.

Real data live in ``../shared/data`` beside the repository (or where
``ASTROSHARP_SHARED`` points); tests that need them skip with a clear reason
where they are absent. Tests never depend on the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASTROSHARP_SHARED", REPO.parent / "shared"))
REAL = SHARED / "data" / "real"
XISF = SHARED / "data" / "xisf"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared evaluation data not found at {path} (set ASTROSHARP_SHARED)")
    return path


@pytest.fixture
def real_dir() -> Path:
    return _need(REAL)


@pytest.fixture
def xisf_dir() -> Path:
    return _need(XISF)


@pytest.fixture(autouse=True)
def _no_home_telemetry(tmp_path_factory, monkeypatch):
    """Keep libraries (ONNX Runtime telemetry, matplotlib caches) inside the
    test's temporary area instead of the user's home."""
    home = tmp_path_factory.getbasetemp() / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MPLCONFIGDIR", str(home / "mpl"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
