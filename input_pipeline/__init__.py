"""Audio decoding, the two time-frequency views, TFDS builders and tf.data readers.

`audio`, `features` and `splits` need only numpy/librosa/soundfile; `records`,
`pipeline` and the builders under `datasets/` need TensorFlow (Datasets).
"""
