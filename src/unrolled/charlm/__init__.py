"""The character language model application on top of the RNN library: its run record
(state.py), how a saved run opens (run.py), the training loop (trainer.py: a `Trainer`, with the
update rule in optim.py, the window loss in tbptt.py, the text in data.py)."""
from unrolled.charlm.run import OpenRun, describe, load, open_run
from unrolled.charlm.state import LoopState, RunRecord
from unrolled.charlm.trainer import RunResult, Trainer, train

__all__ = ["Trainer", "train", "RunResult", "RunRecord", "LoopState", "OpenRun", "open_run", "load", "describe"]
