"""What the trainer reads, independent of where the data comes from.

TensorFlow-free (numpy and JAX only): the `damer_jax` trainer consumes these types and
`input_pipeline` produces them, so both import this package and neither imports the
other for it. It imports neither of them.

* `dataset`: the `Dataset` interface the trainer is handed, `ArrayDataset` (numpy
  arrays in memory) and the batching helpers both implementations share (batch sizes
  per device, the unlabelled stream, padding of evaluation batches).
* `hosts`: cross-process helpers a data source needs when several processes read
  their own shards (`max_over_processes`).
* `workers`: work spread over processes or threads with results in order and a
  bounded window (`WorkerPool`, `ordered_map`): what a record build's decoders and
  prediction's decoders run on. Standard library only (no JAX either), so a worker
  process starts light.
"""
