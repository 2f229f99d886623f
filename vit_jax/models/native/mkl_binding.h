// Intel MKL for cblas_batched_matmul.cc, through its single dynamic library (libmkl_rt, from the
// `mkl` wheel, which ships no headers: the few declarations needed are MKL's documented C API,
// with the CBLAS standard's enum values).
#pragma once

#include <cstdint>

extern "C" {
enum CBLAS_LAYOUT { CblasRowMajor = 101 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(CBLAS_LAYOUT layout, CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int m,
                 int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                 float beta, float* c, int ldc);
int MKL_Set_Threading_Layer(int layer);
void MKL_Get_Version_String(char* buffer, int length);
}

constexpr const char* kLibrary = "MKL";
constexpr int kMklThreadingSequential = 1;  // MKL_THREADING_SEQUENTIAL in mkl_service.h.

inline void Sgemm(bool lhs_transposed, bool rhs_transposed, int64_t m, int64_t n, int64_t k,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                  int64_t ldc) {
  cblas_sgemm(CblasRowMajor, lhs_transposed ? CblasTrans : CblasNoTrans,
              rhs_transposed ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c,
              ldc);
}

// Sequential MKL (no OpenMP runtime: the wheel's intel-openmp is never loaded); returns MKL's
// version string.
inline const char* InitLibrary() {
  static char version[256];
  MKL_Set_Threading_Layer(kMklThreadingSequential);
  MKL_Get_Version_String(version, sizeof(version));
  return version;
}
