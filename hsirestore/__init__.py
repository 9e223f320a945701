"""hsirestore: restore hyperspectral images with learned models.

Library entry points: :func:`hsirestore.io.read_cube`, :func:`hsirestore.io.write_cube`,
the model registry in :mod:`hsirestore.registry`, and the predictors in
:mod:`hsirestore.inference`.
"""

__version__ = "0.1.0"
