"""Audio in, the two time-frequency views out: the layer every other package shares.

What belongs here is what turns sound into model input, with no TensorFlow and no JAX
(numpy, scipy, soundfile and librosa only):

* `audio`: decoding files (`load_audio`) and arrays (`to_mono`) to mono float32 at
  a sample rate, `AudioError`, and `AUDIO_EXTENSIONS`, the one list of file
  extensions that folder walks treat as audio.
* `features`: `FeatureSpec` (the views' parameters, frames per segment) and the Mel
  and cochleagram views of segments (`segment_audio`, `compute_views`).

The trainer (`damer_jax`, prediction) and the data builders (`input_pipeline`) both
import it; it imports neither of them, nor `damer_data`.
"""
