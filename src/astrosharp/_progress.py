"""A progress bar on standard error that stays silent when asked to."""

from __future__ import annotations

import sys
from typing import Any


class _Silent:
    """Stands in for a progress bar when output is suppressed."""

    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: int | None, desc: str = "", *, quiet: bool = False, unit: str = "tile") -> Any:
    """A tqdm bar on stderr, or a silent stand-in when ``quiet``.

    Both have ``update(n)``, ``set_description(s)``, ``close()`` and work as a
    context manager. The bar appears only after half a second, so quick steps
    print nothing.
    """
    if quiet:
        return _Silent()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, delay=0.5, dynamic_ncols=True)
