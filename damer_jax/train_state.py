"""The TrainState pytree: everything that changes during training, in one place.

Orbax checkpoints the whole of it, so a resumed run continues where it stopped.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import optax


@flax.struct.dataclass
class TrainState:
  """Training state; every field but `tx` is a pytree leaf or subtree.

  Attributes:
    step: int32 [] number of optimiser updates applied so far.
    params: model parameters.
    opt_state: optax state of `tx`.
    batch_stats: BatchNorm running statistics.
    rng: uint32 key data [2] of the root training key (`jax.random.wrap_key_data`
      gives the typed key); stored raw so that checkpoints hold plain arrays.
    ema_params: momentum copy of the encoder parameters used by SAML for keys; None
      while SAML is off (no state for a disabled module).
    pcl: PCL state (EMA probability table etc.); None while PCL is off.
    saml: SAML state (queue, anchors); None while SAML is off.
    tx: the optimiser (static, not checkpointed).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  batch_stats: Any
  rng: jax.Array
  ema_params: Any = None
  pcl: Any = None
  saml: Any = None
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False, default=None)

  @classmethod
  def create(cls, *, params, batch_stats, tx: optax.GradientTransformation,
             rng: jax.Array, **modules) -> 'TrainState':
    """A fresh state at step 0; `rng` is a typed key (`jax.random.key`)."""
    return cls(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
               opt_state=tx.init(params), batch_stats=batch_stats,
               rng=jax.random.key_data(rng), tx=tx, **modules)

  @property
  def key(self) -> jax.Array:
    """The root training key as a typed key."""
    return jax.random.wrap_key_data(self.rng)

  def apply_gradients(self, grads, **changes) -> 'TrainState':
    """One optimiser update; `changes` replaces other fields (e.g. batch_stats)."""
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                        opt_state=opt_state, **changes)
