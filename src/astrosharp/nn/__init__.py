"""The network: input layout (:mod:`.inputs`) and the ONNX Runtime session
(:mod:`.session`). Runs without PyTorch."""

from __future__ import annotations

from .inputs import Controls, build_inputs, decode_outputs
from .session import Model, choose_providers, default_model_path

__all__ = ["Controls", "Model", "build_inputs", "choose_providers", "decode_outputs", "default_model_path"]
