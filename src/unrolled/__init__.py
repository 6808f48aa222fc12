"""unrolled: recurrent neural networks you can train, sample from and understand."""
from unrolled.cells import GRUCell, LSTMCell, RNNCell
from unrolled.errors import UserError
from unrolled.recurrent import GRU, LSTM, RNN, detach_state
from unrolled.minimal import MinGRU, MinLSTM
from unrolled.topologies import EncoderDecoder, ManyToMany, ManyToOne, OneToMany, OneToOne
from unrolled.charlm.model import CharLM
from unrolled.charlm.run import load
from unrolled.charlm.evaluate import evaluate
from unrolled.charlm.sample import sample
from unrolled.charlm.trainer import train

__version__ = "0.1.0"

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU", "MinGRU", "MinLSTM", "detach_state", "UserError", "__version__",
           "OneToOne", "OneToMany", "ManyToOne", "ManyToMany", "EncoderDecoder",
           "CharLM", "load", "train", "sample", "evaluate"]
