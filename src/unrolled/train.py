"""The old home of training, kept while its importers move: the Trainer and everything it uses
live in unrolled/charlm/ now (trainer.py, optim.py, tbptt.py, data.py, device.py)."""
from unrolled.charlm.data import fingerprint, make_streams, prepare_data
from unrolled.charlm.device import check_fits_in_memory, parameter_count, pick_device
from unrolled.charlm.optim import clip_gradients, learning_rate, make_optimizer
from unrolled.charlm.tbptt import WindowLoss, tbptt_loss
from unrolled.charlm.trainer import RunResult, Trainer, train

__all__ = ["train", "Trainer", "RunResult", "pick_device", "clip_gradients", "learning_rate", "make_optimizer",
           "tbptt_loss", "WindowLoss", "fingerprint", "prepare_data", "make_streams", "parameter_count",
           "check_fits_in_memory"]
