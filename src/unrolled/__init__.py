"""unrolled: recurrent neural networks you can train, sample from and understand."""
from unrolled.cells import GRUCell, LSTMCell, RNNCell
from unrolled.errors import UserError
from unrolled.recurrent import GRU, LSTM, RNN, detach_state
from unrolled.topologies import EncoderDecoder, ManyToMany, ManyToOne, OneToMany, OneToOne
from unrolled.lm import CharLM
from unrolled.charlm.run import load
from unrolled.evaluate import evaluate
from unrolled.sample import sample
# The function, bound through its old module while that module exists: the submodule
# unrolled.train is then loaded here first, so no later `import unrolled.train` can rebind the
# package's name `train` from the function to the module.
from unrolled.train import train

__version__ = "0.1.0"

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU", "detach_state", "UserError", "__version__",
           "OneToOne", "OneToMany", "ManyToOne", "ManyToMany", "EncoderDecoder",
           "CharLM", "load", "train", "sample", "evaluate"]
