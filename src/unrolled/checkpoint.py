"""The old home of checkpoints, kept while its importers move: the folders on disk are
unrolled/store.py, the run record and its tensors unrolled/charlm/state.py, and opening a
checkpoint into its model unrolled/charlm/run.py."""
from unrolled.charlm.run import describe, load
from unrolled.charlm.state import (optimizer_from_flat, optimizer_to_flat, restore_rng, rng_to_tensors,
                                   state_from_tensors, state_to_tensors)
from unrolled.errors import UserError
from unrolled.store import (FORMAT, TENSOR_FILES, VERSION, Checkpoint, content_checksum, read, read_state, resolve,
                            save, save_file, set_aside)

__all__ = ["load", "describe", "save", "read", "resolve", "set_aside", "read_state", "save_file", "content_checksum",
           "Checkpoint", "FORMAT", "VERSION", "TENSOR_FILES", "optimizer_to_flat", "optimizer_from_flat",
           "state_to_tensors", "state_from_tensors", "rng_to_tensors", "restore_rng", "UserError"]
