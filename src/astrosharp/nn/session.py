"""The shipped network, run with ONNX Runtime (no PyTorch needed).

A :class:`Model` is built once per run (one ONNX Runtime session) and
translates batches of tiles::

    model = Model.load()                       # the shipped model, checksum verified
    stars, nonstellar = model.translate(tiles, background, sigma, saturation, src_maps, params)

Each model file ``NAME.onnx`` is described by a manifest ``NAME.json`` beside
it (version, sha256, input/output layout, normalisation constants, tile
multiple, training data and validation scores); nothing is guessed from the
file name.

ONNX Runtime and the user's home: ONNX Runtime 1.32 on Linux, *when it is
imported*, writes a telemetry device id and an event store under
``$XDG_CACHE_HOME`` or ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/``
(``deviceid``, ``onnxruntime.db``), unless ``ORT_DISABLE_TELEMETRY=1`` is set
in the environment before the import. :meth:`Model.load` sets it (unless the
user set it) before importing ``onnxruntime``, and also switches off the
Windows ETW events (``onnxruntime.disable_telemetry_events``). Sessions are
created with profiling off and no optimised-model file, so nothing is
written anywhere. (Code that imports onnxruntime before astrosharp does must
set the variable itself.)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ModelError, ParameterError
from .._threads import each
from ..params import SharpenParams
from . import inputs as _inputs
from .inputs import (N_INPUTS, ORIENTATIONS, TILE_MULTIPLE, Controls, build_inputs, decode_outputs, orient_inputs,
                     untransform_images)

__all__ = ["DEFAULT_MODEL", "PREFERRED_PROVIDERS", "Model", "default_model_path", "choose_providers", "file_sha256"]

DEFAULT_MODEL = "astrosharp-small"
PREFERRED_PROVIDERS = (
    "CUDAExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "CPUExecutionProvider",
)
"""Execution providers in order of preference (the first available ones are used)."""


def default_model_path() -> Path:
    """Manifest (``.json``) of the model shipped with the package."""
    return Path(__file__).resolve().parent / "models" / f"{DEFAULT_MODEL}.json"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def choose_providers(available: Sequence[str], requested: Sequence[str] | None = None) -> list[str]:
    """Providers to use: the requested ones that are available, else the
    available ones of :data:`PREFERRED_PROVIDERS` in that order (CPU last)."""
    avail = list(available)
    if requested:
        missing = [p for p in requested if p not in avail]
        if missing:
            raise ModelError(
                f"ONNX Runtime provider(s) {', '.join(missing)} not available here (available: {', '.join(avail)})"
            )
        return list(requested)
    chosen = [p for p in PREFERRED_PROVIDERS if p in avail]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _manifest_path(path: str | os.PathLike[str] | None) -> Path:
    p = default_model_path() if path is None else Path(path)
    if p.suffix == ".onnx":
        p = p.with_suffix(".json")
    return p


def _check_layout(manifest: dict[str, Any], where: Path) -> None:
    norm = manifest.get("normalisation", {})
    mine = _inputs.normalisation_constants()
    for key in ("faint_scale", "bright_scale", "n_inputs", "n_outputs", "net_channels", "fwhm_ref", "beta_ref",
                "ellipticity_gain", "psf_features"):
        if norm.get(key) != mine[key]:
            raise ModelError(
                f"model {where.name} was trained with input layout {key}={norm.get(key)!r} but this version of "
                f"astrosharp builds {key}={mine[key]!r}: use a model made for this version"
            )


#: tiles of at least this many rows have their inputs built in bands of rows, one per core
BAND_MIN_ROWS = 256


def _build_in_bands(tiles: np.ndarray, bg: np.ndarray, sg: Any, sat: Any, maps: np.ndarray,
                    controls: Controls, pk: Any) -> np.ndarray:
    """:func:`build_inputs` in bands of rows side by side, one thread per core.

    Every input plane is computed pixel by pixel, so the bands give the same
    stack to the bit; NumPy releases the GIL in this work, which would
    otherwise leave all cores but one idle between network calls."""
    b, c, h, w = tiles.shape
    cores = os.cpu_count() or 1
    if cores < 2 or h < BAND_MIN_ROWS:
        return build_inputs(tiles, bg, sg, sat, maps, controls, poisson_k=pk)
    x = np.empty((b, N_INPUTS, h, w), dtype=np.float32)
    edges = np.linspace(0, h, min(cores, h // (BAND_MIN_ROWS // 2)) + 1).astype(int)

    def band(i: int) -> None:
        r = slice(edges[i], edges[i + 1])
        build_inputs(tiles[:, :, r], bg[:, :, r] if bg.ndim == 4 else bg, sg, sat, maps[..., r, :], controls,
                     poisson_k=pk, out=x[:, :, r])

    each(band, range(len(edges) - 1))
    return x


@dataclass
class Model:
    """One loaded network and its ONNX Runtime session.

    Attributes
    ----------
    manifest : dict
        The model's manifest (see ``training/export.py``).
    path : Path
        The ``.onnx`` file.
    providers : list of str
        Execution providers in use.
    threads : int
        Intra-op threads of the CPU provider.
    """

    manifest: dict[str, Any]
    path: Path
    providers: list[str]
    threads: int
    _session: Any = field(repr=False, default=None)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> "Model":
        """Load a model from its manifest (or its ``.onnx`` with the manifest beside it).

        Parameters
        ----------
        path : path-like, optional
            Manifest ``.json`` or model ``.onnx``; the shipped model by default.
        providers : sequence of str, optional
            ONNX Runtime providers; by default CUDA, CoreML, DirectML when
            available, else CPU.
        threads : int, optional
            Intra-op threads (default: the number of CPU cores).

        Raises
        ------
        ModelError
            Manifest or weights missing, checksum mismatch, incompatible layout
            or a provider that is not available.
        """
        mpath = _manifest_path(path)
        if not mpath.is_file():
            raise ModelError(f"model manifest {mpath} not found: reinstall astrosharp or give the path of a model")
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"model manifest {mpath} cannot be read ({exc})") from exc
        onnx_path = mpath.parent / manifest.get("file", mpath.with_suffix(".onnx").name)
        if not onnx_path.is_file():
            raise ModelError(f"model weights {onnx_path} not found: reinstall astrosharp or give the path of a model")
        digest = file_sha256(onnx_path)
        if digest != manifest.get("sha256"):
            raise ModelError(
                f"model weights {onnx_path.name} do not match their manifest (sha256 {digest[:12]}... expected "
                f"{str(manifest.get('sha256'))[:12]}...): the file is damaged or was replaced; reinstall astrosharp"
            )
        _check_layout(manifest, mpath)
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before the first import (see module notes)
        import onnxruntime as ort

        try:
            ort.disable_telemetry_events()
        except Exception:  # pragma: no cover - older builds without the switch
            pass
        chosen = choose_providers(ort.get_available_providers(), providers)
        n = int(threads) if threads else (os.cpu_count() or 1)
        so = ort.SessionOptions()
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.enable_profiling = False
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(onnx_path), sess_options=so, providers=chosen)
        except Exception as exc:
            raise ModelError(f"ONNX Runtime cannot load {onnx_path.name}: {exc}") from exc
        return cls(manifest=manifest, path=onnx_path, providers=session.get_providers(), threads=n, _session=session)

    # ------------------------------------------------------------------
    @property
    def tile_multiple(self) -> int:
        return int(self.manifest.get("tile_multiple", TILE_MULTIPLE))

    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw network call: (B, N_INPUTS, h, w) float32 -> (B, N_OUTPUTS, h, w);
        h and w must be multiples of :attr:`tile_multiple`."""
        if x.ndim != 4 or x.shape[1] != N_INPUTS:
            raise ParameterError(f"network input must be (B, {N_INPUTS}, h, w), got shape {x.shape}")
        m = self.tile_multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise ParameterError(f"network input height and width must be multiples of {m}, got {x.shape[2:]}")
        name = self._session.get_inputs()[0].name
        (y,) = self._session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})
        return y

    def translate(
        self,
        tiles: np.ndarray,
        background: Any,
        sigma: Any,
        saturation: Any,
        src_maps: np.ndarray,
        params: SharpenParams,
        poisson_k: Any = None,
        batch_size: int = 4,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Translate tiles from their source PSF to the targets of ``params``.

        Parameters
        ----------
        tiles : (B, C, h, w) float32
            Linear tiles (C = 1 or 3), NaN-free.
        background : (C,), (B, C) or (B, C, h, w)
            Background level, image units.
        sigma : (C,) or (B, C)
            Background noise standard deviation, image units, > 0.
        saturation : (C,), (B, C), scalar or None
            Saturation (clipping) level; None if nothing is clipped.
        src_maps : (B, C, 6, h, w)
            Source PSF parameters from ``PSFField.maps`` (fwhm, beta, e1, e2,
            asym_x, asym_y). With a manual PSF diameter, pass the field of
            ``PSFField.uniform(shape, C, D)`` where there are no stars.
        params : SharpenParams
            The controls (sharpen_stars, adjust_halos, psf_diameter,
            sharpen_nonstellar, correct_only, denoise), and ``orientations``:
            the network runs on each tile in that many orientations
            (:data:`astrosharp.nn.inputs.ORIENTATIONS`) and the layers are
            averaged.
        poisson_k : (C,) or None
            ``1 / (gain * sigma)`` when the gain is known (photon noise of
            bright sources), else None.
        batch_size : int
            Tiles per network call.

        Returns
        -------
        stars, nonstellar : (B, C, h, w) float32
            Linear layers; the background and the kept noise are in the
            non-stellar layer, and ``stars + nonstellar`` is the result.
        """
        tiles = np.asarray(tiles, dtype=np.float32)
        if tiles.ndim != 4:
            raise ParameterError(f"tiles must be a (B, C, h, w) array, got shape {tiles.shape}")
        b, c, h, w = tiles.shape
        if not np.all(np.isfinite(tiles)):
            raise ParameterError("tiles contain NaN or infinite values; fill them before translating")
        src_maps = np.asarray(src_maps, dtype=np.float32)
        m = self.tile_multiple
        ph, pw = (-h) % m, (-w) % m
        stars = np.empty((b, c, h, w), dtype=np.float32)
        nonstellar = np.empty((b, c, h, w), dtype=np.float32)
        bg = np.asarray(background, dtype=np.float32)
        per_tile_bg = bg.ndim == 4
        sg = np.asarray(sigma, dtype=np.float32)
        sat = None if saturation is None else np.asarray(saturation, dtype=np.float32)
        pk = None if poisson_k is None else np.asarray(poisson_k, dtype=np.float32)

        def pick(a: np.ndarray | None, sl: slice) -> Any:
            if a is None:
                return None
            return a[sl] if a.ndim in (2, 4) else a

        def pad(a: np.ndarray) -> np.ndarray:
            if not (ph or pw):
                return a
            widths = [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)]
            mode = "reflect" if min(h, w) > max(ph, pw) else "edge"
            return np.pad(a, widths, mode=mode)

        for s in range(0, b, max(1, int(batch_size))):
            sl = slice(s, min(b, s + batch_size))
            n = sl.stop - sl.start
            bgi = pick(bg, sl)
            x = _build_in_bands(
                pad(tiles[sl]),
                pad(bgi) if per_tile_bg else bgi,
                pick(sg, sl),
                pick(sat, sl),
                pad(src_maps[sl]),
                Controls.from_params(params, n),
                pick(pk, sl),
            )
            turns = ORIENTATIONS[:params.orientations]
            for k, turn in enumerate(turns):
                # the same sky in another orientation (the first is the
                # identity); the layers are averaged in linear units (their
                # sum and every star's flux are kept)
                y = self.run(orient_inputs(x, *turn) if k else x)
                y = untransform_images(y, *turn)[:, :, :h, :w]
                st, ns = decode_outputs(y, bgi, pick(sg, sl), channels=c)
                if k:
                    stars[sl] += st
                    nonstellar[sl] += ns
                else:
                    stars[sl] = st
                    nonstellar[sl] = ns
            if len(turns) > 1:
                stars[sl] /= len(turns)
                nonstellar[sl] /= len(turns)
        return stars, nonstellar

    def describe(self) -> str:
        """One line for logs and HISTORY records."""
        return (
            f"{self.manifest.get('name', self.path.stem)} v{self.manifest.get('version', '?')} "
            f"({self.manifest.get('params', '?')} params, sha256 {str(self.manifest.get('sha256', ''))[:12]}, "
            f"{', '.join(self.providers)})"
        )
