"""DAMER in JAX/Flax: dual-view (Mel + cochleagram) music emotion recognition.

Nothing in this package imports TensorFlow, nor `input_pipeline`. The trainer is
handed its data (a `damer_data.dataset.Dataset`, made by
`input_pipeline.sources.create_dataset` in the entry points); prediction decodes audio
and computes the views with `damer_audio`, the same code the dataset builders use.
"""

__version__ = '0.1.0'
