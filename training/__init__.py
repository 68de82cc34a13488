"""Training of astrosharp's network (PyTorch; not needed to run the tool).

Modules: :mod:`training.arch` (the U-Net), :mod:`training.data` (pool of
simulated examples, noise and flips on the fly), :mod:`training.loss`,
:mod:`training.train` (the command), :mod:`training.export` (ONNX + manifest).
See docs/training.md for the recipe.
"""
