"""The DAMER network in flax.linen.

    mel  [B, n_mels, T] -> MelEncoder  -> tokens [B, T', D] -+-> DSAF -> gate -> fused [B, D]
    coch [B, n_coch, T] -> CochEncoder -> tokens [B, T', D] -+
    heads: mel (pooled Mel tokens), coch (pooled cochleagram tokens), fusion (fused)

Each head predicts both targets: logits [B, num_targets, num_classes] for
classification, values in [-1, 1] [B, num_targets] for regression. The per-view heads
read each encoder's own tokens (before cross attention), so the two views' predictions
stay independent; PCL's cross-view consistency relies on that.

BatchNorm in the convolutional stems is synchronised across devices when the model is
built with `axis_name` (the data-parallel axis, `create_model(config, axis_name=...)`):
with train=True its batch statistics are then those of the global batch, so training
does not depend on the number of devices, and the model must be applied inside
jax.pmap / shard_map over that axis. With train=False the running statistics are used
and no collective runs, so inference works unmapped whatever `axis_name` is.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class MlpBlock(nn.Module):
  """Dense -> GELU -> dropout -> Dense."""

  hidden: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    width = x.shape[-1]
    x = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(width, dtype=self.dtype)(x)


class EncoderLayer(nn.Module):
  """Pre-LayerNorm Transformer layer over tokens [B, N, D]."""

  num_heads: int
  mlp_ratio: int = 2
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    y = nn.LayerNorm(dtype=self.dtype)(x)
    y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dropout_rate=self.dropout,
                                        deterministic=not train, dtype=self.dtype)(y, y)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
    y = MlpBlock(self.mlp_ratio * x.shape[-1], self.dropout, self.dtype)(
        nn.LayerNorm(dtype=self.dtype)(x), train=train)
    return x + nn.Dropout(self.dropout, deterministic=not train)(y)


class ViewEncoder(nn.Module):
  """Convolutional stem, tokens along time, positional embeddings, Transformer layers.

  Input [B, F, T] (frequency bins or channels by frames); output tokens [B, T', D] with
  T' = ceil(T / 2) (the stem halves time once and frequency at every conv).
  `axis_name`: device axis over which BatchNorm's training statistics are averaged
  (None: this device's batch only).
  """

  width: int
  conv_features: Sequence[int] = (16, 32)
  num_layers: int = 1
  num_heads: int = 4
  mlp_ratio: int = 2
  dropout: float = 0.0
  dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, spec, *, train: bool):
    x = jnp.swapaxes(spec, 1, 2)[..., None].astype(self.dtype)  # [B, T, F, 1]
    for i, features in enumerate(self.conv_features):
      x = nn.Conv(features, (3, 3), strides=(2 if i == 0 else 1, 2), use_bias=False,
                  dtype=self.dtype)(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                       axis_name=self.axis_name)(x)
      x = nn.gelu(x)
    b, t, f, c = x.shape
    x = nn.Dense(self.width, dtype=self.dtype)(x.reshape(b, t, f * c))  # [B, T', D]
    pos = self.param('pos_embedding', nn.initializers.normal(0.02), (1, t, self.width))
    x = nn.Dropout(self.dropout, deterministic=not train)(x + pos.astype(self.dtype))
    for _ in range(self.num_layers):
      x = EncoderLayer(self.num_heads, self.mlp_ratio, self.dropout, self.dtype)(
          x, train=train)
    return nn.LayerNorm(dtype=self.dtype)(x)


class CrossAttentionBlock(nn.Module):
  """One DSAF block: Mel->coch and coch->Mel cross attention, each with an MLP.

  Both directions read the block's input streams, so neither sees the other's update.
  """

  num_heads: int
  mlp_ratio: int = 2
  dropout: float = 0.0
  dtype: Any = jnp.float32

  def _attend(self, queries, keys, train, name):
    q = nn.LayerNorm(dtype=self.dtype, name=f'{name}_ln_q')(queries)
    kv = nn.LayerNorm(dtype=self.dtype, name=f'{name}_ln_kv')(keys)
    y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dropout_rate=self.dropout,
                                        deterministic=not train, dtype=self.dtype,
                                        name=f'{name}_attn')(q, kv)
    x = queries + nn.Dropout(self.dropout, deterministic=not train)(y)
    y = MlpBlock(self.mlp_ratio * x.shape[-1], self.dropout, self.dtype, name=f'{name}_mlp')(
        nn.LayerNorm(dtype=self.dtype, name=f'{name}_ln_mlp')(x), train=train)
    return x + nn.Dropout(self.dropout, deterministic=not train)(y)

  @nn.compact
  def __call__(self, mel, coch, *, train: bool):
    return (self._attend(mel, coch, train, 'mel_to_coch'),
            self._attend(coch, mel, train, 'coch_to_mel'))


class GatedFusion(nn.Module):
  """fused = g * mel + (1 - g) * coch, with g = sigmoid(Dense([mel, coch])) per feature."""

  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, mel, coch):
    gate = nn.sigmoid(nn.Dense(mel.shape[-1], dtype=self.dtype)(
        jnp.concatenate([mel, coch], axis=-1)))
    return gate * mel + (1.0 - gate) * coch


class Head(nn.Module):
  """Per-target predictions from pooled features [B, D]."""

  num_targets: int
  num_classes: int
  task: str = 'classification'

  @nn.compact
  def __call__(self, x):
    x = x.astype(jnp.float32)  # Heads (and so logits and losses) stay in float32.
    if self.task == 'classification':
      logits = nn.Dense(self.num_targets * self.num_classes)(x)
      return logits.reshape(x.shape[0], self.num_targets, self.num_classes)
    return jnp.tanh(nn.Dense(self.num_targets)(x))


class DAMER(nn.Module):
  """Dual-view network with DSAF fusion and Mel, cochleagram and fusion heads.

  Returns a dict: 'mel', 'coch', 'fusion' (head outputs, see module docstring),
  'embedding' [B, D] (the fused representation) and, with projection_dim > 0,
  'projection' [B, projection_dim] (L2-normalised MLP projection of it, for SAML).
  With `axis_name` set, train=True must run inside a map over that device axis
  (synchronised BatchNorm); train=False runs anywhere.
  """

  num_targets: int = 2
  num_classes: int = 2
  task: str = 'classification'
  width: int = 64
  conv_features: Sequence[int] = (16, 32)
  encoder_layers: int = 1
  num_heads: int = 4
  mlp_ratio: int = 2
  dropout: float = 0.1
  dsaf_enabled: bool = True
  dsaf_blocks: int = 1
  projection_dim: int = 0  # > 0 adds the SAML projection head ('projection' output).
  dtype: Any = jnp.float32  # Computation dtype of encoders and DSAF (bfloat16: mixed).
  axis_name: str | None = None  # Device axis of synchronised BatchNorm (None: local).

  @nn.compact
  def __call__(self, mel, coch, *, train: bool = False) -> dict[str, Any]:
    encoder = dict(width=self.width, conv_features=tuple(self.conv_features),
                   num_layers=self.encoder_layers, num_heads=self.num_heads,
                   mlp_ratio=self.mlp_ratio, dropout=self.dropout, dtype=self.dtype,
                   axis_name=self.axis_name)
    mel_tokens = ViewEncoder(**encoder, name='mel_encoder')(mel, train=train)
    coch_tokens = ViewEncoder(**encoder, name='coch_encoder')(coch, train=train)
    head = dict(num_targets=self.num_targets, num_classes=self.num_classes, task=self.task)
    pool = lambda tokens: tokens.astype(jnp.float32).mean(axis=1)
    outputs = {'mel': Head(**head, name='mel_head')(pool(mel_tokens)),
               'coch': Head(**head, name='coch_head')(pool(coch_tokens))}
    if self.dsaf_enabled:
      for i in range(self.dsaf_blocks):
        mel_tokens, coch_tokens = CrossAttentionBlock(
            self.num_heads, self.mlp_ratio, self.dropout, self.dtype, name=f'dsaf_{i}')(
                mel_tokens, coch_tokens, train=train)
    fused = GatedFusion(name='fusion_gate')(pool(mel_tokens), pool(coch_tokens))
    outputs['fusion'] = Head(**head, name='fusion_head')(fused)
    outputs['embedding'] = fused
    if self.projection_dim:
      z = nn.Dense(self.projection_dim, name='projection_out')(
          nn.gelu(nn.Dense(self.width, name='projection_hidden')(fused)))
      outputs['projection'] = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True),
                                              1e-6)
    return outputs


def create_model(config: Any, axis_name: str | None = None) -> DAMER:
  """DAMER configured by `config.model`, `config.dsaf`, `config.task`, `config.targets`.

  Args:
    config: the experiment config.
    axis_name: the data-parallel device axis for synchronised BatchNorm (training
      inside jax.pmap / shard_map, e.g. 'batch'); None for per-device statistics.
      Inference (train=False) needs no axis either way.
  """
  if config.task not in ('classification', 'regression'):
    raise ValueError(f"config.task must be 'classification' or 'regression', got "
                     f'{config.task!r}.')
  m = config.model
  return DAMER(num_targets=len(config.targets), num_classes=config.num_classes,
               task=config.task, width=m.width, conv_features=tuple(m.conv_features),
               encoder_layers=m.encoder_layers, num_heads=m.num_heads,
               mlp_ratio=m.mlp_ratio, dropout=m.dropout,
               dsaf_enabled=config.dsaf.enabled, dsaf_blocks=config.dsaf.num_blocks,
               projection_dim=config.saml.projection_dim if config.saml.enabled else 0,
               dtype=_dtype(config.model.get('dtype', 'float32')), axis_name=axis_name)


def _dtype(name: str) -> Any:
  if name not in ('float32', 'bfloat16'):
    raise ValueError(f"config.model.dtype must be 'float32' or 'bfloat16', got {name!r}.")
  return jnp.float32 if name == 'float32' else jnp.bfloat16
