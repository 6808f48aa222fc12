"""`unrolled serve`: load a checkpoint, bind a socket, and run the viewer with uvicorn.

The server binds to 127.0.0.1 unless told otherwise: it has no login, and anyone who can reach
it can make the machine run the model on any text, so it is for the person at this computer.
Requests must name this machine (Host 127.0.0.1, localhost or ::1) unless --host is something
else, so a web page elsewhere cannot reach the viewer through a name rebound to 127.0.0.1.
"""
from __future__ import annotations

import errno
import ipaddress
import socket
import sys
import threading
import webbrowser
from pathlib import Path

import torch
import uvicorn  # imported here, not in serve(): the CLI turns a missing web extra into one sentence

from unrolled.charlm.run import open_run
from unrolled.charlm.sample import sample
from unrolled.errors import UserError
from unrolled.web.app import create_app
from unrolled.web.explorer import MAX_CHARS, Explorer

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]
DEFAULT_SAMPLE_CHARS = 2_000  # with no --text, the page opens on this much of the model's own sample


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def text_files(path: str | None, max_files: int = 500) -> dict[str, Path]:
    """--text FILE or DIR -> {name a client may ask for: file}. A directory offers its text
    files (recursively, hidden ones skipped), named by their path relative to it."""
    if path is None:
        return {}
    p = Path(path)
    if p.is_file():
        return {p.name: p}
    if p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.is_file() and not any(
            part.startswith(".") for part in f.relative_to(p).parts))[:max_files]
        if not found:
            raise UserError(f"--text {path} is a directory with no files in it; give a text file or a directory of them")
        return {f.relative_to(p).as_posix(): f for f in found}
    raise UserError(f"--text {path} does not exist; give a text file or a directory of text files")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"--port {port} is already in use on {host}; pass another --port (0 picks a free one)") from None
        raise UserError(f"cannot listen on --host {host} --port {port} ({e.strerror or e}); check the address") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def build_explorer(checkpoint: str, text: str | None = None, max_chars: int | None = None, unknown: str = "error"):
    """The Explorer for a checkpoint, with its first text added; returns (explorer, text id).
    The checkpoint is read once: its weights and run record (not the optimizer)."""
    run = open_run(checkpoint)
    model, record = run.model, run.record
    if getattr(model.vocab, "byte_level", False):
        raise UserError(f"{checkpoint} models bytes; the viewer needs a character-level model")
    config = record.config or {}
    info = {"checkpoint": run.name, "step": record.step,
            "metrics": record.metrics.to_json() if record.metrics is not None else {},
            "best_val_bpc": record.best_val_bpc, "config": config.get("model", {}),
            "train_config": config.get("train", {}), "parameters": model.num_parameters()}
    files = text_files(text)
    explorer = Explorer(model, info=info, files=files, max_chars=max_chars or MAX_CHARS, unknown=unknown)
    if files:
        first = explorer.add_file(next(iter(files)))
    else:
        prime = "\n"
        body = sample(model, length=min(DEFAULT_SAMPLE_CHARS, explorer.max_chars - 1), prime=prime, seed=0)
        first = explorer.add_text(body, "a sample of the model (seed 0)")
    explorer.info_extra["first_text"] = first["id"]
    return explorer, first["id"]


def serve(checkpoint: str, text: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          open_browser: bool = False, max_chars: int | None = None, log_level: str = "warning",
          unknown: str = "error") -> None:
    """Load `checkpoint`, then serve the viewer on host:port until interrupted."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, not {port}")
    if max_chars is not None and max_chars < 1:
        raise UserError(f"--max-chars must be a positive number of characters, not {max_chars}")
    # The viewer's matrix products are small (one step of a few dozen streams), where extra
    # intra-op threads cost more than they give, and concurrent requests already run in their
    # own worker threads: one thread each is many times faster on a busy machine.
    torch.set_num_threads(1)
    sock = bind(host, port)  # first: a port in use is reported before the model is loaded
    try:
        explorer, _ = build_explorer(checkpoint, text, max_chars, unknown)
    except BaseException:
        sock.close()
        raise
    allowed = LOOPBACK_NAMES if is_loopback(host) else None
    if allowed is None:
        print(f"unrolled serve: warning: listening on {host}, reachable from other machines; "
              "the viewer has no login", file=sys.stderr)
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{actual}/"
    app = create_app(explorer, allowed_hosts=allowed)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    print(f"unrolled serve: {url}  (model {explorer.info_extra['checkpoint']}, Ctrl-C stops)", flush=True)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
