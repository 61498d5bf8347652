"""Datasets: TFDS builders, tf.data readers, the generated benchmark and its sources.

It produces what `damer_data` defines (a `damer_data.dataset.Dataset`) from audio
decoded and turned into views by `damer_audio`; it never imports `damer_jax`.
`splits`, `synthetic_music`, `va_benchmark`, `sources`, `digest`, `records` (all but
`records.features_dict`) and the record build's own modules (`download`, `tracks`,
which the worker processes run, and `build_report`) need no TensorFlow; `pipeline`,
`manual_builder` and the builders under `datasets/` need TensorFlow (Datasets).
"""
