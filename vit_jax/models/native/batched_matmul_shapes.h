// The operand contract shared by the batched-matmul custom calls (`models.native_matmul`):
// lhs [..., M, K] (or [..., K, M] with lhs_transposed), rhs [..., K, N] (or [..., N, K] with
// rhs_transposed) -> out [..., M, N] float32. The leading axes, the same in all three, are one
// batch axis G of their product: the arrays are row-major, so that is free.
#pragma once

#include <cstddef>
#include <cstdint>

#include "xla/ffi/api/ffi.h"

struct BatchedShapes {
  int64_t g, m, k, n;
  int64_t lhs_rows, lhs_cols, rhs_rows, rhs_cols;  // As stored: [G, rows, cols] row-major.
};

// Fills `shapes`, or returns why the dimensions break the contract. Checked here too, not only
// in Python: a wrong shape would make the library read out of bounds.
inline xla::ffi::Error ParseBatchedShapes(xla::ffi::AnyBuffer::Dimensions l,
                                          xla::ffi::AnyBuffer::Dimensions r,
                                          xla::ffi::AnyBuffer::Dimensions o, bool lhs_transposed,
                                          bool rhs_transposed, BatchedShapes& shapes) {
  size_t rank = l.size();
  if (rank < 3 || r.size() != rank || o.size() != rank) {
    return xla::ffi::Error::InvalidArgument(
        "operands and result must be [..., ., .] of one rank >= 3");
  }
  int64_t g = 1;
  for (size_t axis = 0; axis + 2 < rank; ++axis) {
    if (r[axis] != l[axis] || o[axis] != l[axis]) {
      return xla::ffi::Error::InvalidArgument("lhs, rhs and result disagree on the batch axes");
    }
    g *= l[axis];
  }
  int64_t a0 = l[rank - 2], a1 = l[rank - 1], b0 = r[rank - 2], b1 = r[rank - 1];
  int64_t m = lhs_transposed ? a1 : a0, k = lhs_transposed ? a0 : a1;
  int64_t rhs_k = rhs_transposed ? b1 : b0, n = rhs_transposed ? b0 : b1;
  if (rhs_k != k) {
    return xla::ffi::Error::InvalidArgument("lhs and rhs disagree on the contracted size");
  }
  if (o[rank - 2] != m || o[rank - 1] != n) {
    return xla::ffi::Error::InvalidArgument("the result must be [..., M, N]");
  }
  shapes = {g, m, k, n, a0, a1, b0, b1};
  return xla::ffi::Error::Success();
}
