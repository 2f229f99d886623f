"""Which example each position of the training stream holds, and which rows a process reads.

The training stream is endless: position g holds example `perm_e(g mod N)` of the N training
examples, where e = g div N is the epoch and `perm_e` a pseudo-random permutation of
0..N-1 keyed by (seed, e) (`tf.random.experimental.index_shuffle`: a bijection computed per
index, nothing materialised). So every example comes exactly once per epoch, the shuffle is
global, and it differs per epoch and per seed.

Global batch b holds positions b*B .. b*B + B - 1, laid over the mesh's data shards in order:
the process whose rows of the batch are r0 .. r0 + L - 1 reads positions b*B + r0 .. and
nothing else. Per-example randomness comes from (seed, position), so an example is
preprocessed the same whichever process reads it, and the whole data position of a run is one
integer: the index of the next global batch. It does not depend on the number of processes
either: a run resumed on another number of hosts continues with exactly the examples it would
have seen (only mixup, which pairs rows within each process's part of a batch, mixes them
differently).
"""

from __future__ import annotations

import tensorflow as tf

# Keeps the permutation's keys apart from the per-example random streams of the pipeline.
_PERMUTATION_STREAM = 7


def local_positions(
    start_batch: int,
    global_batch: int,
    row_offset: int,
    rows: int,
    count: int | None,
    chunk: int,
) -> tf.data.Dataset:
    """This process's stream positions from batch `start_batch` on, in vectors of `chunk`.

    The process owns rows row_offset .. row_offset + rows - 1 of every global batch; `count`
    positions in all (None: endless). Vectors, not scalars, because tf.data's per-element
    overhead is tens of microseconds.
    """
    first = start_batch * rows
    stop = tf.int64.max if count is None else first + count

    def positions(c: tf.Tensor) -> tf.Tensor:  # [<= chunk] int64
        k = tf.range(c, tf.minimum(c + chunk, stop))
        return (k // rows) * global_batch + row_offset + k % rows

    return tf.data.Dataset.range(first, stop, chunk).map(positions)


def example_indices(positions: tf.Tensor, num_examples: int, seed: int) -> tf.Tensor:
    """Stream positions [n] int64 -> the indices [n] of the examples they hold."""
    n = tf.constant(num_examples, tf.int64)
    epoch = positions // n  # [n]
    fill = lambda value: tf.fill(tf.shape(epoch), tf.constant(value, tf.int64))
    keys = tf.stack([fill(seed), epoch, fill(_PERMUTATION_STREAM)], axis=-1)  # [n, 3]
    return tf.raw_ops.RandomIndexShuffle(index=positions % n, seed=keys, max_index=n - 1)


def valid_eval_rows(num_examples: int, global_batch: int, row_offset: int, rows: int) -> int:
    """How many of this process's rows of the ceil(N / B) eval batches hold an example.

    Eval position p is example p (no shuffle); positions >= N are padding. A process's
    positions increase with its row count, so its valid rows are a prefix.
    """
    num_batches = -(-num_examples // global_batch)
    return sum(
        min(max(num_examples - b * global_batch - row_offset, 0), rows) for b in range(num_batches)
    )
