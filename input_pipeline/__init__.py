"""Datasets: TFDS builders, tf.data readers, the generated benchmark and its sources.

It produces what `damer_data` defines (a `damer_data.dataset.Dataset`) from audio
decoded and turned into views by `damer_audio`; it never imports `damer_jax`.
`splits`, `synthetic_music`, `va_benchmark`, `manual` and `sources` need no
TensorFlow; `records`, `pipeline` and the builders under `datasets/` need TensorFlow
(Datasets).
"""
