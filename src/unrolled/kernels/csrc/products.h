// The row helpers and matrix products of the compiled step loops (included by steps.cpp): the
// argument checks, dy read a row at a time, the bias sums, and each step's product by oneDNN's
// packed weight or MKL's addmm.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "activations.h"

namespace {

// dy, the gradient at the outputs, arrives as autograd gives it: for a batch-first model a
// transposed view. The backward loops read it a step at a time (rows of H, any row stride)
// instead of copying all of it into the time-major order first (a strided copy measured about
// 5% of a training step of the RNN).
void check_rows(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 3 && t.stride(2) == 1, "unrolled native: ", name,
              " must be a CPU tensor (T, B, H) with contiguous rows");
}

// dst (B, H) contiguous = src (B, H) with any row stride: one memcpy a row (the generic strided
// copy measured several times slower at these sizes).
void copy_rows(at::Tensor& dst, const at::Tensor& src) {
  const int64_t B = src.size(0), H = src.size(1), stride = src.stride(0);
  const int64_t bytes = H * static_cast<int64_t>(src.element_size());
  char* d = static_cast<char*>(dst.data_ptr());
  const char* s = static_cast<const char*>(src.data_ptr());
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(d + b * bytes, s + b * stride * static_cast<int64_t>(src.element_size()), bytes);
  }
}

// dst (B, H) contiguous += src (B, H) with any row stride.
template <typename scalar_t>
void add_rows(at::Tensor& dst, const at::Tensor& src) {
  const int64_t B = src.size(0), H = src.size(1), stride = src.stride(0);
  scalar_t* d = dst.data_ptr<scalar_t>();
  const scalar_t* s = src.data_ptr<scalar_t>();
  for (int64_t b = 0; b < B; ++b) {
    VECTOR_LOOP
    for (int64_t j = 0; j < H; ++j) d[b * H + j] += s[b * stride + j];
  }
}

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), "unrolled native: ", name,
              " must be a contiguous CPU tensor");
}

bool given(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// The bias gradients: the sum over every step and row of the gate gradients, added up a step at
// a time while that step's gradients are in cache (a sum over the whole (T, B, G*H) tensor after
// the loop is a pass over memory). Accumulated in double; `finish` writes the result into `db`.
struct BiasSum {
  std::vector<double> acc;
  explicit BiasSum(const std::optional<at::Tensor>& db) : acc(given(db) ? db->numel() : 0, 0.0) {}
  template <typename scalar_t>
  void add(const scalar_t* d, int64_t B) {  // rows d[b * N .. b * N + N), N = acc.size()
    const int64_t N = static_cast<int64_t>(acc.size());
    double* a = acc.data();
    for (int64_t b = 0; b < B; ++b) {
      VECTOR_LOOP
      for (int64_t j = 0; j < N; ++j) a[j] += d[b * N + j];
    }
  }
  void finish(const std::optional<at::Tensor>& db) {
    if (!given(db)) return;
    at::Tensor sums = at::from_blob(acc.data(), {static_cast<int64_t>(acc.size())}, at::kDouble);
    db->copy_(sums);
  }
};

// x W^T (+ bias) with oneDNN's packed W.
at::Tensor onednn_product(const at::Tensor& x, const at::Tensor& packed, const std::optional<at::Tensor>& bias) {
  static auto op = c10::Dispatcher::singleton()
      .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                        c10::string_view, c10::List<std::optional<at::Scalar>>,
                        std::optional<c10::string_view>)>();
  return op.call(x, packed, bias, "none", c10::List<std::optional<at::Scalar>>(), std::nullopt);
}

// A forward step's product onto the step's slice of the projection buffer, `a_t` (B, N):
// with oneDNN, x W^T alone (its plain product measured about 8% faster than the one that adds
// `other`), and the cell adds a_t as it reads it -> (the product, false); with MKL, in place
// onto a_t -> (a_t, true: already added).
std::pair<at::Tensor, bool> forward_product(const at::Tensor& x, at::Tensor& a_t, const at::Tensor& w,
                                            const std::optional<at::Tensor>& packed) {
  if (given(packed)) return {onednn_product(x, *packed, std::nullopt), false};
  return {a_t.addmm_(x, w.t()), true};
}

// A backward step's product, out += x W (B, H) with W^T given as w_t: oneDNN's plain product
// added after (faster than its product that adds; `packed_t` is W^T prepacked, kernels.Product
// decides when), or MKL's addmm in place.
template <typename scalar_t>
void add_product(at::Tensor& out, const at::Tensor& x, const at::Tensor& w_t,
                 const std::optional<at::Tensor>& packed_t) {
  if (given(packed_t)) {
    add_rows<scalar_t>(out, onednn_product(x, *packed_t, std::nullopt));
  } else {
    out.addmm_(x, w_t.t());
  }
}

// The backward's dh = dy_t + dP_{t+1} W_hh (B, H): with oneDNN, dy_t added onto its product
// (one pass); with MKL, dy_t copied into `out` and the product added in place.
template <typename scalar_t>
at::Tensor backward_product(const at::Tensor& dP_next, const at::Tensor& dy_t, const at::Tensor& w_t,
                            const std::optional<at::Tensor>& packed_t, at::Tensor& out) {
  if (given(packed_t)) {
    at::Tensor q = onednn_product(dP_next, *packed_t, std::nullopt);
    add_rows<scalar_t>(q, dy_t);
    return q;
  }
  copy_rows(out, dy_t);
  add_product<scalar_t>(out, dP_next, w_t, packed_t);
  return out;
}

}  // namespace
