"""Our own sequence kernels: one layer, one direction, a whole sequence per call.

Shapes are time-major inside the kernels: x (T, B, D), outputs (T, B, H), states (B, H);
G is the gate count (RNN 1, LSTM 4, GRU 3). `run_layers` is what `path="kernel"` calls.

What makes them fast (the torch-rnn recipe, in PyTorch ops):

1. the input projection of every step is ONE matrix product, before the loop:
       A = X W_ih^T + b          X (T*B, D) -> A (T*B, G*H)
2. the per-step work is only what cannot wait: the recurrent product h_{t-1} W_hh^T added onto
   A_t and the step's element-wise math, in place in A's buffer;
3. each backward step is the product dP_{t+1} W_hh and the element-wise factors of that step,
   computed while its gates are in cache;
4. the weight gradients of all steps are ONE matrix product each, after the backward loop:
       dW_hh = dG^T H_prev,  dW_ih = dG^T X,  db = sum of dG,  dX = dG W_ih
   with dG (T*B, G*H) the gradients of every step's gate pre-activations.

The loops of 2 and 3 run compiled (`unrolled.native`, src/unrolled/csrc/steps.cpp: one pass over
a step's gates) where the library builds, else as the Python loops below (`_forward_loop`,
`_backward_loop`: the same arithmetic in tensor ops, tanh as 2 sigmoid(2x) - 1, see `tanh_`).
Each kernel is a `torch.autograd.Function` with a hand-written backward; tests/test_kernels.py
checks each, both ways, against the readable path (float64, forward and every gradient) and
with gradcheck. docs/performance.md has the measurements behind every choice here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


_CONSTANTS: dict = {}


def _const(value: float, like: Tensor) -> Tensor:
    """A 0-dim tensor holding value, cached per dtype and device: an op with a Python number
    wraps and converts it on every call, which measured slower than the op itself at step sizes."""
    key = (value, like.dtype, like.device)
    c = _CONSTANTS.get(key)
    if c is None:
        c = _CONSTANTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return c


def tanh_(x: Tensor) -> Tensor:
    """tanh in place as 2 sigmoid(2x) - 1, the same function (exactly, up to rounding).

    Why: on the CPU build we measured, torch.tanh on float32 is 6 to 30 times slower than
    torch.sigmoid (`unrolled bench` reports both as "elementwise"), and tanh runs at every
    step of every cell. Four cheap in-place ops beat one slow one; absolute error stays at float
    rounding (tests/test_kernels.py compares in float64 at 1e-12).
    """
    two, one = _const(2.0, x), _const(1.0, x)
    return x.mul_(two).sigmoid_().mul_(two).sub_(one)


def tanh_into(x: Tensor, out: Tensor) -> Tensor:
    """out = tanh(x), as `tanh_`, without touching x."""
    two, one = _const(2.0, x), _const(1.0, x)
    return torch.mul(x, two, out=out).sigmoid_().mul_(two).sub_(one)


def _has_onednn() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_ONEDNN = _has_onednn()


class Product:
    """y = x W^T + bias (+ other), for a weight W (N, K) that many products reuse.

    float32 on a CPU: W is packed once for oneDNN's GEMM when it pays, else addmm (MKL's sgemm),
    as measured on an AMD EPYC (the machine of docs/performance.md), packing included:
    - products over a whole sequence (`rows` >= PACK_ROWS: the input projection, dX) when W has
      2^16 elements or more, or its rows are 128 wide or more (K, the sum's length): there
      oneDNN with a fused bias ran 5-60% faster than F.linear (which first copies the bias into
      every row of the output); narrower, smaller products (an input of 64 into 128 to 512)
      ran as fast or faster on F.linear, and packing costs about 0.1 ms;
    - one step's product (`rows` = the batch) when W has PACK_MIN elements or more, where it
      measured 10-40% faster for the LSTM and GRU at H >= 256, and slower for smaller W (its
      per-call cost).
    float64, CUDA and builds without oneDNN use addmm.
    """

    PACK_MIN = 1 << 17  # elements of W: 3H x H at H = 256 packs, 4H x H at H = 128 does not
    PACK_ROWS = 1024  # rows of x from which a sequence-sized W packs

    def __init__(self, w: Tensor, rows: int):
        self.w = w.detach()
        self.packed = None
        if _ONEDNN and w.device.type == "cpu" and w.dtype == torch.float32 and (
                w.numel() >= self.PACK_MIN
                or rows >= self.PACK_ROWS and (w.numel() >= 1 << 16 or w.shape[1] >= 128)):
            self.packed = torch.ops.mkldnn._reorder_linear_weight(self.w.contiguous(), rows)

    def __call__(self, x: Tensor, other: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        if self.packed is not None:
            if other is None:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "none", [], "")
            return torch.ops.mkldnn._linear_pointwise.binary(x, other, self.packed, bias, "add")
        if other is None:
            return F.linear(x, self.w, bias)
        return torch.addmm(other if bias is None else other + bias, x, self.w.t())


def _input_projection(x: Tensor, w_ih: Tensor, b: Tensor | None) -> Tensor:
    """A = X W_ih^T + b for every step at once: x (T, B, D) -> (T, B, G*H)."""
    T, B, D = x.shape
    x2 = x.reshape(T * B, D)  # (T*B, D)
    a = Product(w_ih, T * B)(x2, bias=b)  # (T*B, G*H)
    return a.view(T, B, -1)


def _native(x: Tensor):
    """The compiled step loops (`unrolled.native`) for a float CPU tensor, else None (the Python
    loops run: other dtypes, CUDA, UNROLLED_NATIVE=0, or no C++ compiler)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    from unrolled import native
    return native.ops()


def _both_biases(b_ih, b_hh):
    if b_ih is None:
        return None
    return b_ih + b_hh


def _weight_grads(ctx, need, dG: Tensor, dG_hh: Tensor, x: Tensor, h_prev: Tensor, sums=None):
    """The gradients of all steps at once: one matrix product per weight.

    need: which of (dx, dW_ih, dW_hh, db_ih, db_hh) are wanted. dG (T, B, G*H) is the gradient
    at the input projection's pre-activations, dG_hh (T, B, G*H) the same for the recurrent
    product (the same tensor except in the GRU's candidate), x (T, B, D) the layer's input and
    h_prev (T, B, H) the state each step read, or (h0, the outputs but the last). sums: the
    bias gradients (sum dG, sum dG_hh) when the compiled backward loop added them up already.
    """
    T, B, GH = dG.shape
    dG2 = dG.reshape(T * B, GH)  # (T*B, G*H)
    dGh2 = dG_hh.reshape(T * B, GH)  # (T*B, G*H)
    dx = Product(ctx.w_ih.t(), T * B)(dG2).view(T, B, -1) if need[0] else None  # (T, B, D)
    dw_ih = dG2.t() @ x.reshape(T * B, -1) if need[1] else None  # (G*H, D)
    dw_hh = None
    if need[2] and isinstance(h_prev, tuple):  # (h0 (B, H), h_1 .. h_{T-1} (T-1, B, H)), not joined
        h0, rest = h_prev
        dw_hh = dG_hh[0].t() @ h0  # (G*H, H)
        if T > 1:
            dw_hh.addmm_(dG_hh[1:].reshape((T - 1) * B, GH).t(), rest.reshape((T - 1) * B, -1))
    elif need[2]:
        dw_hh = dGh2.t() @ h_prev.reshape(T * B, -1)  # (G*H, H)
    if sums is not None and ctx.has_bias:
        # a copy, never the same tensor: two .grad sharing storage would be clipped twice
        db_ih = sums[0] if need[3] else None
        db_hh = (sums[1].clone() if sums[1] is sums[0] else sums[1]) if need[4] else None
        return dx, dw_ih, dw_hh, db_ih, db_hh
    db_ih = dG2.sum(0) if ctx.has_bias and need[3] else None  # (G*H,)
    db_hh = None
    if ctx.has_bias and need[4]:
        db_hh = db_ih.clone() if (dG_hh is dG and db_ih is not None) else dGh2.sum(0)  # (G*H,)
    return dx, dw_ih, dw_hh, db_ih, db_hh


class RNNTanhSequence(torch.autograd.Function):
    """h_t = tanh(A_t + h_{t-1} W_hh^T),  A = X W_ih^T + b_ih + b_hh   (relu for "relu").

    forward(x (T, B, D), h0 (B, H), w_ih, w_hh, b_ih, b_hh, relu) -> hs (T, B, H).
    Backward: with k_t = tanh'(.) = 1 - h_t^2 (or [h_t > 0]),
        dP_t = (dy_t + dP_{t+1} W_hh) * k_t,   dh_0 = dP_1 W_hh.
    Both loops run in place: step t adds its recurrent product onto A_t and applies tanh there,
    so the projection buffer becomes the outputs, and the backward accumulates onto a copy of dy,
    with no per-step copies. The loops run compiled (`unrolled.native`) where they can, else
    in Python (`_forward_loop`, `_backward_loop`): the same arithmetic.
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, relu=False):
        hs = _input_projection(x, w_ih, _both_biases(b_ih, b_hh))  # (T, B, H): A, then h
        native = _native(x)
        if native is not None:
            hs = native.rnn_forward(hs, h0, w_hh, relu, Product(w_hh, hs.shape[1]).packed)
        else:
            RNNTanhSequence._forward_loop(hs, h0, w_hh, relu)
        ctx.relu, ctx.has_bias = relu, b_ih is not None
        ctx.w_ih, ctx.w_hh = w_ih, w_hh
        ctx.save_for_backward(x, h0, hs)
        return hs

    @staticmethod
    def _forward_loop(hs, h0, w_hh, relu):
        w_hh_t = w_hh.t()
        act = torch.relu_ if relu else tanh_
        h = h0
        for t in range(hs.shape[0]):
            h = act(hs[t].addmm_(h, w_hh_t))  # (B, H)

    @staticmethod
    def backward(ctx, dy):
        x, h0, hs = ctx.saved_tensors
        T, B, H = dy.shape
        w_hh = ctx.w_hh
        dP = torch.empty(T, B, H, dtype=dy.dtype, device=dy.device)  # (T, B, H)
        native = _native(dy)
        need = ctx.needs_input_grad
        sums = None
        if native is not None and dy.stride(2) == 1:  # read dy a step at a time, as it comes
            db = dy.new_empty(H) if ctx.has_bias else None
            native.rnn_backward(dy, dP, hs, w_hh, ctx.relu, Product(w_hh.t(), B).packed, db)
            sums = (db, db)
        else:
            RNNTanhSequence._backward_loop(dP.copy_(dy), hs, w_hh, ctx.relu)
        dh0 = dP[0] @ w_hh if need[1] else None  # (B, H)
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(ctx, need[:1] + need[2:6], dP, dP, x, (h0, hs[:-1]), sums)
        return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None

    @staticmethod
    def _backward_loop(dP, hs, w_hh, relu):
        """dP (T, B, H) holds dy; in place, it becomes dP."""
        T, B, H = dP.shape
        tmp = dP.new_empty(B, H)
        # The factors are computed step by step while h_t is in cache: a pass over the whole
        # sequence per factor measured slower on a busy machine than these small ops.
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                dP[t].addmm_(dP[t + 1], w_hh)  # (B, H)
            if relu:
                dP[t].masked_fill_(hs[t] <= 0, 0)
            else:
                dP[t].addcmul_(dP[t], torch.mul(hs[t], hs[t], out=tmp), value=-1)  # dP (1 - h^2)


class LSTMSequence(torch.autograd.Function):
    """One LSTM layer over a sequence (gate order i, f, g, o):

        P_t = A_t + h_{t-1} W_hh^T,   A = X W_ih^T + b_ih + b_hh
        i, f, o = sigmoid(P_t[i, f, o]),  g = tanh(P_t[g])
        c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

    forward(x (T, B, D), h0, c0 (B, H), w_ih, w_hh, b_ih, b_hh) -> (hs (T, B, H), c_T (B, H)).
    Backward, with u_t = tanh(c_t):
        dh_t = dy_t + dP_{t+1} W_hh
        dc_t = dc_{t+1} * f_{t+1} + dh_t * o_t (1 - u_t^2)
        dP_t = [dc_t g i(1-i),  dc_t c_{t-1} f(1-f),  dc_t i (1-g^2),  dh_t u_t o(1-o)]
    Both loops save and read the same tensors whether compiled (`unrolled.native`) or in Python
    (`_forward_loop`, `_backward_loop`): hs, cs (T+1, B, H) with the initial state first,
    us = tanh(cs[1:]) and the gate values (T, B, 4H).
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        native = _native(x)
        if native is not None:
            a = _input_projection(x, w_ih, _both_biases(b_ih, b_hh))  # (T, B, 4H)
            hs, cs, us, gates = native.lstm_forward(a, h0, c0, w_hh, Product(w_hh, a.shape[1]).packed)
        else:
            hs, cs, us, gates = LSTMSequence._forward_loop(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        ctx.has_bias = b_ih is not None
        ctx.w_ih, ctx.w_hh = w_ih, w_hh
        ctx.save_for_backward(x, hs, cs, us, gates)
        return hs[1:], cs[-1]

    @staticmethod
    def _forward_loop(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        # g = tanh(p) = 2 sigmoid(2p) - 1: doubling g's rows of W_ih, W_hh and b once lets one
        # sigmoid over all 4H gates serve every step (see tanh_)
        scale = x.new_ones(4 * H, 1)
        scale[2 * H:3 * H] = 2
        b = _both_biases(b_ih, b_hh)
        a = _input_projection(x, w_ih * scale, None if b is None else b * scale[:, 0])  # (T, B, 4H)
        step = Product(w_hh * scale, B)
        gates = torch.empty_like(a)  # (T, B, 4H) activations i, f, g, o
        hs = x.new_empty(T + 1, B, H)  # hs[0] = h0
        cs = x.new_empty(T + 1, B, H)  # cs[0] = c0
        us = x.new_empty(T, B, H)  # tanh(c_t)
        hs[0], cs[0] = h0, c0
        two, one = _const(2.0, x), _const(1.0, x)
        for t in range(T):
            p = step(hs[t], other=a[t])  # (B, 4H)
            gt = gates[t]
            torch.sigmoid(p, out=gt)
            i, f, g, o = gt[:, :H], gt[:, H:2 * H], gt[:, 2 * H:3 * H], gt[:, 3 * H:]
            g.mul_(two).sub_(one)  # g = 2 sigmoid(2 p_g) - 1 = tanh(p_g)
            torch.mul(f, cs[t], out=cs[t + 1])
            cs[t + 1].addcmul_(i, g)
            tanh_into(cs[t + 1], us[t])
            torch.mul(o, us[t], out=hs[t + 1])
        return hs, cs, us, gates

    @staticmethod
    def backward(ctx, dy, dcT):
        x, hs, cs, us, gates = ctx.saved_tensors
        T, B, H = dy.shape
        w_hh = ctx.w_hh
        native = _native(dy)
        if native is None or dy.stride(2) != 1:
            dy = dy.contiguous()  # (T, B, H); the compiled loop reads it a step at a time as it comes
        dc = dcT.clone() if dcT is not None else dy.new_zeros(B, H)  # (B, H)
        dP = torch.empty_like(gates)  # (T, B, 4H) gradient at the pre-activations
        back = Product(w_hh.t(), B)  # dP_{t+1} W_hh
        sums = None
        if native is not None:
            db = dy.new_empty(4 * H) if ctx.has_bias else None
            native.lstm_backward(dy, dc, w_hh, cs, us, gates, back.packed, dP, db)
            sums = (db, db)
        else:
            LSTMSequence._backward_loop(dy, dc, back, cs, us, gates, dP)
        need = ctx.needs_input_grad
        dh0 = dP[0] @ w_hh if need[1] else None  # (B, H)
        dc0 = dc * gates[0][:, H:2 * H] if need[2] else None  # (B, H)
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(ctx, need[:1] + need[3:7], dP, dP, x, hs[:-1], sums)
        return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh

    @staticmethod
    def _backward_loop(dy, dc, back, cs, us, gates, dP):
        """Into dP (T, B, 4H); dc (B, H), in place, comes in as dc_T and leaves as the cell
        gradient at step 0. back: the product by W_hh."""
        T, B, H = dy.shape
        tmp = dy.new_empty(B, H)
        # Each step's factors are computed inside the loop while its gates are in cache (a pass
        # over the whole sequence per factor measured slower on a busy machine).
        for t in range(T - 1, -1, -1):
            gt, u = gates[t], us[t]
            i, f, g, o = gt[:, :H], gt[:, H:2 * H], gt[:, 2 * H:3 * H], gt[:, 3 * H:]
            if t == T - 1:
                dh = dy[t]
            else:
                dh = back(dP[t + 1], other=dy[t])  # dh_t = dy_t + dP_{t+1} W_hh
                dc.mul_(gates[t + 1][:, H:2 * H])  # dc_{t+1} f_{t+1}
            torch.addcmul(o, o, torch.mul(u, u, out=tmp), value=-1, out=tmp)  # o (1 - u^2)
            dc.addcmul_(dh, tmp)
            p = dP[t]
            torch.addcmul(gt[:, :2 * H], gt[:, :2 * H], gt[:, :2 * H], value=-1, out=p[:, :2 * H])  # i(1-i), f(1-f)
            p[:, :H].mul_(g)
            p[:, H:2 * H].mul_(cs[t])
            torch.addcmul(i, i, torch.mul(g, g, out=tmp), value=-1, out=p[:, 2 * H:3 * H])  # i (1 - g^2)
            p[:, :3 * H].view(B, 3, H).mul_(dc.unsqueeze(1))  # dP[i, f, g] = dc * factors
            torch.addcmul(o, o, o, value=-1, out=p[:, 3 * H:]).mul_(u).mul_(dh)  # dP[o] = dh u o (1 - o)


class GRUSequence(torch.autograd.Function):
    """One GRU layer over a sequence (gate order r, z, n):

        A = X W_ih^T + b_ih,   R_t = h_{t-1} W_hh^T + b_hh
        r, z = sigmoid(A_t[r, z] + R_t[r, z]),   n = tanh(A_t[n] + r * R_t[n])
        h_t = (1 - z) * n + z * h_{t-1}  =  n + z * (h_{t-1} - n)

    forward(x (T, B, D), h0 (B, H), w_ih, w_hh, b_ih, b_hh) -> hs (T, B, H).
    Backward: every gate gradient is the step's dh_t times a factor known after the forward:
        dR_t = dh_t * [(1-z)(1-n^2) R[n] r(1-r),  (h_{t-1}-n) z(1-z),  (1-z)(1-n^2) r]
        dA_t = dR_t except dA_t[n] = dh_t * (1-z)(1-n^2)
        dh_{t-1} = dy_{t-1} + z_t * dh_t + dR_t W_hh
    Compiled (`unrolled.native`) or in Python (`_forward_loop`, `_backward_loop`), both saving
    hs (T+1, B, H) with h0 first, R[n] (T, B, H) and the gate values (T, B, 3H).
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh):
        a = _input_projection(x, w_ih, b_ih)  # (T, B, 3H)
        native = _native(x)
        if native is not None:
            hs, rec, gates = native.gru_forward(a, h0, w_hh, b_hh, Product(w_hh, a.shape[1]).packed)
        else:
            hs, rec, gates = GRUSequence._forward_loop(a, h0, w_hh, b_hh)
        ctx.has_bias = b_ih is not None
        ctx.w_ih, ctx.w_hh = w_ih, w_hh
        ctx.save_for_backward(x, hs, rec, gates)
        return hs[1:]

    @staticmethod
    def _forward_loop(a, h0, w_hh, b_hh):
        T, B, _ = a.shape
        H = w_hh.shape[1]
        rec = a.new_empty(T, B, H)  # R_t[n], the candidate's recurrent product
        step = Product(w_hh, B)
        gates = torch.empty_like(a)  # (T, B, 3H) r, z, n
        hs = a.new_empty(T + 1, B, H)  # hs[0] = h0
        hs[0] = h0
        for t in range(T):
            gt = gates[t]
            rt = step(hs[t], bias=b_hh)  # (B, 3H)
            rec[t] = rt[:, 2 * H:]
            rz = torch.add(a[t, :, :2 * H], rt[:, :2 * H], out=gt[:, :2 * H]).sigmoid_()  # (B, 2H)
            n = tanh_(torch.addcmul(a[t, :, 2 * H:], rz[:, :H], rt[:, 2 * H:], out=gt[:, 2 * H:]))  # (B, H)
            torch.sub(hs[t], n, out=hs[t + 1]).mul_(rz[:, H:]).add_(n)  # (B, H)
        return hs, rec, gates

    @staticmethod
    def backward(ctx, dy):
        x, hs, rec, gates = ctx.saved_tensors
        T, B, H = dy.shape
        w_hh = ctx.w_hh
        native = _native(dy)
        if native is None or dy.stride(2) != 1:
            dy = dy.contiguous()  # (T, B, H); the compiled loop reads it a step at a time as it comes
        dR = torch.empty_like(gates)  # (T, B, 3H) gradient at the recurrent products
        dA = torch.empty_like(gates)  # (T, B, 3H) gradient at the input projection
        dh = dy[T - 1].clone()  # (B, H) the total gradient at the output of the step to do next
        back = Product(w_hh.t(), B)  # dR_t W_hh
        sums = None
        if native is not None:
            sums = (dy.new_empty(3 * H), dy.new_empty(3 * H)) if ctx.has_bias else (None, None)
            native.gru_backward(dy, w_hh, hs, rec, gates, back.packed, dA, dR, dh, *sums)
        else:
            GRUSequence._backward_loop(dy, back, hs, rec, gates, dA, dR, dh)
        need = ctx.needs_input_grad
        dh0 = torch.addmm(gates[0][:, H:2 * H] * dh, dR[0], w_hh) if need[1] else None  # (B, H)
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(ctx, need[:1] + need[2:6], dA, dR, x, hs[:-1], sums)
        return dx, dh0, dw_ih, dw_hh, db_ih, db_hh

    @staticmethod
    def _backward_loop(dy, back, hs, rec, gates, dA, dR, dh_io):
        """Into dA, dR (T, B, 3H); dh_io (B, H), in place, comes in as dy_{T-1} and leaves as the
        total gradient at step 0's output. back: the product by W_hh."""
        T, B, H = dy.shape
        dh = dh_io
        acc = dy.new_empty(B, H)
        tmp = dy.new_empty(B, H)
        for t in range(T - 1, -1, -1):  # factors computed per step, while the gates are in cache
            gt, dr, da = gates[t], dR[t], dA[t]
            r, z, n = gt[:, :H], gt[:, H:2 * H], gt[:, 2 * H:]
            kn = da[:, 2 * H:]
            torch.mul(n, n, out=kn).neg_().add_(1)  # 1 - n^2
            kn.addcmul_(kn, z, value=-1)  # (1 - z)(1 - n^2)
            torch.addcmul(r, r, r, value=-1, out=dr[:, :H]).mul_(kn).mul_(rec[t])  # kn R[n] r(1-r)
            torch.addcmul(z, z, z, value=-1, out=dr[:, H:2 * H]).mul_(torch.sub(hs[t], n, out=tmp))  # (h-n) z(1-z)
            torch.mul(kn, r, out=dr[:, 2 * H:])  # kn r
            dr.view(B, 3, H).mul_(dh.unsqueeze(1))  # dR_t = dh_t * factors
            kn.mul_(dh)  # dA_t[n] = dh_t kn
            da[:, :2 * H].copy_(dr[:, :2 * H])
            if t > 0:
                dh = back(dr, other=torch.addcmul(dy[t - 1], z, dh, out=acc))  # dh_{t-1}
        if dh is not dh_io:
            dh_io.copy_(dh)


def _apply(kind: str, x: Tensor, s0, weights, relu: bool):
    """One layer, one direction, time-major: x (T, B, D) -> (hs (T, B, H), final state)."""
    if kind == "lstm":
        h0, c0 = s0
        hs, cT = LSTMSequence.apply(x, h0, c0, *weights)
        return hs, (hs[-1], cT)
    if kind == "gru":
        hs = GRUSequence.apply(x, s0, *weights)
    else:
        hs = RNNTanhSequence.apply(x, s0, *weights, relu)
    return hs, hs[-1]


def run_layers(layer, x: Tensor, state) -> tuple[Tensor, list]:
    """A stacked, possibly bidirectional layer on our kernels (no padding lengths).

    layer: an `unrolled.recurrent.Recurrent` (its kind, weights, dropout, directions);
    x (B, T, D) batch first; state already checked -> (output (B, T, H*dirs), per-(layer,
    direction) final states, in the order of torch.nn's state rows).
    The sequence is made time-major once, so every step reads a contiguous (B, .) block.
    """
    relu = getattr(layer, "nonlinearity", "tanh") == "relu"
    z = x.transpose(0, 1).contiguous()  # (T, B, D)
    finals: list = []
    dirs = layer.num_directions
    for k in range(layer.num_layers):
        outs = []
        for d, suffix in enumerate(layer._suffixes()):
            s0 = layer._select_state(state, k * dirs + d)
            seq = z if not suffix else z.flip(0)
            hs, s_last = _apply(layer.kind, seq, s0, layer.layer_weights(k, suffix), relu)  # (T, B, H)
            outs.append(hs if not suffix else hs.flip(0))
            finals.append(s_last)
        z = torch.cat(outs, dim=2) if dirs > 1 else outs[0]  # (T, B, H*dirs)
        if layer.dropout and layer.training and k < layer.num_layers - 1:
            z = F.dropout(z, layer.dropout, training=True)  # never after the last layer, as torch.nn
    return z.transpose(0, 1), finals  # (B, T, H*dirs)


# Where `unrolled bench` measured our kernels ahead of the fused torch path (docs/performance.md):
# (cell, device type, loops) -> the smallest hidden size, batch and sequence length it wins at,
# and whether only when training (a backward to come). `loops` is "native" when the compiled
# step loops (unrolled.native) are loaded, else "python".
#
# On a CPU, torch.nn.RNN and GRU have no fused kernel (a per-step autograd graph, weight
# gradients step by step, a float32 tanh much slower than sigmoid), so ours win: compiled, the
# RNN and GRU forward and backward at every size we measured (the GRU's forward alone from batch
# 8; at batch 1 it tied); in Python, the RNN everywhere and the GRU only for training at
# H = 512. torch.nn.LSTM runs oneDNN's fused cell: compiled, ours won training at H = 256 (1.11x),
# tied at 512 and lost at 128, and its forward alone lost at 256, so the LSTM takes ours only
# for training from H = 256. One step at a time (sampling) goes through StepSampler, not here.
# On CUDA nothing is listed: cuDNN stays.
KERNEL_WINS = {
    ("rnn", "cpu", "native"): {"hidden": 1, "batch": 1, "steps": 16, "training_only": False},
    ("gru", "cpu", "native"): {"hidden": 1, "batch": 8, "steps": 16, "training_only": False},
    ("lstm", "cpu", "native"): {"hidden": 256, "batch": 8, "steps": 16, "training_only": True},
    ("rnn", "cpu", "python"): {"hidden": 1, "batch": 8, "steps": 16, "training_only": False},
    ("gru", "cpu", "python"): {"hidden": 512, "batch": 8, "steps": 16, "training_only": True},
}


def prefers_kernel(layer, x: Tensor) -> bool:
    """Whether path="auto" runs `layer` over x (B, T, D) on our kernels: only where the benchmark
    shows a win."""
    if not any(key[:2] == (layer.kind, x.device.type) for key in KERNEL_WINS):
        return False  # (so the compiled loops are never built for a cell that never uses them)
    loops = "native" if _native(x) is not None else "python"
    rule = KERNEL_WINS.get((layer.kind, x.device.type, loops))
    if rule is None or layer.hidden_size < rule["hidden"] or x.shape[0] < rule["batch"] \
            or x.shape[1] < rule["steps"]:
        return False
    if rule["training_only"]:
        return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layer.parameters()))
    return True


class StepSampler:
    """Generation one character at a time with every buffer allocated once.

    For a `CharLM` (embedding or one-hot input, L recurrent layers, linear head), batch B:

        P^0_t = F[c_t] + h^0_{t-1} W_hh^0^T      F = E W_ih^0^T + b   (V, G*H), folded once
        P^k_t = h^{k-1}_t W_ih^k^T + b + h^k_{t-1} W_hh^k^T              (k >= 1)
        logits_t = h^{L-1}_t W_hy^T + b_y

    The embedding and the first layer's input product fold into one table F, so reading a
    character is a row lookup; every other product writes into a preallocated buffer and the
    element-wise math runs in place, so a step allocates almost nothing. `logits(idx)` equals
    `model(idx[:, None], state)` step by step (tests/test_kernels.py).
    """

    def __init__(self, model, batch: int = 1):
        rnn = model.rnn
        if rnn.bidirectional or not rnn.has_fast_path or getattr(rnn, "input_depth", 0) \
                or getattr(rnn, "output_depth", 0):
            raise ValueError("StepSampler needs a unidirectional layer without deep parts")
        self.kind, self.B, H = rnn.kind, batch, rnn.hidden_size
        self.H, self.L = H, rnn.num_layers
        self.relu = getattr(rnn, "nonlinearity", "tanh") == "relu"
        p = model.head.weight
        kw = {"device": p.device, "dtype": p.dtype}
        with torch.no_grad():
            w_ih, w_hh, b_ih, b_hh = rnn.layer_weights(0)
            table = model.embedding.weight if model.embedding is not None else torch.eye(len(model.vocab), **kw)
            self.first = table @ w_ih.t()  # (V, G*H)
            self.b = [self._bias(*rnn.layer_weights(k)[2:]) for k in range(self.L)]
            if self.b[0] is not None:
                self.first += self.b[0]
            self.w_ih_t = [None] + [rnn.layer_weights(k)[0].t().contiguous() for k in range(1, self.L)]
            self.w_hh_t = [rnn.layer_weights(k)[1].t().contiguous() for k in range(self.L)]  # (H, G*H)
            self.b_hh = [rnn.layer_weights(k)[3] for k in range(self.L)]
            self.head_w_t = model.head.weight.t().contiguous()  # (H, V)
            self.head_b = model.head.bias
            # oneDNN's packed products pay from a batch of a few rows; a single row is a
            # matrix-vector product, where addmm into the buffers measured no slower
            packed = batch >= 8 and self.kind != "rnn"
            self.ih = [None] + [Product(rnn.layer_weights(k)[0], batch) for k in range(1, self.L)] if packed else None
            self.hh = [Product(rnn.layer_weights(k)[1], batch) for k in range(self.L)] if packed else None
        G = self.first.shape[1]
        self.native = _native(self.first)  # each step's element-wise math as one compiled call
        self.h = torch.zeros(self.L, batch, H, **kw)  # (L, B, H)
        self.c = torch.zeros(self.L, batch, H, **kw)  # (L, B, H), LSTM only
        self.pre = torch.empty(batch, G, **kw)  # (B, G*H) pre-activations
        self.act = torch.empty(batch, G, **kw)  # (B, G*H) gate values
        self.rec = torch.empty(batch, G, **kw)  # (B, G*H) GRU: the recurrent product
        self.tmp = torch.empty(batch, H, **kw)
        self.out = torch.empty(batch, self.head_w_t.shape[1], **kw)  # (B, V)

    def _bias(self, b_ih, b_hh):
        if b_ih is None:
            return None
        if self.kind == "gru":  # b_hh[n] sits inside r * (.), so only b_ih folds
            return b_ih.detach().clone()
        return (b_ih + b_hh).detach()

    def reset(self, state=None) -> None:
        """Start from zeros, or from a model state ((L, B, H), or (h, c) for the LSTM)."""
        if state is None:
            self.h.zero_(), self.c.zero_()
        elif self.kind == "lstm":
            self.h.copy_(state[0]), self.c.copy_(state[1])
        else:
            self.h.copy_(state)

    @property
    def state(self):
        return (self.h, self.c) if self.kind == "lstm" else self.h

    @torch.no_grad()
    def logits(self, idx: Tensor) -> Tensor:
        """idx (B,) long -> logits (B, V) for the next character; the state moves one step.
        The result is a buffer overwritten by the next call."""
        H, pre = self.H, self.pre
        for k in range(self.L):
            h = self.h[k]  # (B, H), this layer's state, updated in place
            if k == 0:
                pre = torch.index_select(self.first, 0, idx, out=self.pre)  # (B, G*H)
            elif self.ih is not None:
                pre = self.ih[k](self.h[k - 1], bias=self.b[k])  # (B, G*H)
            elif self.b[k] is not None:
                torch.addmm(self.b[k], self.h[k - 1], self.w_ih_t[k], out=pre)
            else:
                torch.mm(self.h[k - 1], self.w_ih_t[k], out=pre)
            if self.kind == "gru":
                self._gru(h, k, pre)
                continue
            if self.hh is not None:
                pre = self.hh[k](h, other=pre)  # (B, G*H)
            else:
                pre.addmm_(h, self.w_hh_t[k])
            if self.native is not None:
                if self.kind == "rnn":
                    self.native.rnn_step(pre, h, self.relu)
                else:
                    self.native.lstm_step(pre, self.c[k], h)
                continue
            if self.kind == "rnn":
                h.copy_(pre.relu_() if self.relu else tanh_(pre))
                continue
            act, c = self.act, self.c[k]
            pre[:, 2 * H:3 * H].mul_(2)
            torch.sigmoid(pre, out=act)
            act[:, 2 * H:3 * H].mul_(2).sub_(1)  # g = tanh(p_g) = 2 sigmoid(2 p_g) - 1
            c.mul_(act[:, H:2 * H]).addcmul_(act[:, :H], act[:, 2 * H:3 * H])  # c = f c + i g
            torch.mul(act[:, 3 * H:], tanh_into(c, self.tmp), out=h)  # h = o tanh(c)
        if self.head_b is not None:
            return torch.addmm(self.head_b, self.h[-1], self.head_w_t, out=self.out)  # (B, V)
        return torch.mm(self.h[-1], self.head_w_t, out=self.out)

    def _gru(self, h: Tensor, k: int, pre: Tensor) -> None:
        H, rec = self.H, self.rec
        if self.hh is not None:
            rec = self.hh[k](h, bias=self.b_hh[k])  # (B, 3H)
        elif self.b_hh[k] is not None:
            torch.addmm(self.b_hh[k], h, self.w_hh_t[k], out=rec)  # (B, 3H)
        else:
            torch.mm(h, self.w_hh_t[k], out=rec)
        if self.native is not None:
            self.native.gru_step(pre, rec, h, self.act)
            return
        rz = pre[:, :2 * H].add_(rec[:, :2 * H]).sigmoid_()  # (B, 2H)
        n = tanh_(pre[:, 2 * H:].addcmul_(rz[:, :H], rec[:, 2 * H:]))  # (B, H)
        h.sub_(n).mul_(rz[:, H:]).add_(n)  # h = n + z (h - n)
