"""The seeded simulator: scenes, PSFs, noise and layered truth.

Public and reused by the tests, the benchmark and training. Every function
takes a ``numpy.random.Generator`` (or a seed) so results are reproducible.

>>> import numpy as np
>>> from astrosharp import synth
>>> from astrosharp.params import SharpenParams
>>> rng = np.random.default_rng(0)
>>> scene = synth.make_scene((256, 256), 3, rng, kind="mixed", sigma=1e-3)
>>> psf = synth.make_psf_model((256, 256), 3, rng)
>>> obs = synth.observe(scene, psf, rng, sigma=1e-3)
>>> truth = synth.truth_for(scene, psf, obs, SharpenParams(sharpen_stars=1, sharpen_nonstellar=0.5))
"""


from .cases import CASES, Case, make_case
from .optics import Optics, PSFModel, make_psf_model, uniform_psf_model
from .render import Observation, Truth, observe, render_source, render_target, target_params, truth_for
from .scene import KINDS, Scene, fractal_noise, make_scene
from .training import CONTROL_NAMES, training_example


__all__ = [
    "CASES",
    "CONTROL_NAMES",
    "Case",
    "KINDS",
    "Observation",
    "Optics",
    "PSFModel",
    "Scene",
    "Truth",
    "fractal_noise",
    "make_case",
    "make_psf_model",
    "make_scene",
    "observe",
    "render_source",
    "render_target",
    "target_params",
    "training_example",
    "truth_for",
    "uniform_psf_model",
]
