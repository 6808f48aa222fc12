"""The sequence kernels: one layer, one direction, a whole sequence per call, each a
`torch.autograd.Function` with a hand-written backward beside its forward.

Shapes are time-major inside the kernels: x (T, B, D), outputs (T, B, H), states (B, H);
G is the gate count (RNN 1, LSTM 4, GRU 3). `run_layers` is what `path="kernel"` calls.

Each forward does the input projection of every step as one product (`product.input_projection`),
then the loop over time: one recurrent product and the step's element-wise math, in place in the
projection's buffer. Each backward runs the loop back, then the weight gradients of every step as
one product each (`product.weight_grads`). The loops run compiled (`kernels.native`,
kernels/csrc/steps.cpp: one pass over a step's gates) where the library builds, else as the
Python loops here (`_forward_loop`, `_backward_loop`: the same arithmetic in tensor ops, tanh as
2 sigmoid(2x) - 1, see `elementwise.tanh_`). tests/test_kernels.py checks each, both ways, against
the readable path (float64, forward and every gradient) and with gradcheck.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unrolled.kernels import native
from unrolled.kernels.elementwise import constant, tanh_, tanh_into
from unrolled.kernels.product import Product, input_projection, weight_grads


def _both_biases(b_ih, b_hh):
    if b_ih is None:
        return None
    return b_ih + b_hh


class RNNTanhSequence(torch.autograd.Function):
    """h_t = tanh(A_t + h_{t-1} W_hh^T),  A = X W_ih^T + b_ih + b_hh   (relu for "relu").

    forward(x (T, B, D), h0 (B, H), w_ih, w_hh, b_ih, b_hh, relu) -> hs (T, B, H).
    Backward: with k_t = tanh'(.) = 1 - h_t^2 (or [h_t > 0]),
        dP_t = (dy_t + dP_{t+1} W_hh) * k_t,   dh_0 = dP_1 W_hh.
    Both loops run in place: step t adds its recurrent product onto A_t and applies tanh there,
    so the projection buffer becomes the outputs, and the backward accumulates onto a copy of dy,
    with no per-step copies. The loops run compiled (`kernels.native`) where they can, else
    in Python (`_forward_loop`, `_backward_loop`): the same arithmetic.
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, relu=False):
        hs = input_projection(x, w_ih, _both_biases(b_ih, b_hh))  # (T, B, H): A, then h
        compiled = native.ops_for(x)
        if compiled is not None:
            hs = compiled.rnn_forward(hs, h0, w_hh, relu, Product(w_hh, hs.shape[1]).packed)
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
        compiled = native.ops_for(dy)
        need = ctx.needs_input_grad
        sums = None
        if compiled is not None and dy.stride(2) == 1:  # read dy a step at a time, as it comes
            db = dy.new_empty(H) if ctx.has_bias else None
            compiled.rnn_backward(dy, dP, hs, w_hh, ctx.relu, Product(w_hh.t(), B).packed, db)
            sums = (db, db)
        else:
            RNNTanhSequence._backward_loop(dP.copy_(dy), hs, w_hh, ctx.relu)
        dh0 = dP[0] @ w_hh if need[1] else None  # (B, H)
        dx, dw_ih, dw_hh, db_ih, db_hh = weight_grads(ctx, need[:1] + need[2:6], dP, dP, x, (h0, hs[:-1]), sums)
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
    Both loops save and read the same tensors whether compiled (`kernels.native`) or in Python
    (`_forward_loop`, `_backward_loop`): hs, cs (T+1, B, H) with the initial state first,
    us = tanh(cs[1:]) and the gate values (T, B, 4H).
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        compiled = native.ops_for(x)
        if compiled is not None:
            a = input_projection(x, w_ih, _both_biases(b_ih, b_hh))  # (T, B, 4H)
            hs, cs, us, gates = compiled.lstm_forward(a, h0, c0, w_hh, Product(w_hh, a.shape[1]).packed)
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
        a = input_projection(x, w_ih * scale, None if b is None else b * scale[:, 0])  # (T, B, 4H)
        step = Product(w_hh * scale, B)
        gates = torch.empty_like(a)  # (T, B, 4H) activations i, f, g, o
        hs = x.new_empty(T + 1, B, H)  # hs[0] = h0
        cs = x.new_empty(T + 1, B, H)  # cs[0] = c0
        us = x.new_empty(T, B, H)  # tanh(c_t)
        hs[0], cs[0] = h0, c0
        two, one = constant(2.0, x), constant(1.0, x)
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
        compiled = native.ops_for(dy)
        if compiled is None or dy.stride(2) != 1:
            dy = dy.contiguous()  # (T, B, H); the compiled loop reads it a step at a time as it comes
        dc = dcT.clone() if dcT is not None else dy.new_zeros(B, H)  # (B, H)
        dP = torch.empty_like(gates)  # (T, B, 4H) gradient at the pre-activations
        back = Product(w_hh.t(), B)  # dP_{t+1} W_hh
        sums = None
        if compiled is not None:
            db = dy.new_empty(4 * H) if ctx.has_bias else None
            compiled.lstm_backward(dy, dc, w_hh, cs, us, gates, back.packed, dP, db)
            sums = (db, db)
        else:
            LSTMSequence._backward_loop(dy, dc, back, cs, us, gates, dP)
        need = ctx.needs_input_grad
        dh0 = dP[0] @ w_hh if need[1] else None  # (B, H)
        dc0 = dc * gates[0][:, H:2 * H] if need[2] else None  # (B, H)
        dx, dw_ih, dw_hh, db_ih, db_hh = weight_grads(ctx, need[:1] + need[3:7], dP, dP, x, hs[:-1], sums)
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
    Compiled (`kernels.native`) or in Python (`_forward_loop`, `_backward_loop`), both saving
    hs (T+1, B, H) with h0 first, R[n] (T, B, H) and the gate values (T, B, 3H).
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh):
        a = input_projection(x, w_ih, b_ih)  # (T, B, 3H)
        compiled = native.ops_for(x)
        if compiled is not None:
            hs, rec, gates = compiled.gru_forward(a, h0, w_hh, b_hh, Product(w_hh, a.shape[1]).packed)
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
        compiled = native.ops_for(dy)
        if compiled is None or dy.stride(2) != 1:
            dy = dy.contiguous()  # (T, B, H); the compiled loop reads it a step at a time as it comes
        dR = torch.empty_like(gates)  # (T, B, 3H) gradient at the recurrent products
        dA = torch.empty_like(gates)  # (T, B, 3H) gradient at the input projection
        dh = dy[T - 1].clone()  # (B, H) the total gradient at the output of the step to do next
        back = Product(w_hh.t(), B)  # dR_t W_hh
        sums = None
        if compiled is not None:
            sums = (dy.new_empty(3 * H), dy.new_empty(3 * H)) if ctx.has_bias else (None, None)
            compiled.gru_backward(dy, w_hh, hs, rec, gates, back.packed, dA, dR, dh, *sums)
        else:
            GRUSequence._backward_loop(dy, back, hs, rec, gates, dA, dR, dh)
        need = ctx.needs_input_grad
        dh0 = torch.addmm(gates[0][:, H:2 * H] * dh, dR[0], w_hh) if need[1] else None  # (B, H)
        dx, dw_ih, dw_hh, db_ih, db_hh = weight_grads(ctx, need[:1] + need[2:6], dA, dR, x, hs[:-1], sums)
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


