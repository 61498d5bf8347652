"""Default DAMER configuration: every field, commented. Other configs start from this.

    python main.py --config=configs/default.py --workdir=/tmp/damer

Trains on the embedded synthetic dataset (400 tracks of 30 s) at full model size
(1.58M parameters, batch 64, 20,000 steps); use configs/demo.py for a CPU-sized run.

Measured on a 2-core CPU, 2026-11-25: 2.05 steps/s (131 examples/s,
`python benchmarks/train_throughput.py --config=configs/default.py`), so about 2.7 h
for the 20,000 steps; meant for a GPU or TPU. Accuracy at this size is not measured yet.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.seed = 0  # Root of every random key (init, dropout, data order).
  # 'classification': binary high/low per target (label > label_threshold);
  # 'regression': the value itself in [-1, 1].
  config.task = 'classification'
  config.targets = ('valence', 'arousal')  # Order of the target axis in every output.
  config.num_classes = 2  # Classes per target (binary high/low).
  config.label_threshold = 0.0  # High class when label > threshold (labels in [-1, 1]).

  # Data. Records are built by TFDS on the first run into dataset.data_dir.
  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = 'synthetic_va'  # synthetic_va (embedded), memo2496, pmemo, emomusic.
  config.dataset.data_dir = ''  # TFDS data dir; '' = TFDS default (~/tensorflow_datasets).
  config.dataset.manual_dir = ''  # Folder holding a manual download (real datasets).
  config.dataset.test_fraction = 0.2  # Share of *tracks* held out for testing.
  config.dataset.split_seed = 0  # Seed of the track-level split.
  # 'track': hold out tracks. 'style' (synthetic_va): hold out whole styles
  # (instrumentation families), the cross-track drift SAML is meant to counter.
  # 'segment' (real datasets): the authors' segment-level split stratified by
  # quadrant -- LEAKY, one track's segments land in both splits (docs/datasets.md).
  config.dataset.split_by = 'track'
  config.dataset.test_styles = ''  # split_by='style': e.g. 'fm_bell' or '3,4'; '' = seeded.
  config.dataset.cache = True  # Cache decoded records in memory after the first epoch.
  config.dataset.shuffle_buffer = 4096  # Examples in the shuffle buffer.
  # Real datasets (memo2496, pmemo, emomusic); see docs/datasets.md.
  # Processes decoding + featurising tracks; 0 = auto (one per core with >= 4 cores,
  # else in-process).
  config.dataset.num_workers = 0
  # Segments without an annotation inside them: 'drop' (counted in build_report.json)
  # or 'split' (kept, labels NaN, in an extra 'unlabelled' split for a PCL pool).
  config.dataset.unlabelled = 'drop'
  # pmemo, emomusic: 'dynamic' (2 Hz annotations, averaged per segment) or 'static'
  # (the clip's one rating on every segment of the clip).
  config.dataset.labels = 'dynamic'
  config.dataset.source = 'auto'  # memo2496: 'raw' (audio + CSVs), 'processed' (the
                                  # authors' .npy arrays) or 'auto' (raw if present).
  # synthetic_va only: how much music to generate.
  config.dataset.num_tracks = 400  # Tracks generated (split by track).
  config.dataset.track_seconds = 30.0  # Length of each track; one label per second.
  config.dataset.generator_seed = 0  # Seed of the music generator.

  # Features: both views from one decode (damer_audio/features.py).
  config.features = ml_collections.ConfigDict()
  config.features.sample_rate = 22050  # Hz; audio is resampled to this.
  config.features.segment_seconds = 1.0  # Segment length = label resolution.
  config.features.hop_length = 256  # STFT hop; 1 s at 22,050 Hz -> 87 frames.
  config.features.n_fft = 2048  # STFT window (Hann).
  config.features.n_mels = 128  # Mel bins.
  config.features.n_coch = 84  # Gammatone channels, ERB-spaced.
  config.features.mel_fmin = 0.0  # Lowest Mel frequency, Hz.
  config.features.coch_fmin = 50.0  # Lowest gammatone centre frequency, Hz.
  config.features.fmax = 0.0  # Highest frequency of both views, Hz; 0 = Nyquist.
  # How the cochleagram is made: 'gammatone' (a time-domain gammatone filterbank with
  # its own time resolution: a click is 1-2 frames wide above 500 Hz instead of 4, so
  # the views differ; about 9x the cost of 'stft', measured in docs/features.md) or 'stft'
  # (gammatone power responses on the Mel view's 93 ms STFT: the Mel view's time
  # resolution; configs saved without this field mean 'stft'); see docs/features.md.
  config.features.coch_method = 'gammatone'

  # Model (damer_jax/models.py).
  config.model = ml_collections.ConfigDict()
  config.model.width = 128  # Token width D of both encoders and DSAF.
  config.model.conv_features = (32, 64)  # Channels of the conv stem layers.
  config.model.encoder_layers = 2  # Transformer layers per view encoder.
  config.model.num_heads = 4  # Attention heads (encoders and DSAF).
  config.model.mlp_ratio = 2  # MLP hidden width = mlp_ratio * D.
  config.model.dropout = 0.1  # Dropout in attention, MLPs and embeddings.
  # Computation dtype of the encoders and DSAF: 'float32', or 'bfloat16' for mixed
  # precision (parameters, optimiser state, heads, losses and metrics stay float32).
  config.model.dtype = 'float32'

  # DSAF: bidirectional cross attention between the views, then gated fusion.
  config.dsaf = ml_collections.ConfigDict()
  config.dsaf.enabled = True  # False: fuse pooled streams without cross attention.
  config.dsaf.num_blocks = 2  # Cross-attention blocks L.

  # PCL: Progressive Confidence Labelling (damer_jax/pcl.py). An EMA table of each
  # training example's predicted class probabilities (labelled and unlabelled rows)
  # gives sharpened pseudo targets; only the most reliable examples (confidence x
  # cross-view consistency x temporal stability), chosen over the global batch, are
  # trained on them.
  config.pcl = ml_collections.ConfigDict()
  config.pcl.enabled = True  # Switch (ablations).
  config.pcl.weight = 0.5  # beta in the total loss.
  config.pcl.warmup_steps = 500  # No table update and no PCL loss before this step.
  config.pcl.ema_momentum = 0.9  # table <- m * table + (1 - m) * p (first visit: p).
  config.pcl.tau_start = 1.0  # Sharpening temperature at the end of warm-up ...
  config.pcl.tau_end = 0.5  # ... and at the end of training (lower = sharper).
  config.pcl.tau_schedule = 'cosine'  # 'linear', 'cosine' or 'constant' (tau_start).
  config.pcl.coverage_start = 0.3  # Share of each stream's global rows PCL may use ...
  config.pcl.coverage_end = 0.9  # ... to this at the end of training (same shape as tau).
  config.pcl.reliability_floor = 0.2  # Examples below this reliability are never used.
  config.pcl.class_balance = True  # Per-class budget: each class gets coverage / classes.
  config.pcl.label_mix = 0.5  # Soft target: mix * truth + (1 - mix) * sharpened EMA.
  # 'soft': the target above (the annotation always keeps >= label_mix: a regulariser;
  # unlabelled rows: mix 0).
  # 'pseudo': pseudo labels that may overrule an annotation the model and the raters
  # doubt; per-example trust from the raters' std where the dataset ships it.
  config.pcl.target_mode = 'soft'
  # 'pseudo' only. Target = trust * one-hot(annotation) + (1 - trust) * sharpened EMA;
  # with two classes a confident EMA overrules an annotation only where trust < 0.5.
  # Trust from the raters' std s: erf(|label - label_threshold| / (sqrt(2) s / sqrt(n)))
  # = 2 P(the annotated side is right) - 1, with n = num_raters (PMEmo, emoMusic: ~10
  # raters per clip; set it per dataset). Where s is unknown (< 0 or absent), label_trust:
  # 0.4 = the annotation is right with probability 0.7; it is overruled only where the
  # sharpened EMA gives the other class > 1 / (2 (1 - 0.4)) = 5/6. Unlabelled rows: 0.
  config.pcl.num_raters = 10
  config.pcl.label_trust = 0.4
  config.pcl.hard_targets = False  # 'pseudo' only: one-hot of the target's argmax.
  # Examples of the unlabelled stream per step (global, like batch_size), trained on
  # pseudo labels alone; 0 = no unlabelled stream. Needs a dataset with an unlabelled
  # split (synthetic benchmark; real datasets with dataset.unlabelled='split').
  config.pcl.unlabelled_batch_size = 0

  # SAML: Style Anchored Memory Learning (damer_jax/saml.py). A FIFO queue of projected
  # embeddings with labels and track ids, and per-class anchors; same-class entries
  # from *other* tracks are the positives of a supervised InfoNCE loss (same-track
  # entries are left out of it), averaged over the global batch. Rows of the
  # unlabelled stream are neither queries nor enqueued.
  config.saml = ml_collections.ConfigDict()
  config.saml.enabled = True  # Switch (ablations).
  config.saml.weight = 0.1  # gamma in the total loss.
  config.saml.projection_dim = 64  # Width of the L2-normalised projection.
  config.saml.queue_size = 1024  # K entries; every replica enqueues the gathered batch.
  config.saml.temperature = 0.1  # InfoNCE temperature.
  config.saml.key_encoder = 'ema'  # 'ema': momentum copy of the params; 'current': stop-grad.
  config.saml.ema_momentum = 0.99  # Momentum of the key encoder's params.
  config.saml.anchor_momentum = 0.9  # EMA of the class-mean key (classes as in positives).
  config.saml.anchor_weight = 0.5  # Weight of the anchor-alignment term inside SAML.
  # Positives: 'joint' (same valence-arousal quadrant, i.e. the same class of every
  # target; one softmax; num_classes ** num_targets anchors) or 'per_target' (same
  # class of one target, a separate softmax per target; per-target anchors).
  config.saml.positives = 'joint'

  # Loss: CE(fusion) + view_weight * (CE(mel) + CE(coch)) [+ PCL, SAML].
  config.loss = ml_collections.ConfigDict()
  config.loss.view_weight = 0.5  # alpha.
  config.loss.label_smoothing = 0.0  # Classification only.

  # Optimiser: AdamW, linear warm-up then cosine decay, global-norm clipping.
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = 1e-3  # Peak learning rate.
  config.optimizer.warmup_steps = 500  # Linear warm-up from 0.
  config.optimizer.end_learning_rate_factor = 0.01  # Final LR = factor * peak.
  config.optimizer.weight_decay = 0.05  # AdamW decoupled weight decay.
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.grad_clip_norm = 1.0  # Global-norm clipping; 0 disables.

  # Loop.
  config.batch_size = 64  # Global batch; divisible by the number of devices.
  config.eval_batch_size = 128  # Global eval batch; divisible by the number of devices.
  config.num_train_steps = 20000
  config.log_every_steps = 100  # Training metrics to TensorBoard / logs.
  config.eval_every_steps = 1000  # Evaluation on held-out tracks -> eval_metrics.jsonl.
  config.checkpoint_every_steps = 1000  # Orbax checkpoint of the whole TrainState.
  config.max_checkpoints_to_keep = 3
  config.parallelism = 'pmap'  # pmap (shard_map arrives with the PCL/SAML work).

  return config
