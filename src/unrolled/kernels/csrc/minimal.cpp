// The linear recurrence of the minimal cells (unrolled.minimal's "loop" path), compiled with the
// step loops (kernels/native.py builds this file into the same library as steps.cpp).
//
// The gates read the input alone, so Python computes the pre-activations of every step in one
// matrix product before this runs, and the weight gradients from dpre in one product after it.
// What is left is element-wise: for every row b and unit j, sequentially over t,
//
//     minGRU   z = sigm(k_z), n = pos(k_n),                 h_t = h_{t-1} + z (n - h_{t-1})
//     minLSTM  f' = f / (f + i) (f, i = sigm(k_f), sigm(k_i)), g = pos(k_g),  h_t = f' h_{t-1} + (1 - f') g
//
// i.e. h_t = a_t h_{t-1} + b_t, with pos(v) = sigm(min(v, 0)) + max(v, 0). The backward runs the
// recurrence in reverse, g_t = dy_t + a_{t+1} g_{t+1}, recomputes the gates from the
// pre-activations (cheaper than storing them: the loop is bound by memory, not arithmetic) and
// writes the pre-activations' gradients in the same pass:
//
//     minGRU   dk_z = g z (1 - z) (n - h_{t-1}),   dk_n = g z pos'(k_n)
//     minLSTM  q = g f' (1 - f') (h_{t-1} - g~),   dk_f = q (1 - f),  dk_i = -q (1 - i),
//              dk_g = g (1 - f') pos'(k_g)
//
// and dL/dh_0 = a_0 g_0. pos'(v) = s (1 - s) + 3/4 [v > 0] with s = sigm(min(v, 0)): 1/4 at 0, as
// autograd's. Shapes are batch-first and contiguous, as Python has them: pre (B, T, G*H), h0
// (B, H), out and dy (B, T, H). A row's T steps are one task of `over_rows` (activations.h): a
// whole sequence is one parallel region, and each row is computed by the same code whatever the
// thread count (tests/test_minimal.py checks both against each other and against the readable loop).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "activations.h"

namespace {

inline float exp_(float x) { return fexp(x); }
inline double exp_(double x) { return std::exp(x); }

// f' = f / (f + i) = B / (A + B) with A = 1 + e^{-k_f}, B = 1 + e^{-k_i}; every exponential is
// taken scaled by e^{-m}, m = max(0, -k_f, -k_i), so none overflows and the sum (one of its terms
// is e^0 = 1) never underflows: finite and accurate however far the gates saturate.
template <typename scalar_t>
inline scalar_t forget_share(scalar_t kf, scalar_t ki) {
  const scalar_t u = -kf, v = -ki, zero = 0;
  const scalar_t w = u > v ? u : v, m = w > zero ? w : zero;  // two selects: a nested one is not vectorised
  const scalar_t e0 = exp_(-m), ef = exp_(u - m), ei = exp_(v - m);
  return (e0 + ei) / ((e0 + ef) + (e0 + ei));
}

template <typename scalar_t>
inline scalar_t low_part(scalar_t v) {  // sigm(min(v, 0)): pos(v) below 0, 1/2 above
  return sigm(v < scalar_t(0) ? v : scalar_t(0));
}

template <typename scalar_t>
inline scalar_t high_part(scalar_t v) {  // max(v, 0)
  return v > scalar_t(0) ? v : scalar_t(0);
}

template <typename scalar_t>
inline scalar_t pos_grad(scalar_t s, scalar_t v) {  // pos'(v) from s = low_part(v)
  return s * (scalar_t(1) - s) + (v > scalar_t(0) ? scalar_t(0.75) : scalar_t(0));
}

// Rows [b0, b1) forward: out[b, t] = h_t from pre[b, t] and h0[b].
template <typename scalar_t, bool LSTM>
void forward_rows(const scalar_t* pre, const scalar_t* h0, scalar_t* out, int64_t T, int64_t H, int64_t b0,
                  int64_t b1) {
  const int64_t G = LSTM ? 3 : 2;
  for (int64_t b = b0; b < b1; ++b) {
    const scalar_t* prev = h0 + b * H;
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* k = pre + (b * T + t) * G * H;
      scalar_t* h = out + (b * T + t) * H;
      VECTOR_LOOP
      for (int64_t j = 0; j < H; ++j) {
        const scalar_t kc = k[(G - 1) * H + j];
        const scalar_t c = low_part(kc) + high_part(kc);  // the candidate n (g~)
        if (LSTM) {
          const scalar_t a = forget_share(k[j], k[H + j]);
          h[j] = c + a * (prev[j] - c);
        } else {
          const scalar_t z = sigm(k[j]);
          h[j] = prev[j] + z * (c - prev[j]);
        }
      }
      prev = h;
    }
  }
}

// Rows [b0, b1) backward: dpre[b, t] and dh0[b] (the carry a_{t+1} g_{t+1}, in place, finishing
// as a_0 g_0) from dy, pre, h0 and the forward's out.
template <typename scalar_t, bool LSTM>
void backward_rows(const scalar_t* dy, const scalar_t* pre, const scalar_t* h0, const scalar_t* out,
                   scalar_t* dpre, scalar_t* dh0, int64_t T, int64_t H, int64_t b0, int64_t b1) {
  const int64_t G = LSTM ? 3 : 2;
  for (int64_t b = b0; b < b1; ++b) {
    scalar_t* carry = dh0 + b * H;
    for (int64_t j = 0; j < H; ++j) carry[j] = scalar_t(0);
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* k = pre + (b * T + t) * G * H;
      const scalar_t* prev = t > 0 ? out + (b * T + t - 1) * H : h0 + b * H;
      const scalar_t* d = dy + (b * T + t) * H;
      scalar_t* dk = dpre + (b * T + t) * G * H;
      VECTOR_LOOP
      for (int64_t j = 0; j < H; ++j) {
        const scalar_t kc = k[(G - 1) * H + j];
        const scalar_t s = low_part(kc), c = s + high_part(kc);
        const scalar_t g = d[j] + carry[j];
        if (LSTM) {
          const scalar_t a = forget_share(k[j], k[H + j]), keep = scalar_t(1) - a;
          const scalar_t q = g * a * keep * (prev[j] - c);
          dk[j] = q * sigm(-k[j]);            // 1 - f = sigm(-k_f)
          dk[H + j] = -q * sigm(-k[H + j]);   // 1 - i = sigm(-k_i)
          dk[2 * H + j] = g * keep * pos_grad(s, kc);
          carry[j] = a * g;
        } else {
          const scalar_t z = sigm(k[j]), a = scalar_t(1) - z;
          dk[j] = g * z * a * (c - prev[j]);
          dk[H + j] = g * z * pos_grad(s, kc);
          carry[j] = a * g;
        }
      }
    }
  }
}

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), "unrolled native: ", name, " must be a contiguous CPU tensor");
}

void check_shapes(const at::Tensor& pre, const at::Tensor& h0, bool lstm) {
  check_cpu(pre, "pre"), check_cpu(h0, "h0");
  TORCH_CHECK(pre.dim() == 3 && h0.dim() == 2 && h0.size(0) == pre.size(0) &&
                  pre.size(2) == (lstm ? 3 : 2) * h0.size(1) && h0.scalar_type() == pre.scalar_type(),
              "unrolled native: pre must be (B, T, G*H) and h0 (B, H) of one dtype");
}

// pre (B, T, G*H), h0 (B, H) -> out (B, T, H); G = 3 for the minLSTM, 2 for the minGRU.
at::Tensor minimal_forward(const at::Tensor& pre, const at::Tensor& h0, bool lstm) {
  check_shapes(pre, h0, lstm);
  const int64_t B = pre.size(0), T = pre.size(1), H = h0.size(1);
  at::Tensor out = at::empty({B, T, H}, pre.options());
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "minimal_forward", [&] {
    const scalar_t* p = pre.data_ptr<scalar_t>();
    const scalar_t* h = h0.data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    over_rows(B, T * H, row_plan(), [&](int64_t b0, int64_t b1) {
      if (lstm) {
        forward_rows<scalar_t, true>(p, h, y, T, H, b0, b1);
      } else {
        forward_rows<scalar_t, false>(p, h, y, T, H, b0, b1);
      }
    });
  });
  return out;
}

// dy, out (B, T, H), pre (B, T, G*H), h0 (B, H) -> (dpre (B, T, G*H), dh0 (B, H)).
std::tuple<at::Tensor, at::Tensor> minimal_backward(const at::Tensor& dy, const at::Tensor& pre,
                                                     const at::Tensor& h0, const at::Tensor& out, bool lstm) {
  check_shapes(pre, h0, lstm), check_cpu(dy, "dy"), check_cpu(out, "out");
  TORCH_CHECK(dy.sizes() == out.sizes() && out.size(0) == pre.size(0) && out.size(1) == pre.size(1) &&
                  out.size(2) == h0.size(1),
              "unrolled native: dy and out must be (B, T, H)");
  const int64_t B = pre.size(0), T = pre.size(1), H = h0.size(1);
  at::Tensor dpre = at::empty_like(pre), dh0 = at::empty_like(h0);
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "minimal_backward", [&] {
    const scalar_t *d = dy.data_ptr<scalar_t>(), *p = pre.data_ptr<scalar_t>();
    const scalar_t *h = h0.data_ptr<scalar_t>(), *y = out.data_ptr<scalar_t>();
    scalar_t *dp = dpre.data_ptr<scalar_t>(), *dh = dh0.data_ptr<scalar_t>();
    over_rows(B, T * H, row_plan(), [&](int64_t b0, int64_t b1) {
      if (lstm) {
        backward_rows<scalar_t, true>(d, p, h, y, dp, dh, T, H, b0, b1);
      } else {
        backward_rows<scalar_t, false>(d, p, h, y, dp, dh, T, H, b0, b1);
      }
    });
  });
  return {dpre, dh0};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(unrolled_native, m) {
  m.def("minimal_forward(Tensor pre, Tensor h0, bool lstm) -> Tensor", minimal_forward);
  m.def("minimal_backward(Tensor dy, Tensor pre, Tensor h0, Tensor out, bool lstm) -> (Tensor, Tensor)",
        minimal_backward);
}
