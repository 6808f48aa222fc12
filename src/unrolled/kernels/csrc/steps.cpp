// The per-step loops of unrolled's sequence kernels, compiled on first use (kernels/native.py).
//
// Python (kernels/sequence.py) does the large matrix products: the input projection of every
// step before the loop and the weight gradients of every step after it. What is left is the
// loop itself: at each step one recurrent product h_{t-1} W_hh^T (or dP_{t+1} W_hh backward) and
// the step's element-wise math. Written in Python that math is 5 to 15 tensor ops a step, each
// a pass over memory plus an interpreter round trip; here it is one pass over the step's gates,
// with sigmoid and tanh from an exponential the compiler vectorises.
//
// Shapes are time-major and contiguous (dy: rows of any stride): a (T, B, G*H), states (B, H), gate order as torch.nn
// (RNN: 1, LSTM: i f g o, GRU: r z n). Every function is checked against the readable Python
// loop in float64 and float32 (tests/test_kernels.py). float64 uses the C library's exp and tanh;
// float32 uses `fexp` (activations.h), within 2e-7 relative of exp (a few float32 roundings).
// The element-wise loops of a step split their batch rows over ATen's persistent thread pool
// (`over_rows`, activations.h), serial below a grain; the products use torch's own threads.
// products.h has the argument checks, the row helpers for dy, the bias sums and each step's
// matrix product (oneDNN's packed weight or MKL's addmm).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <tuple>

#include "activations.h"
#include "products.h"

namespace {

// ---- vanilla RNN -----------------------------------------------------------------------------
// y = tanh(x (+ z when ADD)), or relu, over B rows of H; y may be x or z.
template <typename scalar_t, bool ADD>
void rnn_activation(const scalar_t* x, const scalar_t* z, scalar_t* y, int64_t B, int64_t H, bool relu,
                    const RowPlan& plan) {
  over_rows(B, H, plan, [&](int64_t b0, int64_t b1) {
    const int64_t k0 = b0 * H, k1 = b1 * H;
    if (relu) {
      VECTOR_LOOP
      for (int64_t k = k0; k < k1; ++k) {
        const scalar_t v = ADD ? x[k] + z[k] : x[k];
        y[k] = v > 0 ? v : scalar_t(0);
      }
    } else {
      VECTOR_LOOP
      for (int64_t k = k0; k < k1; ++k) y[k] = tanh_(ADD ? x[k] + z[k] : x[k]);
    }
  });
}

// hs = a: step t adds h_{t-1} W_hh^T onto a[t] and applies tanh (or relu) there, in place.
at::Tensor rnn_forward(at::Tensor a, const at::Tensor& h0, const at::Tensor& w_hh, bool relu,
                       const std::optional<at::Tensor>& packed) {
  check(a, "a");
  const int64_t T = a.size(0), B = a.size(1), H = a.size(2);
  const RowPlan plan = row_plan();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rnn_forward", [&] {
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor p = a.select(0, t);
      const auto [q, added] = forward_product(t == 0 ? h0 : a.select(0, t - 1), p, w_hh, packed);
      scalar_t* y = p.data_ptr<scalar_t>();  // a_t, then h_t
      const scalar_t* x = q.data_ptr<scalar_t>();  // x W^T (+ a_t when added)
      if (added) {
        rnn_activation<scalar_t, false>(x, nullptr, y, B, H, relu, plan);
      } else {
        rnn_activation<scalar_t, true>(x, y, y, B, H, relu, plan);
      }
    }
  });
  return a;
}

// dP_t = (dy_t + dP_{t+1} W_hh) * tanh'(.), into dP (T, B, H).
// packed_t: W_hh^T prepacked (the backward's product is dP_{t+1} W_hh).
// db, when given: the bias gradient sum dP (H), written.
void rnn_backward(const at::Tensor& dy, at::Tensor dP, const at::Tensor& hs, const at::Tensor& w_hh, bool relu,
                  const std::optional<at::Tensor>& packed_t, const std::optional<at::Tensor>& db) {
  check_rows(dy, "dy"), check(dP, "dP"), check(hs, "hs");
  const int64_t T = dP.size(0), B = dP.size(1), H = dP.size(2), n = B * H;
  const RowPlan plan = row_plan();
  BiasSum bias(db);
  const at::Tensor w_t = w_hh.t();
  AT_DISPATCH_FLOATING_TYPES(dP.scalar_type(), "rnn_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      at::Tensor p = dP.select(0, t);
      const at::Tensor q = t < T - 1 ? backward_product<scalar_t>(dP.select(0, t + 1), dy.select(0, t), w_t, packed_t, p)
                                     : (copy_rows(p, dy.select(0, t)), p);
      const scalar_t* x = q.data_ptr<scalar_t>();
      scalar_t* d = p.data_ptr<scalar_t>();
      const scalar_t* h = hs.data_ptr<scalar_t>() + t * n;
      over_rows(B, H, plan, [&](int64_t b0, int64_t b1) {
        const int64_t k0 = b0 * H, k1 = b1 * H;
        if (relu) {
          VECTOR_LOOP
          for (int64_t k = k0; k < k1; ++k) d[k] = h[k] > 0 ? x[k] : scalar_t(0);
        } else {
          VECTOR_LOOP
          for (int64_t k = k0; k < k1; ++k) d[k] = x[k] * (scalar_t(1) - h[k] * h[k]);
        }
      });
      if (given(db)) bias.add(d, dP.size(1));
    }
  });
  bias.finish(db);
}

// ---- LSTM ------------------------------------------------------------------------------------
// One step's element-wise math over the pre-activations p (B, 4H) (plus `add` (B, 4H) when
// ADD), into the gates i f g o (B, 4H; may be p or add itself): c = f c_prev + i g, u = tanh(c),
// h = o u.
template <typename scalar_t, bool ADD = false>
void lstm_cell(const scalar_t* p, const scalar_t* add, scalar_t* gates, const scalar_t* c_prev, scalar_t* c,
               scalar_t* u, scalar_t* h, int64_t B, int64_t H, const RowPlan& plan) {
  over_rows(B, H, plan, [&](int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const scalar_t* pi = p + b * 4 * H;
    const scalar_t* ai = ADD ? add + b * 4 * H : pi;
    scalar_t* gi = gates + b * 4 * H;
    const int64_t r = b * H;
    VECTOR_LOOP
    for (int64_t j = 0; j < H; ++j) {
      const scalar_t zi = ADD ? pi[j] + ai[j] : pi[j], zf = ADD ? pi[H + j] + ai[H + j] : pi[H + j];
      const scalar_t zg = ADD ? pi[2 * H + j] + ai[2 * H + j] : pi[2 * H + j];
      const scalar_t zo = ADD ? pi[3 * H + j] + ai[3 * H + j] : pi[3 * H + j];
      const scalar_t i = sigm(zi), f = sigm(zf), g = tanh_(zg), o = sigm(zo);
      const scalar_t cj = f * c_prev[r + j] + i * g;
      const scalar_t uj = tanh_(cj);
      gi[j] = i, gi[H + j] = f, gi[2 * H + j] = g, gi[3 * H + j] = o;
      c[r + j] = cj;
      if (u) u[r + j] = uj;
      h[r + j] = o * uj;
    }
  }
  });
}

// -> (hs (T+1, B, H) with hs[0] = h0, cs (T+1, B, H), us = tanh(cs[1:]) (T, B, H), gates (T, B, 4H)).
// a is the gates' buffer: step t adds its recurrent product onto a[t] and leaves the gate values
// there (an addmm into another buffer would copy a[t] first).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_forward(
    at::Tensor a, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh,
    const std::optional<at::Tensor>& packed) {
  check(a, "a");
  const int64_t T = a.size(0), B = a.size(1), H = w_hh.size(1);
  const RowPlan plan = row_plan();
  at::Tensor hs = at::empty({T + 1, B, H}, a.options()), cs = at::empty({T + 1, B, H}, a.options());
  at::Tensor us = at::empty({T, B, H}, a.options()), gates = a;
  hs.select(0, 0).copy_(h0), cs.select(0, 0).copy_(c0);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "lstm_forward", [&] {
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor g = gates.select(0, t);
      const auto [p, added] = forward_product(hs.select(0, t), g, w_hh, packed);
      scalar_t* gp = g.data_ptr<scalar_t>();
      scalar_t* c_prev = cs.data_ptr<scalar_t>() + t * B * H;
      scalar_t* c = c_prev + B * H;
      scalar_t* u = us.data_ptr<scalar_t>() + t * B * H;
      scalar_t* h = hs.data_ptr<scalar_t>() + (t + 1) * B * H;
      if (added) {
        lstm_cell<scalar_t, false>(gp, nullptr, gp, c_prev, c, u, h, B, H, plan);
      } else {
        lstm_cell<scalar_t, true>(p.data_ptr<scalar_t>(), gp, gp, c_prev, c, u, h, B, H, plan);
      }
    }
  });
  return {hs, cs, us, gates};
}

// dh_t = dy_t + dP_{t+1} W_hh,  dc_t = dc_{t+1} f_{t+1} + dh_t o (1 - u^2),
// dP_t = [dc g i(1-i), dc c_{t-1} f(1-f), dc i (1-g^2), dh u o(1-o)].
// Into dP (T, B, 4H); dc (B, H) comes in as dc_T and leaves as the cell gradient at step 0
// (the caller finishes dc_0 = dc f_0).
void lstm_backward(const at::Tensor& dy, at::Tensor dc, const at::Tensor& w_hh, const at::Tensor& cs,
                   const at::Tensor& us, const at::Tensor& gates, const std::optional<at::Tensor>& packed_t,
                   at::Tensor dP, const std::optional<at::Tensor>& db) {
  BiasSum bias(db);
  check_rows(dy, "dy"), check(dc, "dc"), check(cs, "cs"), check(us, "us"), check(gates, "gates"), check(dP, "dP");
  const int64_t T = dy.size(0), B = dy.size(1), H = dy.size(2);
  const RowPlan plan = row_plan();
  at::Tensor dh = at::empty({B, H}, dy.options());
  const at::Tensor w_t = w_hh.t();
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "lstm_backward", [&] {
    scalar_t* dcp = dc.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* dht;
      at::Tensor held;  // keeps a product's result alive while the loop reads it
      if (t == T - 1) {
        copy_rows(dh, dy.select(0, t));
        dht = dh.data_ptr<scalar_t>();
      } else {
        held = backward_product<scalar_t>(dP.select(0, t + 1), dy.select(0, t), w_t, packed_t, dh);
        dht = held.data_ptr<scalar_t>();
      }
      const scalar_t* g_t = gates.data_ptr<scalar_t>() + t * B * 4 * H;
      const scalar_t* g_next = gates.data_ptr<scalar_t>() + (t + 1) * B * 4 * H;  // read only if t < T-1
      const scalar_t* c_prev = cs.data_ptr<scalar_t>() + t * B * H;
      const scalar_t* u = us.data_ptr<scalar_t>() + t * B * H;
      scalar_t* d = dP.data_ptr<scalar_t>() + t * B * 4 * H;
      const bool carry = t < T - 1;
      over_rows(B, H, plan, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r = b * H, q = b * 4 * H;
        VECTOR_LOOP
        for (int64_t j = 0; j < H; ++j) {
          const scalar_t i = g_t[q + j], f = g_t[q + H + j], g = g_t[q + 2 * H + j], o = g_t[q + 3 * H + j];
          const scalar_t uj = u[r + j], dhj = dht[r + j];
          scalar_t dcj = carry ? dcp[r + j] * g_next[q + H + j] : dcp[r + j];
          dcj += dhj * o * (scalar_t(1) - uj * uj);
          dcp[r + j] = dcj;
          d[q + j] = dcj * g * i * (scalar_t(1) - i);
          d[q + H + j] = dcj * c_prev[r + j] * f * (scalar_t(1) - f);
          d[q + 2 * H + j] = dcj * i * (scalar_t(1) - g * g);
          d[q + 3 * H + j] = dhj * uj * o * (scalar_t(1) - o);
        }
      }
      });
      if (given(db)) bias.add(d, B);
    }
  });
  bias.finish(db);
}

// ---- GRU -------------------------------------------------------------------------------------
// One step: x (B, 3H) the input part (with b_ih), rec (B, 3H) the recurrent part h W_hh^T + b_hh;
// r, z = sigmoid(x + rec), n = tanh(x_n + r rec_n), h = n + z (h_prev - n). The gates r z n go
// to `gates` (B, 3H), rec_n to `recn` (B, H) when given.
// bias (3H): added to rec (b_hh when the product did not add it, else zeros). gates may be x.
template <typename scalar_t>
void gru_cell(const scalar_t* x, const scalar_t* rec, const scalar_t* bias, const scalar_t* h_prev,
              scalar_t* gates, scalar_t* recn, scalar_t* h, int64_t B, int64_t H, const RowPlan& plan) {
  over_rows(B, H, plan, [&](int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t q = b * 3 * H, s = b * H;
    VECTOR_LOOP
    for (int64_t j = 0; j < H; ++j) {
      const scalar_t r = sigm(x[q + j] + rec[q + j] + bias[j]);
      const scalar_t z = sigm(x[q + H + j] + rec[q + H + j] + bias[H + j]);
      const scalar_t rn = rec[q + 2 * H + j] + bias[2 * H + j];
      const scalar_t n = tanh_(x[q + 2 * H + j] + r * rn);
      gates[q + j] = r, gates[q + H + j] = z, gates[q + 2 * H + j] = n;
      if (recn) recn[s + j] = rn;
      h[s + j] = n + z * (h_prev[s + j] - n);
    }
  }
  });
}

// -> (hs (T+1, B, H) with hs[0] = h0, rec (T, B, H) the candidate's recurrent product, gates (T, B, 3H)).
// a (the input part) becomes the gates' buffer, in place.
std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_forward(
    at::Tensor a, const at::Tensor& h0, const at::Tensor& w_hh, const std::optional<at::Tensor>& b_hh,
    const std::optional<at::Tensor>& packed) {
  check(a, "a");
  const int64_t T = a.size(0), B = a.size(1), H = w_hh.size(1);
  const RowPlan plan = row_plan();
  at::Tensor hs = at::empty({T + 1, B, H}, a.options()), rec = at::empty({T, B, H}, a.options());
  at::Tensor R = at::empty({B, 3 * H}, a.options());
  const at::Tensor zeros = at::zeros({3 * H}, a.options());
  const at::Tensor bias = given(b_hh) ? b_hh->contiguous() : zeros;  // (3H)
  // oneDNN adds b_hh in its product; MKL's product is a plain mm and the cell adds b_hh
  const at::Tensor w_t = w_hh.t();
  hs.select(0, 0).copy_(h0);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "gru_forward", [&] {
    const scalar_t* cell_bias = (given(packed) ? zeros : bias).data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const at::Tensor Rt = given(packed) ? onednn_product(hs.select(0, t), *packed, b_hh)
                                          : at::mm_out(R, hs.select(0, t), w_t);
      scalar_t* at_ = a.data_ptr<scalar_t>() + t * B * 3 * H;
      gru_cell<scalar_t>(at_, Rt.data_ptr<scalar_t>(), cell_bias, hs.data_ptr<scalar_t>() + t * B * H, at_,
                         rec.data_ptr<scalar_t>() + t * B * H, hs.data_ptr<scalar_t>() + (t + 1) * B * H, B, H,
                         plan);
    }
  });
  return {hs, rec, a};
}

// With k = (1-z)(1-n^2):  dR_t = dh_t [k rec_n r(1-r), (h_{t-1}-n) z(1-z), k r],
// dA_t = dR_t except dA_t[n] = dh_t k,  dh_{t-1} = dy_{t-1} + z dh_t + dR_t W_hh.
// Into dA, dR (T, B, 3H); dh (B, H) comes in as dy_{T-1} and leaves as the total gradient at
// step 0's output (the caller finishes dh0 = z_0 dh + dR_0 W_hh).
// db_ih, db_hh, when given: sum dA and sum dR (3H), written.
void gru_backward(const at::Tensor& dy, const at::Tensor& w_hh, const at::Tensor& hs, const at::Tensor& rec,
                  const at::Tensor& gates, const std::optional<at::Tensor>& packed_t, at::Tensor dA,
                  at::Tensor dR, at::Tensor dh, const std::optional<at::Tensor>& db_ih,
                  const std::optional<at::Tensor>& db_hh) {
  BiasSum bias_ih(db_ih), bias_hh(db_hh);
  check_rows(dy, "dy"), check(hs, "hs"), check(rec, "rec"), check(gates, "gates"), check(dA, "dA"), check(dR, "dR");
  check(dh, "dh");
  const int64_t T = dy.size(0), B = dy.size(1), H = dy.size(2);
  const RowPlan plan = row_plan();
  const at::Tensor w_t = w_hh.t();
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "gru_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* g = gates.data_ptr<scalar_t>() + t * B * 3 * H;
      const scalar_t* rn = rec.data_ptr<scalar_t>() + t * B * H;
      const scalar_t* hp = hs.data_ptr<scalar_t>() + t * B * H;
      const scalar_t* dyp = t > 0 ? dy.data_ptr<scalar_t>() + (t - 1) * dy.stride(0) : nullptr;
      const int64_t dy_row = dy.stride(1);
      scalar_t* dhp = dh.data_ptr<scalar_t>();  // dh_t, then dy_{t-1} + z dh_t, in place
      scalar_t* dr = dR.data_ptr<scalar_t>() + t * B * 3 * H;
      scalar_t* da = dA.data_ptr<scalar_t>() + t * B * 3 * H;
      over_rows(B, H, plan, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t q = b * 3 * H, s = b * H;
        VECTOR_LOOP
        for (int64_t j = 0; j < H; ++j) {
          const scalar_t r = g[q + j], z = g[q + H + j], n = g[q + 2 * H + j], d = dhp[s + j];
          const scalar_t k = (scalar_t(1) - z) * (scalar_t(1) - n * n);
          const scalar_t dr_ = d * k * rn[s + j] * r * (scalar_t(1) - r);
          const scalar_t dz_ = d * (hp[s + j] - n) * z * (scalar_t(1) - z);
          dr[q + j] = dr_, dr[q + H + j] = dz_, dr[q + 2 * H + j] = d * k * r;
          da[q + j] = dr_, da[q + H + j] = dz_, da[q + 2 * H + j] = d * k;
          if (dyp) dhp[s + j] = dyp[b * dy_row + j] + z * d;
        }
      }
      });
      if (given(db_ih)) bias_ih.add(da, B);
      if (given(db_hh)) bias_hh.add(dr, B);
      if (t > 0) add_product<scalar_t>(dh, dR.select(0, t), w_t, packed_t);  // dh_{t-1}
    }
  });
  bias_ih.finish(db_ih), bias_hh.finish(db_hh);
}

// ---- one step, for generation ----------------------------------------------------------------
// pre (B, 4H) the full pre-activations (overwritten); c (B, H) updated in place; h (B, H) written.
void lstm_step(at::Tensor pre, at::Tensor c, at::Tensor h) {
  check(pre, "pre"), check(c, "c"), check(h, "h");
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "lstm_step", [&] {
    scalar_t* cp = c.data_ptr<scalar_t>();
    scalar_t* p = pre.data_ptr<scalar_t>();
    lstm_cell<scalar_t>(p, nullptr, p, cp, cp, nullptr, h.data_ptr<scalar_t>(), c.size(0), c.size(1), row_plan());
  });
}

// x (B, 3H) the input part, rec (B, 3H) the recurrent part, h (B, H) updated in place.
void gru_step(const at::Tensor& x, const at::Tensor& rec, at::Tensor h, at::Tensor gates) {
  check(x, "x"), check(rec, "rec"), check(h, "h"), check(gates, "gates");
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_step", [&] {
    scalar_t* hp = h.data_ptr<scalar_t>();
    const at::Tensor zeros = at::zeros({x.size(1)}, x.options());
    gru_cell<scalar_t>(x.data_ptr<scalar_t>(), rec.data_ptr<scalar_t>(), zeros.data_ptr<scalar_t>(), hp,
                       gates.data_ptr<scalar_t>(), nullptr, hp, h.size(0), h.size(1), row_plan());
  });
}

// h = tanh(pre) (or relu), pre (B, H).
void rnn_step(const at::Tensor& pre, at::Tensor h, bool relu) {
  check(pre, "pre"), check(h, "h");
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "rnn_step", [&] {
    const scalar_t* x = pre.data_ptr<scalar_t>();
    scalar_t* y = h.data_ptr<scalar_t>();
    const int64_t n = h.numel();
    if (relu) {
      VECTOR_LOOP
      for (int64_t k = 0; k < n; ++k) y[k] = x[k] > 0 ? x[k] : scalar_t(0);
    } else {
      VECTOR_LOOP
      for (int64_t k = 0; k < n; ++k) y[k] = tanh_(x[k]);
    }
  });
}

}  // namespace

TORCH_LIBRARY(unrolled_native, m) {
  m.def("rnn_forward(Tensor(a!) a, Tensor h0, Tensor w_hh, bool relu, Tensor? packed) -> Tensor(a!)", rnn_forward);
  m.def("rnn_backward(Tensor dy, Tensor(a!) dP, Tensor hs, Tensor w_hh, bool relu, Tensor? packed_t, "
        "Tensor(b!)? db) -> ()", rnn_backward);
  m.def("lstm_forward(Tensor(a!) a, Tensor h0, Tensor c0, Tensor w_hh, Tensor? packed) -> "
        "(Tensor, Tensor, Tensor, Tensor(a!))", lstm_forward);
  m.def("lstm_backward(Tensor dy, Tensor(a!) dc, Tensor w_hh, Tensor cs, Tensor us, Tensor gates, Tensor? packed_t, "
        "Tensor(b!) dP, Tensor(c!)? db) -> ()", lstm_backward);
  m.def("gru_forward(Tensor(a!) a, Tensor h0, Tensor w_hh, Tensor? b_hh, Tensor? packed) -> "
        "(Tensor, Tensor, Tensor(a!))", gru_forward);
  m.def("gru_backward(Tensor dy, Tensor w_hh, Tensor hs, Tensor rec, Tensor gates, Tensor? packed_t, "
        "Tensor(a!) dA, Tensor(b!) dR, Tensor(c!) dh, Tensor(d!)? db_ih, Tensor(e!)? db_hh) -> ()", gru_backward);
  m.def("lstm_step(Tensor(a!) pre, Tensor(b!) c, Tensor(c!) h) -> ()", lstm_step);
  m.def("gru_step(Tensor x, Tensor rec, Tensor(a!) h, Tensor(b!) gates) -> ()", gru_step);
  m.def("rnn_step(Tensor pre, Tensor(a!) h, bool relu) -> ()", rnn_step);
}
