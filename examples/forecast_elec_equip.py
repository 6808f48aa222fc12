"""One-to-one and many-to-one regression: forecast next month's orders of electrical equipment.

From the previous `--window` months, predict the next one, for each of the last 24 months of
examples/data/elec_equip.csv (Eurostat's index of euro-area orders of electrical equipment,
monthly, 1995-2016, public domain: see data/README.md; `--csv FILE` for another series). Each
forecast sees the true history up to the month before it: one step ahead. Three forecasters,
scored by mean absolute error on those 24 months:

* seasonal naive:  y_hat_t = y_{t-12}            (same month last year)
* one-to-one:      y_hat_t = OneToOne(x)         (the window as one vector, no recurrence)
* many-to-one:     y_hat_t = ManyToOne(x_1..x_w) (the window read month by month by a GRU)

Both networks see the same window (standardised with the training months' mean and deviation)
and, by default, predict the change from the same month last year, y_t - y_{t-12}, which is
added back (`--target level` predicts y_t itself). They are trained on the months before the
last 24 only; each is trained from `--seeds` seeds and their forecasts are averaged. Each model
trains for `--epochs` epochs or its share of `--max-minutes`, whichever ends first. Prints one
JSON line. `--save DIR` keeps the many-to-one models; `--load DIR --predict FILE` forecasts, for
each line of FILE holding the last `--window` months (oldest first, separated by commas or
spaces), the month after them (see saved.py).

    python examples/forecast_elec_equip.py
    python examples/forecast_elec_equip.py --save forecaster
    python examples/forecast_elec_equip.py --load forecaster --predict last_months.txt
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import time

import torch

import unrolled
from corpora import DATA, run
from saved import add_save_arguments, train_or_load

TEST_MONTHS = 24


def read_series(path: str, flag: str = "--csv") -> list[float]:
    """The second column of a CSV with a header row, as floats; refuses gaps and non-numbers."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise unrolled.UserError(f"{path} does not exist; pass the series with {flag}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise unrolled.UserError(f"cannot read {path} as UTF-8 CSV ({e}); check {flag}") from None
    values = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 2 or not row[1].strip():
            raise unrolled.UserError(f"{path} line {line} has no value; fill in or remove the missing month")
        try:
            v = float(row[1])
        except ValueError:
            raise unrolled.UserError(f"{path} line {line} has the non-numeric value {row[1]!r}; "
                                     "every value must be a number") from None
        if not math.isfinite(v):
            raise unrolled.UserError(f"{path} line {line} has the value {row[1]!r}; every value must be finite")
        values.append(v)
    return values


def windows(series: torch.Tensor, w: int, targets: range) -> tuple[torch.Tensor, torch.Tensor]:
    """For each target index t: the previous w values (N, w) and y_t (N,)."""
    x = torch.stack([series[t - w:t] for t in targets])  # (N, w)
    y = torch.stack([series[t] for t in targets])  # (N,)
    return x, y


def fit(model, forward, x, y, epochs: int, lr: float, seconds: float = float("inf")) -> int:
    """Full-batch Adam on mean squared error (the series is small), for `epochs` epochs or
    `seconds`, whichever ends first -> the epochs run."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    start = time.time()
    for epoch in range(epochs):
        loss = (forward(model, x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if time.time() - start > seconds:
            return epoch + 1
    return epochs


def build(settings: dict):
    """The many-to-one models the settings describe, one per seed (their forecasts are averaged)."""
    return torch.nn.ModuleList(unrolled.ManyToOne(1, 1, settings["hidden"], settings["cell"], head="regress")
                               for _ in range(settings["seeds"])).double()


def predict(models, settings: dict, lines: list[str]) -> list[float | None]:
    """Per line (the last --window months, oldest first, separated by commas or spaces) the
    many-to-one forecast of the next month, on the series' own scale; None for an empty line."""
    w, mean, std = settings["window"], settings["mean"], settings["std"]
    out = []
    for number, line in enumerate(lines, start=1):
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        if not fields:
            out.append(None)
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(values) != w or not all(map(math.isfinite, values)):
            raise unrolled.UserError(f"line {number} of the --predict file is {line.strip()[:40]!r}; each line must "
                                     f"hold the last {w} months as finite numbers, separated by commas or spaces")
        x = (torch.tensor([values], dtype=torch.float64) - mean) / std  # (1, w)
        seasonal = x[:, -12] if settings["target"] == "seasonal_difference" else torch.zeros(1, dtype=torch.float64)
        z = torch.stack([m(x.unsqueeze(2))[:, 0] for m in models]).mean(0) + seasonal  # (1,)
        out.append((z * std + mean).item())
    return out


def train(args):
    """Train both networks from every seed, score them on the last 24 months -> (the many-to-one
    models, their settings, the result JSON)."""
    values = read_series(args.csv)
    w = args.window
    if len(values) < w + TEST_MONTHS + 12:
        raise unrolled.UserError(f"{args.csv} has {len(values)} months; it needs at least "
                                 f"{w + TEST_MONTHS + 12} for a window of {w} and {TEST_MONTHS} test months")
    series = torch.tensor(values, dtype=torch.float64)
    n, first_test = len(values), len(values) - TEST_MONTHS
    mean, std = series[:first_test].mean(), series[:first_test].std()
    z = (series - mean) / std  # standardised with training months only
    x_train, y_train = windows(z, w, range(w, first_test))
    x_test, _ = windows(z, w, range(first_test, n))
    # The seasonal-difference target: the network adds a correction to last year's same month.
    seasonal_train = x_train[:, -12] if args.target == "seasonal_difference" else torch.zeros_like(y_train)
    seasonal_test = x_test[:, -12] if args.target == "seasonal_difference" else torch.zeros(len(x_test), dtype=torch.float64)
    truth = series[first_test:]

    start = time.time()
    seasonal = series[first_test - 12:n - 12]
    settings = {"window": w, "target": args.target, "mean": mean.item(), "std": std.item(), "cell": args.cell,
                "hidden": args.hidden, "seeds": args.seeds}
    forecasters = {
        "one_to_one": (lambda: unrolled.OneToOne(w, 1, args.hidden, "rnn", head="regress"),
                       lambda m, x: m(x)[:, 0]),
        "many_to_one": (lambda: unrolled.ManyToOne(1, 1, args.hidden, args.cell, head="regress"),
                        lambda m, x: m(x.unsqueeze(2))[:, 0]),
    }
    mae = {"seasonal_naive": (seasonal - truth).abs().mean().item()}
    per_seed, epochs_run, trained = {}, {}, {}
    share = args.max_minutes * 60 / (len(forecasters) * args.seeds)  # seconds per model
    for name, (build_one, forward) in forecasters.items():
        forecasts, epochs_run[name], trained[name] = [], [], []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = build_one().double()
            epochs_run[name].append(fit(model, forward, x_train, y_train - seasonal_train, args.epochs, args.lr, share))
            trained[name].append(model)
            with torch.no_grad():
                forecasts.append((forward(model, x_test) + seasonal_test) * std + mean)  # index scale
        mae[name] = (torch.stack(forecasts).mean(0) - truth).abs().mean().item()
        per_seed[name] = [round((f - truth).abs().mean().item(), 3) for f in forecasts]
    return torch.nn.ModuleList(trained["many_to_one"]), settings, {
        "task": "elec_equip one-month-ahead forecast", "test_months": TEST_MONTHS, "window": w,
        "target": args.target,
        "cell": args.cell, "hidden": args.hidden, "epochs": args.epochs, "seeds": args.seeds,
        "epochs_run": epochs_run,
        "mae": {k: round(v, 3) for k, v in mae.items()}, "mae_per_seed": per_seed,
        "rnn_beats_both": mae["many_to_one"] < min(mae["seasonal_naive"], mae["one_to_one"]),
        "seconds": round(time.time() - start, 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=str(DATA / "elec_equip.csv"),
                    help="monthly series CSV: a header row, then date,value rows (default: examples/data/elec_equip.csv)")
    ap.add_argument("--window", type=int, default=13, help="months the models see")
    ap.add_argument("--target", choices=["seasonal_difference", "level"], default="seasonal_difference",
                    help="predict y_t - y_{t-12} (added back) or y_t")
    ap.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="gru")
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--seeds", type=int, default=5, help="models per forecaster, averaged")
    ap.add_argument("--max-minutes", type=float, default=15.0,
                    help="training time of all the models together; each gets an equal share")
    ap.add_argument("--threads", type=int, default=1)
    add_save_arguments(ap)
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.epochs < 1:
        raise unrolled.UserError("--seeds and --epochs must be at least 1")
    if args.window < 12:
        raise unrolled.UserError(f"--window {args.window} is shorter than a year; give at least 12 months")
    torch.set_num_threads(args.threads)
    return train_or_load(args, "forecast_elec_equip", build, predict, lambda: train(args))


if __name__ == "__main__":
    run(main)
