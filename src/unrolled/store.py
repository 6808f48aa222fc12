"""Checkpoint folders on disk: atomic writes, checksums, resolving a run to best/ or last/,
JSON and tensors in and out, with no pickle anywhere. Nothing here knows what a model is.

A checkpoint is a directory (a run keeps two: RUN/best/ by validation, RUN/last/):

    model.safetensors      the model's weights (a state_dict)
    optimizer.safetensors  the optimizer's per-parameter tensors
    state.safetensors      any other tensors of the run (the carried state, the RNG states)
    state.json             the envelope written here (format, version, torch, the sizes and
                           SHA-256 of the three tensor files, so a truncated or bit-flipped file is
                           named, not guessed, and a SHA-256 of its own content) around the JSON
                           record the caller gives (for a training run: charlm/state.py's RunRecord)

It is written into a temporary directory beside the target (every file fsynced) and renamed into
place, so a reader never sees half a checkpoint. Only an empty folder or a checkpoint the store
wrote (a state.json of this format) is replaced; any other file or folder at the target is a
user's, refused with a UserError and left untouched. Replacing one takes two renames (old aside,
new in); a process killed between them leaves the old one in `.NAME.old-*/NAME`, which `resolve`
reads until the next save tidies it away. A write that fails (disk full, no permission) raises a
UserError and leaves the previous checkpoint as it was. Reading takes safetensors and JSON only
(never `torch.load`, never pickle), checks sizes and checksums before parsing, always onto the
CPU first, so a checkpoint made on a GPU loads on a machine without one. Checkpoints written
before the checksums existed still load (their sizes are checked).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from unrolled.errors import UserError

FORMAT = "unrolled-checkpoint"
VERSION = 1  # of the folder and of the record in its state.json: bump it when either changes
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "state.safetensors")


@dataclass
class Checkpoint:
    """Everything in one checkpoint directory, on the CPU."""
    path: Path
    state: dict  # state.json: the envelope and the record, as stored
    model: dict[str, torch.Tensor]  # model.safetensors
    optimizer: dict[str, torch.Tensor] = field(default_factory=dict)  # optimizer.safetensors
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # state.safetensors

    @property
    def format_version(self) -> str:
        """What wrote the folder, and which version of it: "unrolled-checkpoint v1"."""
        return f"{self.state.get('format')} v{self.state.get('version')}"

    @property
    def torch_version(self) -> str | None:
        """The torch version that wrote it."""
        return self.state.get("torch")


# --- writing -----------------------------------------------------------------------------------
def save_file(tensors: dict[str, torch.Tensor], filename: str) -> str:
    """Write `tensors` as one safetensors file, fsynced; return its SHA-256 (hex).

    Serialised in memory and written with Python's file API, so a full disk or a missing
    permission is an OSError here (not a short file published later), and the checksum is of
    exactly the bytes meant to be on disk.
    """
    blob = save_bytes(tensors)
    with open(filename, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(blob).hexdigest()


def content_checksum(record: dict) -> str:
    """SHA-256 of state.json's content without its own "checksum" field, in a canonical form
    (sorted keys, no spaces), so any changed value or key is caught, however it is laid out."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _fsync_directory(directory: Path) -> None:
    """Make renames inside `directory` durable (a power cut after save keeps the new entry)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory: renames there are as durable as it gets
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _leftovers(path: Path) -> list[Path]:
    """Temporary and set-aside copies of checkpoint `path` left by a process killed while saving."""
    return sorted(path.parent.glob(f".{path.name}.tmp-*")) + sorted(path.parent.glob(f".{path.name}.old-*"))


def replace_refusal(path: str | os.PathLike) -> str | None:
    """Why `save` must not write to `path`, as a phrase ("holds notes.txt, ..."), or None when it
    may: `path` does not exist, is an empty folder, or is a checkpoint folder the store wrote (its
    state.json has this format). Anything else is a user's file or folder and is refused, a
    checkpoint whose state.json is truncated too (the user moves or deletes it). A checkpoint is
    replaced whole: a file a user added inside one goes with it."""
    path = Path(path)
    try:
        if not path.exists():
            return None
        if not path.is_dir():
            return "is a file"
        names = sorted(entry.name for entry in path.iterdir())
        if not names:
            return None
        if "state.json" not in names:
            return f"holds {', '.join(names[:3])}{' ...' if len(names) > 3 else ''} and no state.json"
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"cannot be read as a checkpoint ({getattr(e, 'strerror', None) or e})"
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return f"has a state.json that unrolled did not write (no format {FORMAT!r})"
    return None


def save(path: str | os.PathLike, record: dict, model: dict[str, torch.Tensor],
         optimizer: dict[str, torch.Tensor] | None = None, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint directory atomically: into a temporary directory, then renamed.
    `record` (JSON-able) goes into state.json inside the envelope; `model`, `optimizer` and
    `tensors` into the three tensor files.

    `path` may be new, an empty folder, or a checkpoint the store wrote, which is replaced; any
    other file or folder there (see `replace_refusal`) is a UserError and is left untouched, so a
    user's folder is never moved aside and deleted. A failed write (OSError: disk full,
    permission denied, ...) becomes a UserError naming the checkpoint, and the checkpoint that
    was at `path` is left as it was.
    """
    path = Path(path)
    why = replace_refusal(path)
    if why is not None:
        raise UserError(f"will not write a checkpoint to {path}: it {why}; the store replaces only an empty "
                        f"folder or a checkpoint it wrote, so move {path} away or give another path")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        contents = {
            "model.safetensors": {k: v.detach().to("cpu").contiguous() for k, v in model.items()},
            "optimizer.safetensors": optimizer or {},
            "state.safetensors": tensors or {},
        }
        sha256 = {name: save_file(tensor_dict, str(tmp / name)) for name, tensor_dict in contents.items()}
        stored = {"format": FORMAT, "version": VERSION, "torch": torch.__version__, **record,
                  "files": {name: (tmp / name).stat().st_size for name in TENSOR_FILES}, "sha256": sha256}
        stored["checksum"] = content_checksum(stored)
        with open(tmp / "state.json", "w", encoding="utf-8") as f:  # after the files it describes
            json.dump(stored, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _set_default_permissions(tmp)
        # A directory cannot replace a non-empty one in one rename: move the old one aside first,
        # then the new one in, then delete the old one. A reader sees one whole checkpoint or the
        # other (`resolve` finds the old one aside if a process dies between the two renames).
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:  # put the previous checkpoint back where readers look for it
                os.replace(old / path.name, path)
            raise
        tmp = None
        _fsync_directory(path.parent)
        for stale in _leftovers(path):  # this save's old copy, and any a killed save left behind
            shutil.rmtree(stale, ignore_errors=True)
    except OSError as e:
        raise UserError(f"cannot write checkpoint {path} ({e.strerror or e}); the checkpoint that was there is "
                        f"kept; free some disk space or make {path.parent} writable, then resume the run") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _set_default_permissions(directory: Path) -> None:
    """mkdtemp makes private directories; a checkpoint gets the modes any new file would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for f in directory.iterdir():
        os.chmod(f, 0o666 & ~umask)


# --- reading -----------------------------------------------------------------------------------
def resolve(path: str | os.PathLike, prefer: str = "best") -> Path:
    """A checkpoint directory, a run directory (its best/ or last/), or a file inside a checkpoint
    -> the checkpoint directory. `prefer` says which of a run's two to take when both exist."""
    p = Path(path)
    if not p.exists():
        aside = set_aside(p)  # a save of this very checkpoint was killed between its renames
        if aside is not None:
            return aside
        raise UserError(f"checkpoint {path} does not exist; give a run directory or a checkpoint directory")
    if p.is_file():
        if p.name in TENSOR_FILES + ("state.json",):
            p = p.parent
        else:
            raise UserError(f"{path} is not a checkpoint; give the directory that holds state.json and model.safetensors")
    if (p / "state.json").exists():
        return p
    order = ("best", "last") if prefer == "best" else ("last", "best")
    for name in order:
        if (p / name / "state.json").exists():
            return p / name
        aside = set_aside(p / name)
        if aside is not None:
            return aside
    raise UserError(f"{path} is not a checkpoint (no state.json, best/ or last/ in it); "
                    "give a run directory or a checkpoint directory")


def set_aside(path: Path) -> Path | None:
    """The previous copy of checkpoint `path`, when a save was killed between its two renames
    (the old copy moved aside, the new one not yet in place); the newest such copy, or None."""
    if path.exists():
        return None
    copies = [d / path.name for d in path.parent.glob(f".{path.name}.old-*") if (d / path.name / "state.json").exists()]
    return max(copies, key=lambda c: c.stat().st_mtime_ns) if copies else None


def read_state(path: Path) -> dict:
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"checkpoint {path} is damaged: its state.json cannot be read as JSON "
                        "(truncated?); use the run's other checkpoint or train again") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not an unrolled checkpoint (state.json has no format {FORMAT!r})")
    if state.get("version") != VERSION:
        raise UserError(f"checkpoint {path} has format version {state.get('version')}, this unrolled reads "
                        f"version {VERSION}; use the unrolled version that wrote it")
    if "checksum" in state and state["checksum"] != content_checksum(state):
        raise UserError(f"checkpoint {path} is damaged: state.json does not match its checksum (a changed or "
                        "flipped value); use the run's other checkpoint or train again")
    return state


def _load_tensors(path: Path, name: str, state: dict) -> dict[str, torch.Tensor]:
    f = path / name
    want = state.get("files", {}).get(name)
    try:
        size = f.stat().st_size
    except OSError:
        raise UserError(f"checkpoint {path} is incomplete: {name} is missing; use the run's other "
                        "checkpoint or train again") from None
    if want is not None and size != want:
        raise UserError(f"checkpoint {path} is damaged: {name} has {size} bytes, {want} were written "
                        "(truncated?); use the run's other checkpoint or train again")
    try:
        blob = f.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read checkpoint {path}: {name}: {e.strerror or e}") from None
    digest = (state.get("sha256") or {}).get(name)
    if digest is not None and hashlib.sha256(blob).hexdigest() != digest:
        raise UserError(f"checkpoint {path} is damaged: {name} does not match its SHA-256 checksum (flipped or "
                        "changed bytes); use the run's other checkpoint or train again")
    try:
        return {k: v.to("cpu") for k, v in load_bytes(blob).items()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"checkpoint {path} is damaged: {name} cannot be read ({e})") from None


def read(path: str | os.PathLike, prefer: str = "best", full: bool = True) -> Checkpoint:
    """Read a checkpoint onto the CPU; `full=False` reads model.safetensors only of the tensor files."""
    p = resolve(path, prefer)
    state = read_state(p)
    model = _load_tensors(p, "model.safetensors", state)
    if not full:
        return Checkpoint(p, state, model)
    return Checkpoint(p, state, model, _load_tensors(p, "optimizer.safetensors", state),
                      _load_tensors(p, "state.safetensors", state))
