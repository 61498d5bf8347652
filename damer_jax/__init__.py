"""DAMER in JAX/Flax: dual-view (Mel + cochleagram) music emotion recognition.

Nothing in this package imports TensorFlow. The trainer is handed its data (a
`damer_jax.data.Dataset`, made by `input_pipeline.sources.create_dataset` in the entry
points); only prediction still borrows `input_pipeline`'s TensorFlow-free audio and
feature modules.
"""

__version__ = '0.1.0'
