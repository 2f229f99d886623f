// A batched matmul through oneDNN, as an XLA FFI custom call on CPU (`models.onednn_matmul`).
//
// The contract of batched_matmul_shapes.h with operands both bfloat16 or both float32: the
// attention core's `einsum_f32_materialised`'s. A transposed operand is described to oneDNN by its
// strides, so no copy is made. Primitives are cached by shape, dtype and layout: creating one
// costs far more than running it at these sizes. Float32 math is pinned to strict, so an
// environment setting (ONEDNN_DEFAULT_FPMATH_MODE) cannot lower its precision. XLA runs
// independent custom calls on several threads at once, and oneDNN's own scratchpad is shared
// between primitives unless the library was built for concurrent execution, so each call brings
// its own (thread-local).
#include <algorithm>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "batched_matmul_shapes.h"
#include "dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dims = dnnl::memory::dims;
using data_type = dnnl::memory::data_type;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// [G, rows, cols] as stored: row-major, or the transpose of a row-major [G, cols, rows].
dnnl::memory::desc Matrices(int64_t g, int64_t rows, int64_t cols, data_type type,
                            bool transposed) {
  dims strides = transposed ? dims{rows * cols, 1, rows} : dims{rows * cols, cols, 1};
  return dnnl::memory::desc({g, rows, cols}, type, strides);
}

struct Shapes {
  dnnl::memory::desc lhs, rhs, out;
};

Shapes Describe(int64_t g, int64_t m, int64_t k, int64_t n, data_type type, bool lhs_t,
                bool rhs_t) {
  return {Matrices(g, m, k, type, lhs_t), Matrices(g, k, n, type, rhs_t),
          Matrices(g, m, n, data_type::f32, false)};
}

struct Cached {
  dnnl::matmul matmul;
  dnnl::memory::desc scratchpad;
};

const Cached& Primitive(const Shapes& shapes, int64_t g, int64_t m, int64_t k, int64_t n,
                        data_type type, bool lhs_t, bool rhs_t) {
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int, bool, bool>;
  static std::mutex mutex;
  static std::map<Key, Cached> cache;
  std::lock_guard<std::mutex> lock(mutex);
  Key key{g, m, k, n, static_cast<int>(type), lhs_t, rhs_t};
  auto found = cache.find(key);
  if (found != cache.end()) return found->second;
  dnnl::primitive_attr attributes;
  attributes.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attributes.set_fpmath_mode(dnnl::fpmath_mode::strict);
  dnnl::matmul::primitive_desc description(Engine(), shapes.lhs, shapes.rhs, shapes.out,
                                           attributes);
  Cached entry{dnnl::matmul(description), description.scratchpad_desc()};
  return cache.emplace(key, entry).first->second;
}

ffi::Error BatchedMatmul(ffi::AnyBuffer lhs, ffi::AnyBuffer rhs, ffi::Result<ffi::AnyBuffer> out,
                         bool lhs_transposed, bool rhs_transposed) {
  if (lhs.element_type() != rhs.element_type()) {
    return ffi::Error::InvalidArgument("lhs and rhs must have the same dtype");
  }
  data_type type;
  switch (lhs.element_type()) {
    case ffi::DataType::BF16: type = data_type::bf16; break;
    case ffi::DataType::F32: type = data_type::f32; break;
    default: return ffi::Error::InvalidArgument("dtype must be bfloat16 or float32");
  }
  if (out->element_type() != ffi::DataType::F32) {
    return ffi::Error::InvalidArgument("the result must be float32 [..., M, N]");
  }
  BatchedShapes shape;
  ffi::Error parsed = ParseBatchedShapes(lhs.dimensions(), rhs.dimensions(), out->dimensions(),
                                         lhs_transposed, rhs_transposed, shape);
  if (parsed.failure()) return parsed;
  int64_t g = shape.g, m = shape.m, k = shape.k, n = shape.n;
  if (g == 0 || m == 0 || n == 0) return ffi::Error::Success();  // An empty result.
  if (k == 0) {  // Empty sums: zeros, which oneDNN is not asked for.
    std::fill_n(static_cast<float*>(out->untyped_data()), g * m * n, 0.0f);
    return ffi::Error::Success();
  }
  try {
    Shapes shapes = Describe(g, m, k, n, type, lhs_transposed, rhs_transposed);
    const Cached& cached = Primitive(shapes, g, m, k, n, type, lhs_transposed, rhs_transposed);
    thread_local std::vector<char> scratch;
    scratch.resize(std::max(scratch.size(), cached.scratchpad.get_size()));
    dnnl::memory a(shapes.lhs, Engine(), lhs.untyped_data());
    dnnl::memory b(shapes.rhs, Engine(), rhs.untyped_data());
    dnnl::memory c(shapes.out, Engine(), out->untyped_data());
    dnnl::memory pad(cached.scratchpad, Engine(), scratch.data());
    dnnl::stream stream(Engine());
    cached.matmul.execute(stream, {{DNNL_ARG_SRC, a},
                                   {DNNL_ARG_WEIGHTS, b},
                                   {DNNL_ARG_DST, c},
                                   {DNNL_ARG_SCRATCHPAD, pad}});
    stream.wait();
  } catch (const std::exception& error) {  // dnnl::error, bad_alloc: never across the C ABI.
    return ffi::Error::Internal(error.what());
  } catch (...) {
    return ffi::Error::Internal("oneDNN's matmul failed");
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(OnednnBatchedMatmul, BatchedMatmul,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("lhs_transposed")
                                  .Attr<bool>("rhs_transposed"));

// 1 if this CPU has oneDNN's matmul for `bfloat16` (else float32) inputs, else 0: bfloat16
// needs AVX-512 or AVX2-VNNI-2, and without it creating the primitive fails.
extern "C" int OnednnSupportsMatmul(int bfloat16) {
  try {
    data_type type = bfloat16 ? data_type::bf16 : data_type::f32;
    Shapes shapes = Describe(1, 1, 1, 1, type, false, false);
    dnnl::matmul::primitive_desc description(Engine(), shapes.lhs, shapes.rhs, shapes.out);
    return 1;
  } catch (...) {
    return 0;
  }
}

// 1 if oneDNN runs on this CPU with AMX (Intel's matrix tiles, Sapphire Rapids and later,
// enabled by the OS), else 0: where `matmul_library="auto"` takes oneDNN for bfloat16.
extern "C" int OnednnUsesAmx() {
  auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  auto amx = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_amx);
  return (isa & amx) == amx ? 1 : 0;
}
