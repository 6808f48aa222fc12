// The activations of the compiled step loops (included by steps.cpp): sigmoid and tanh from an
// exponential the compiler vectorises in float32, the C library's in float64.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

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

}  // namespace
