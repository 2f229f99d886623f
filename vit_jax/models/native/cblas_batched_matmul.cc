// A float32 batched matmul through a CBLAS library's sgemm (OpenBLAS's or MKL's), as an XLA FFI
// custom call on CPU (`models.cblas_matmul`), with the contract of batched_matmul_shapes.h (a
// transposed operand is passed as BLAS's transpose flag, so no copy is made). The library comes
// in through its binding header, named at build time by -DBLAS_BINDING (openblas_binding.h,
// mkl_binding.h): its sgemm, its name, its largest size and its setup (`InitLibrary`).
//
// Threads: a BLAS's own thread pool would run beside XLA's, which runs independent operations
// (the two products of a backward pass) at the same time, so the two pools fought over the cores
// (OpenBLAS: in-program sgemm throughput 94-129 GFLOP/s against 140-155 called alone, on the
// 2-core Intel host). So the library runs single-threaded (`InitLibrary`), and the call splits its
// work into pieces on XLA's own intra-op pool instead: whole matrices of the batch where there are
// at least as many as threads, else blocks of rows or columns of the larger side. The calling
// thread takes pieces too, and waits only for pieces other threads have started, so the call
// cannot deadlock when every pool thread is inside such a call.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "batched_matmul_shapes.h"
#ifndef BLAS_BINDING
#error "build with -DBLAS_BINDING naming a binding header, as models.cblas_matmul does"
#endif
#include BLAS_BINDING
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Work {
  BatchedShapes shape;
  bool lhs_transposed, rhs_transposed;
  const float* lhs;
  const float* rhs;
  float* out;
  enum Split { kBatch, kRows, kColumns } split;
  int64_t extent;  // Of the split axis.
  int64_t pieces;
  std::atomic<int64_t> next{0};
  std::mutex mutex;
  std::condition_variable finished;
  int64_t done = 0;  // Pieces finished, under `mutex`.
};

void Gemm(const Work& w, int64_t m, int64_t n, const float* a, const float* b, float* c) {
  const BatchedShapes& s = w.shape;
  Sgemm(w.lhs_transposed, w.rhs_transposed, m, n, s.k, a, s.lhs_cols, b, s.rhs_cols, c, s.n);
}

void RunPiece(const Work& w, int64_t piece) {
  const BatchedShapes& s = w.shape;
  int64_t lo = w.extent * piece / w.pieces, hi = w.extent * (piece + 1) / w.pieces;
  int64_t lhs_size = s.lhs_rows * s.lhs_cols, rhs_size = s.rhs_rows * s.rhs_cols;
  if (w.split == Work::kBatch) {
    for (int64_t i = lo; i < hi; ++i) {
      Gemm(w, s.m, s.n, w.lhs + i * lhs_size, w.rhs + i * rhs_size, w.out + i * s.m * s.n);
    }
    return;
  }
  for (int64_t i = 0; i < s.g; ++i) {
    const float* a = w.lhs + i * lhs_size;
    const float* b = w.rhs + i * rhs_size;
    float* c = w.out + i * s.m * s.n;
    if (w.split == Work::kRows) {  // Rows lo..hi of op(lhs): a column offset when transposed.
      Gemm(w, hi - lo, s.n, a + (w.lhs_transposed ? lo : lo * s.lhs_cols), b, c + lo * s.n);
    } else {  // Columns lo..hi of op(rhs): a row offset when transposed.
      Gemm(w, s.m, hi - lo, a, b + (w.rhs_transposed ? lo * s.rhs_cols : lo), c + lo);
    }
  }
}

// Takes pieces until none is left; if it ran any, adds their count to `done` and wakes the
// waiting caller.
void TakePieces(Work& w) {
  int64_t ran = 0;
  for (int64_t piece; (piece = w.next.fetch_add(1)) < w.pieces; ++ran) RunPiece(w, piece);
  if (ran == 0) return;
  std::lock_guard<std::mutex> lock(w.mutex);
  w.done += ran;
  w.finished.notify_all();
}

ffi::Error BatchedMatmul(ffi::ThreadPool pool, ffi::AnyBuffer lhs, ffi::AnyBuffer rhs,
                         ffi::Result<ffi::AnyBuffer> out, bool lhs_transposed,
                         bool rhs_transposed) {
  if (lhs.element_type() != ffi::DataType::F32 || rhs.element_type() != ffi::DataType::F32 ||
      out->element_type() != ffi::DataType::F32) {
    return ffi::Error::InvalidArgument(std::string(kLibrary) +
                                       "'s custom call takes float32 operands only");
  }
  auto work = std::make_shared<Work>();
  ffi::Error parsed = ParseBatchedShapes(lhs.dimensions(), rhs.dimensions(), out->dimensions(),
                                         lhs_transposed, rhs_transposed, work->shape);
  if (parsed.failure()) return parsed;
  const BatchedShapes& s = work->shape;
  // The binding's largest size and leading dimension (OpenBLAS's are 32-bit ints).
  for (int64_t size : {s.m, s.n, s.k, s.lhs_cols, s.rhs_cols}) {
    if (size > kMaxSize) {
      return ffi::Error::InvalidArgument("a matrix side exceeds " + std::string(kLibrary) +
                                         "'s 32-bit sizes");
    }
  }
  if (s.g == 0 || s.m == 0 || s.n == 0) return ffi::Error::Success();  // An empty result.
  if (s.k == 0) {  // Empty sums: zeros (BLAS would be handed a zero leading dimension).
    std::fill_n(static_cast<float*>(out->untyped_data()), s.g * s.m * s.n, 0.0f);
    return ffi::Error::Success();
  }
  work->lhs_transposed = lhs_transposed;
  work->rhs_transposed = rhs_transposed;
  work->lhs = static_cast<const float*>(lhs.untyped_data());
  work->rhs = static_cast<const float*>(rhs.untyped_data());
  work->out = static_cast<float*>(out->untyped_data());
  int64_t threads = std::max<int64_t>(1, pool.num_threads());  // 0 without an intra-op pool.
  work->split = s.g >= threads ? Work::kBatch : (s.m >= s.n ? Work::kRows : Work::kColumns);
  work->extent = work->split == Work::kBatch ? s.g : std::max(s.m, s.n);
  work->pieces = std::min(threads, work->extent);
  // The helpers hold `work` alive: one may start after the call has returned, find no piece
  // left and do nothing.
  for (int64_t helper = 1; helper < work->pieces; ++helper) {
    pool.Schedule([work] { TakePieces(*work); });
  }
  TakePieces(*work);
  std::unique_lock<std::mutex> lock(work->mutex);
  work->finished.wait(lock, [&] { return work->done == work->pieces; });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CblasBatchedMatmul, BatchedMatmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("lhs_transposed")
                                  .Attr<bool>("rhs_transposed"));

// Called once at load, before any sgemm: the library single-threaded (see the top), and what it
// says of itself (OpenBLAS: its kernel's name, such as "SkylakeX", which `matmul_library="auto"`
// checks; MKL: its version).
extern "C" const char* CblasInit() { return InitLibrary(); }
