"""Saving an example's model and applying it to a user's file, the flags every topology example has:

    --save DIR       after training, write the model to DIR (unrolled's checkpoint folder: atomic,
                     checksummed, safetensors and JSON, no pickle)
    --load DIR       skip training: use the model an earlier --save wrote to DIR
    --predict FILE   apply the model (just trained, or loaded) to every line of FILE and print one
                     JSON value per line, in order: exactly one output line per input line

With --predict after training, the result JSON line comes first, then the predictions.
"""
from __future__ import annotations

import json
import pathlib

import torch

from unrolled import store
from unrolled.errors import UserError


def add_save_arguments(ap) -> None:
    ap.add_argument("--save", default=None, metavar="DIR", help="write the trained model to this folder")
    ap.add_argument("--load", default=None, metavar="DIR",
                    help="skip training and use the model an earlier --save wrote here (needs --predict)")
    ap.add_argument("--predict", default=None, metavar="FILE",
                    help="apply the model to each line of this UTF-8 file: one JSON output per line")


def check_save_arguments(args) -> None:
    """The flags make sense together, and --save will not overwrite a folder that is not a model."""
    if args.load and not args.predict:
        raise UserError("--load needs --predict FILE: a loaded model is only used to predict")
    if args.load and args.save:
        raise UserError("give --load DIR to use a saved model or --save DIR to train one, not both")
    why = store.replace_refusal(args.save) if args.save else None  # the store's own rule, before training
    if why is not None:
        raise UserError(f"--save {args.save} exists and is not a saved model (it {why}); give --save a new "
                        "folder (or one an earlier --save wrote)")
    if args.predict:
        read_lines(args.predict)  # a bad file is named before any training


def train_or_load(args, example: str, build, predict, train) -> int:
    """An example's main after parsing: train (`train()` -> model, settings, result JSON) and
    save it with --save, or rebuild a saved one with --load (`build(settings)` -> a fresh model);
    print the result line when it trained; then, with --predict, `predict(model, settings,
    lines)` -> one JSON-able output per line, printed one per line."""
    check_save_arguments(args)
    if args.load:
        settings, weights = load_model(args.load, example)
        model = rebuild(build, settings, weights, args.load)
    else:
        model, settings, result = train()
        if args.save:
            save_model(args.save, example, settings, model)
            result["saved"] = str(args.save)
        print(json.dumps(result))
    if args.predict:
        model.eval()
        lines = read_lines(args.predict)
        with torch.no_grad():
            outputs = list(predict(model, settings, lines))
        assert len(outputs) == len(lines), "one output per input line"
        print_outputs(outputs)
    return 0


def save_model(path, example: str, settings: dict, model: dict[str, torch.Tensor] | torch.nn.Module) -> None:
    """Write the model's weights and the `settings` that rebuild it (JSON-able) to folder `path`."""
    weights = model.state_dict() if isinstance(model, torch.nn.Module) else model
    store.save(path, {"example": example, "settings": settings}, weights)


def load_model(path, example: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The settings and weights an earlier `save_model` of `example` wrote to folder `path`."""
    if not pathlib.Path(path).exists():
        raise UserError(f"--load {path}: no such folder; give the folder an earlier --save wrote")
    checkpoint = store.read(path, full=False)
    wrote = checkpoint.state.get("example")
    if wrote != example:
        what = f"a model of {wrote}.py" if wrote else "no example's model"
        raise UserError(f"--load {path} holds {what}; give it a folder that {example}.py --save wrote")
    return checkpoint.state["settings"], checkpoint.model


def rebuild(build, settings: dict, weights: dict[str, torch.Tensor], path) -> torch.nn.Module:
    """`build(settings)` with the saved weights loaded, in eval mode; a mismatch is one sentence."""
    model = build(settings)
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise UserError(f"--load {path}: the saved weights do not fit the saved settings; save the model again") from None
    return model.eval()


def read_lines(path) -> list[str]:
    """The lines of a UTF-8 file (without their line endings), or one sentence saying what is wrong."""
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"--predict {path}: no such file; give a UTF-8 text file with one input per line") from None
    except IsADirectoryError:
        raise UserError(f"--predict {path} is a folder; give a UTF-8 text file with one input per line") from None
    except UnicodeDecodeError as e:
        raise UserError(f"--predict {path} is not UTF-8 text (byte {e.start}); give a UTF-8 file") from None
    except OSError as e:
        raise UserError(f"--predict {path} cannot be read ({e.strerror}); check the file") from None
    lines = text.split("\n")  # only "\n" ends a line (str.splitlines also splits at form feeds)
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no new one
    if not lines:
        raise UserError(f"--predict {path} is empty; give it one input per line")
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def print_outputs(outputs) -> None:
    """One JSON value per line (a string, a number or null), in the order of the input lines."""
    for value in outputs:
        print(json.dumps(value, ensure_ascii=False))
