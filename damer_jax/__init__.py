"""DAMER in JAX/Flax: dual-view (Mel + cochleagram) music emotion recognition.

Nothing in this package imports TensorFlow; the input pipeline lives in
`input_pipeline/` and is imported only by the training loop when it reads records.
"""

__version__ = '0.1.0'
