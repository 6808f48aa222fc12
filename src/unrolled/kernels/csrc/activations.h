// The activations of the compiled step loops (included by steps.cpp): sigmoid and tanh from an
// exponential the compiler vectorises in float32, the C library's in float64.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__SSE__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 1)
#include <xmmintrin.h>
#define UNROLLED_HAVE_MXCSR 1
#endif

// Each step's inner loops read and write distinct arrays, or the same element in place (the
// cell state of a generation step); the pragma lets the compiler vectorise them without the
// run-time overlap checks it gives up on beyond a few pointers.
#if defined(__clang__)
#define VECTOR_LOOP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define VECTOR_LOOP _Pragma("GCC ivdep")
#else
#define VECTOR_LOOP
#endif

namespace {

// exp(x) for float32 as 2^n p(r), x = n ln2 + r, |r| <= ln2/2, p a degree-7 Taylor polynomial:
// branch-free arithmetic the compiler turns into vector code. Saturates outside [-87, 88].
inline float fexp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;                  // ln2 in two parts
  const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f +
                  r * (8.3333338e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigm(float x) { return 1.0f / (1.0f + fexp(-x)); }
inline double sigm(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline float tanh_(float x) { return 2.0f / (1.0f + fexp(-2.0f * x)) - 1.0f; }
inline double tanh_(double x) { return std::tanh(x); }

// The per-step element-wise loops split their batch rows over ATen's thread pool (persistent: no
// thread starts per step) with at::parallel_for, in tasks of at least GRAIN hidden units, so a
// small step (or one thread) runs serially, inline. Each row is computed by the same code either
// way, so the result does not depend on the thread count (tests/test_native.py checks it).
// UNROLLED_NATIVE_GRAIN=<units> changes the grain (read once per kernel call; the tests set 1 to
// force the parallel path at tiny sizes).
constexpr int64_t GRAIN_DEFAULT = 4096;

inline int64_t grain_units() {
  const char* text = std::getenv("UNROLLED_NATIVE_GRAIN");
  if (text == nullptr || *text == '\0') return GRAIN_DEFAULT;
  const long long v = std::atoll(text);
  return v >= 1 ? static_cast<int64_t>(v) : GRAIN_DEFAULT;
}

#if defined(__GNUC__) || defined(__clang__)
#define NO_INLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define NO_INLINE __declspec(noinline)
#else
#define NO_INLINE
#endif

// Subnormal numbers (below 1.2e-38 in float32) are flushed to zero while a loop body runs, on
// whichever thread runs it, and the thread's setting is restored after: on x86 an operation on a
// subnormal takes about a hundred times as long, and saturated gates make them (1 - f = 1e-38
// times a small gradient). The minLSTM's backward on Linux C made them in 1.6% of its outputs and
// trained 3.3x slower than with them flushed (docs/performance.md). A value that small is zero to
// every result above it. UNROLLED_NATIVE_SUBNORMALS=keep (read once per kernel call, with the
// grain: `row_plan`) keeps them, for benchmarks/subnormals.py; where there is no SSE control
// register the loops keep them too.
inline bool flush_subnormals() {
  const char* text = std::getenv("UNROLLED_NATIVE_SUBNORMALS");
  return text == nullptr || std::strcmp(text, "keep") != 0;
}

struct FlushSubnormals {
#ifdef UNROLLED_HAVE_MXCSR
  const bool on;
  const unsigned int saved = _mm_getcsr();
  explicit FlushSubnormals(bool flush) : on(flush) {
    if (on) _mm_setcsr(saved | 0x8040u);  // FTZ (0x8000): results; DAZ (0x0040): inputs
  }
  ~FlushSubnormals() {
    if (on) _mm_setcsr(saved);
  }
#else
  explicit FlushSubnormals(bool) {}
#endif
  FlushSubnormals(const FlushSubnormals&) = delete;
  FlushSubnormals& operator=(const FlushSubnormals&) = delete;
};

// One compiled copy of a loop body, called by the serial and the parallel path alike: inlined
// into each, the compiler may contract a multiply-add in one and not the other (1 ulp apart).
template <typename F>
NO_INLINE void run_rows(const F& f, int64_t b0, int64_t b1, bool flush) {
  const FlushSubnormals guard(flush);
  f(b0, b1);
}

// How a kernel call runs its row loops, read from the environment once per call (not per step):
// the grain and whether subnormals are flushed.
struct RowPlan {
  int64_t grain;
  bool flush;
};

inline RowPlan row_plan() { return {grain_units(), flush_subnormals()}; }

// f(b0, b1) over the rows [0, rows) of `units` hidden units each, in parallel tasks of at least
// `plan.grain` units.
template <typename F>
inline void over_rows(int64_t rows, int64_t units, const RowPlan& plan, const F& f) {
  const int64_t per_task = std::max<int64_t>(1, plan.grain / std::max<int64_t>(1, units));
  const bool flush = plan.flush;
  if (rows <= per_task || at::get_num_threads() == 1) {
    run_rows(f, int64_t(0), rows, flush);
    return;
  }
  at::parallel_for(0, rows, per_task, [&](int64_t b0, int64_t b1) { run_rows(f, b0, b1, flush); });
}

}  // namespace
