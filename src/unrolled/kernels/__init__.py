"""Our own recurrent kernels: a whole sequence per call for training, one step for generation.

What makes them fast (the torch-rnn recipe, in PyTorch ops), G the gate count (RNN 1, LSTM 4, GRU 3):

1. the input projection of every step is ONE matrix product, before the loop:
       A = X W_ih^T + b          X (T*B, D) -> A (T*B, G*H)
2. the per-step work is only what cannot wait: the recurrent product h_{t-1} W_hh^T added onto
   A_t and the step's element-wise math, in place in A's buffer;
3. each backward step is the product dP_{t+1} W_hh and the element-wise factors of that step,
   computed while its gates are in cache;
4. the weight gradients of all steps are ONE matrix product each, after the backward loop:
       dW_hh = dG^T H_prev,  dW_ih = dG^T X,  db = sum of dG,  dX = dG W_ih
   with dG (T*B, G*H) the gradients of every step's gate pre-activations.

One job per module:
    sequence.py     the autograd Functions (RNNTanhSequence, LSTMSequence, GRUSequence) and
                    `run_layers`, what `path="kernel"` runs
    product.py      the matrix products of 1, 2 and 4 (`Product`: oneDNN or MKL, as measured)
    elementwise.py  tanh as 2 sigmoid(2x) - 1 for the Python loops
    policy.py       what `path="auto"` picks (`KERNEL_WINS`, `prefers_kernel`)
    step.py         one step of a stacked layer for generation (`RecurrentStep`)
    native.py       the build and load of the compiled loops of 2 and 3 (csrc/steps.cpp)
    recurrence.py   the minimal cells' recurrence compiled (`MinimalSequence`, csrc/minimal.cpp),
                    what unrolled.minimal's "loop" path runs where the library loads

The loops run compiled where the library builds, else in Python (the same arithmetic);
tests/test_kernels.py checks every kernel both ways against the readable path.
docs/performance.md has the measurements behind every choice here.
"""
from unrolled.kernels import native
from unrolled.kernels.elementwise import tanh_, tanh_into
from unrolled.kernels.policy import KERNEL_WINS, prefers_kernel
from unrolled.kernels.product import Product
from unrolled.kernels.sequence import GRUSequence, LSTMSequence, RNNTanhSequence, run_layers
from unrolled.kernels.step import RecurrentStep

__all__ = ["GRUSequence", "KERNEL_WINS", "LSTMSequence", "Product", "RNNTanhSequence", "RecurrentStep",
           "native", "prefers_kernel", "run_layers", "tanh_", "tanh_into"]

