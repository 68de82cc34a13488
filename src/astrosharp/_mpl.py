"""Matplotlib without files in the user's home.

Matplotlib, on its first import, writes a font cache
(``~/.cache/matplotlib/fontlist-*.json``) and may create
``~/.config/matplotlib``, unless ``MPLCONFIGDIR`` names another folder.
astrosharp draws only a few PNGs (the demo, the PSF map), so where the user
has not chosen a folder and matplotlib is not imported yet, :func:`matplotlib`
imports it with ``MPLCONFIGDIR`` pointing at a temporary folder, removed when
the process ends. The variable is restored right after the import
(matplotlib reads it once, when it starts), so the user's environment is not
changed. The cost is building the font list once per process (under a
second).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from types import ModuleType


def matplotlib() -> ModuleType:
    """The matplotlib module, with the Agg backend, imported as described above."""
    if "matplotlib" not in sys.modules and not os.environ.get("MPLCONFIGDIR"):
        folder = tempfile.mkdtemp(prefix="astrosharp-mpl-")
        atexit.register(shutil.rmtree, folder, True)
        os.environ["MPLCONFIGDIR"] = folder
        try:
            import matplotlib as mpl

            mpl.get_configdir()
            mpl.get_cachedir()
            import matplotlib.font_manager  # noqa: F401  (builds the font list now, in that folder)
        finally:
            del os.environ["MPLCONFIGDIR"]
    import matplotlib as mpl

    mpl.use("Agg", force=False)
    return mpl
