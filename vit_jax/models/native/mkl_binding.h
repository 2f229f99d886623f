// Intel MKL for cblas_batched_matmul.cc, through its single dynamic library (libmkl_rt, from the
// `mkl` wheel, which ships no headers: the few declarations needed are MKL's documented C API,
// with the CBLAS standard's enum values).
#pragma once

#include <cstdint>
#include <limits>

extern "C" {
enum CBLAS_LAYOUT { CblasRowMajor = 101 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
// The explicit 64-bit-int form: right whichever integer interface (LP64, ILP64) libmkl_rt was
// told to use by the environment (MKL_INTERFACE_LAYER) or by other code in the process.
void cblas_sgemm_64(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b,
                    int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                    const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
int MKL_Set_Threading_Layer(int layer);
int MKL_Set_Num_Threads_Local(int threads);
void MKL_Get_Version_String(char* buffer, int length);
}

namespace {

constexpr const char* kLibrary = "MKL";
constexpr int64_t kMaxSize = std::numeric_limits<int64_t>::max();
constexpr int kMklThreadingSequential = 1;  // MKL_THREADING_SEQUENTIAL in mkl_service.h.
// Whether MKL took its sequential layer (`InitLibrary`); else each call limits its own thread.
bool sequential = false;

inline void Sgemm(bool lhs_transposed, bool rhs_transposed, int64_t m, int64_t n, int64_t k,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                  int64_t ldc) {
  if (!sequential) MKL_Set_Num_Threads_Local(1);  // This pool thread only; cheap.
  cblas_sgemm_64(CblasRowMajor, lhs_transposed ? CblasTrans : CblasNoTrans,
                 rhs_transposed ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb, 0.0f,
                 c, ldc);
}

// Sequential MKL, so Intel's OpenMP runtime is never loaded. That is a process-wide setting of
// libmkl_rt, and only possible before its first computation: where other code in the process
// used MKL first, the layer stays as it was and each call runs on one thread instead
// (`Sgemm`). Returns MKL's version string.
inline const char* InitLibrary() {
  static char version[256];
  sequential = MKL_Set_Threading_Layer(kMklThreadingSequential) == kMklThreadingSequential;
  MKL_Get_Version_String(version, sizeof(version));
  return version;
}

}  // namespace
