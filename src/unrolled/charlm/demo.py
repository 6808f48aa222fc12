"""The main job in one command: train a small character model, sample from it, draw its curves.

With no text given it trains on the default corpus (Python source of this interpreter's standard
library, see `unrolled.charlm.text.default_corpus`), so it runs anywhere with nothing to download. It
stops after a few minutes of wall-clock time, then prints two samples and says where the run
directory, checkpoints and loss curve are.

The first sample uses the settings measured to read most like the corpus after a few minutes of
training (benchmarks/demo_sampling.py: nucleus sampling, top-p 0.95 at temperature 1; lower
temperatures collapse into runs of spaces and repeated lines); the second is the model's own
distribution, temperature 1 with nothing cut.
"""
from __future__ import annotations

from pathlib import Path

from unrolled.charlm.run import load
from unrolled.charlm.trainer import train
from unrolled.charlm.plot import plot
from unrolled.charlm.sample import sample

# The two samples the demo prints: the first as measured to read best, the second unfiltered.
SAMPLES = {"top-p 0.95": {"temperature": 1.0, "top_p": 0.95}, "temperature 1.0": {"temperature": 1.0}}


def demo(minutes: float = 3.0, out: str | None = None, paths: list[str] | None = None,
         seed: int = 1337, progress: bool = True, verbose: bool = False) -> dict:
    """Train, sample, plot; -> the run directory, its metrics, the samples and the plot's path.
    Runs on torch's current thread count (the CLI sets it from --threads or the idle cores)."""
    # One layer of 256: of the sizes tried, the lowest test bits/char after 3 minutes on the default
    # corpus (docs/training.md#the-demos-model-3-minutes).
    result = train(paths=list(paths or []), out=out, cell="lstm", hidden_size=256, num_layers=1,
                   embedding_size=32, batch_size=32, seq_len=100,
                   val_fraction=0.05, test_fraction=0.05,
                   max_minutes=minutes, eval_every=200, eval_max_chars=100_000, seed=seed,
                   progress=progress, verbose=verbose)
    model = load(result.run_dir)
    samples = {}
    for name, options in SAMPLES.items():
        text = sample(model, length=400, prime="" if paths else "def ", seed=seed, **options)
        samples[name] = text
        print(f"\n--- sample, {name} (seed {seed}) ---\n{text}\n")
    png = plot(result.run_dir)
    run = Path(result.run_dir)
    print(f"test bits per character: {result.metrics.get('test_bpc', float('nan')):.3f}")
    print(f"checkpoints:     {run / 'best'} (best by validation), {run / 'last'}")
    print(f"metrics:         {run / 'metrics.jsonl'}")
    print(f"loss curve:      {png}")
    print(f"sample more:     unrolled sample {run} --top-p 0.95 --length 1000")
    return {"run_dir": str(run), "metrics": result.metrics, "samples": samples, "plot": str(png)}
