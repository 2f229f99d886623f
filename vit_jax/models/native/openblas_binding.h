// OpenBLAS for cblas_batched_matmul.cc: the `scipy-openblas32` wheel's library, whose symbols
// carry the `scipy_` prefix (so it never clashes with numpy's or SciPy's bundled copies).
#pragma once

#include <cstdint>
#include <limits>

#include "cblas.h"

namespace {

constexpr const char* kLibrary = "OpenBLAS";
// Its sizes and leading dimensions are 32-bit ints (the "32" of scipy-openblas32).
constexpr int64_t kMaxSize = std::numeric_limits<int>::max();

inline void Sgemm(bool lhs_transposed, bool rhs_transposed, int64_t m, int64_t n, int64_t k,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                  int64_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, lhs_transposed ? CblasTrans : CblasNoTrans,
                    rhs_transposed ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb,
                    0.0f, c, ldc);
}

// Single-threaded (this process's copy of scipy-openblas32's library only); returns the name of
// the kernel OpenBLAS picked for this CPU.
inline const char* InitLibrary() {
  scipy_openblas_set_num_threads(1);
  return scipy_openblas_get_corename();
}

}  // namespace
