"""Bad input, fuzzed with Hypothesis: texts of every kind through train, eval and sample, and every
flag of train, sample and eval over its whole range (and beyond it). Every case must end in a
result (exit 0) or one clear error (exit 2, one line on stderr starting "unrolled: error:");
an exception escaping `cli.main` is a traceback, and fails the test."""
from __future__ import annotations

import shutil
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_reliability_report import report
from unrolled import cli

TINY = ["--hidden-size", "4", "--num-layers", "1", "--embedding-size", "2", "--batch-size", "1", "--seq-len", "2",
        "--max-steps", "1", "--max-epochs", "1", "--warmup-steps", "0", "--device", "cpu", "--quiet"]
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                    database=None)


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    """A tiny model of a small alphabet, to evaluate and sample with."""
    d = tmp_path_factory.mktemp("fuzzmodel")
    (d / "t.txt").write_text("abc ab\nca\r\n" * 40, encoding="utf-8")
    assert cli.main(["train", str(d / "t.txt"), "--out", str(d / "run"), *TINY]) == 0
    return d / "run"


def ends_well(capsys, argv) -> int:
    """Run one command; it must end with exit 0, or exit 2 and one line on stderr."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err[-500:])
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("unrolled: error: "), (argv, err[-1000:])
    return code


# --- texts -----------------------------------------------------------------------------------------
def _texts():
    return st.one_of(
        st.tuples(st.just("any Unicode"), st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass"))),
        st.tuples(st.just("empty"), st.just(b"")),
        st.tuples(st.just("one character"), st.characters(exclude_categories=["Cs"]).map(lambda c: c.encode())),
        st.tuples(st.just("CRLF line ends"), st.lists(st.text(alphabet="ab é\t", max_size=20), min_size=1, max_size=30)
                  .map(lambda lines: "\r\n".join(lines).encode())),
        st.tuples(st.just("NUL bytes"), st.text(alphabet="ab\x00", min_size=1, max_size=200).map(
            lambda s: (s + "\x00").encode())),
        st.tuples(st.just("invalid UTF-8"), st.binary(min_size=1, max_size=300).map(lambda b: b + b"\xff\xc3")),
        st.tuples(st.just("very long line"), st.integers(20_000, 120_000).map(lambda n: (b"abc " * (n // 4 + 1))[:n])),
    )


def test_any_text_trains_or_is_refused(tmp_path, capsys):
    seen, outcomes = Counter(), Counter()

    @settings(SETTINGS, max_examples=30)
    @given(case=_texts(), byte_level=st.booleans())
    def case(case, byte_level):
        kind, data = case
        d = tmp_path / f"c{sum(seen.values())}"
        d.mkdir()
        (d / "text.txt").write_bytes(data)
        argv = ["train", str(d / "text.txt"), "--out", str(d / "run"), *TINY] + (["--byte-level"] if byte_level else [])
        outcomes[ends_well(capsys, argv)] += 1
        seen[kind] += 1
        shutil.rmtree(d)

    case()
    for kind, n in sorted(seen.items()):
        report("fuzzed input", f"train on a text: {kind}", n, "trained, or one sentence (exit 2)")
    assert outcomes[0] and outcomes[2]  # both endings happened: the fuzzing reached both sides


def test_any_text_evaluates_or_primes_or_is_refused(model_run, tmp_path, capsys):
    seen = Counter()

    @settings(SETTINGS, max_examples=30)
    @given(case=_texts())
    def case(case):
        kind, data = case
        f = tmp_path / "text.txt"
        f.write_bytes(data)
        ends_well(capsys, ["eval", str(model_run), str(f)])
        ends_well(capsys, ["sample", str(model_run), "--prime-file", str(f), "--length", "3", "--seed", "1"])
        prime = data.decode("utf-8", "surrogateescape")  # what the shell would give as argv
        if "\x00" not in prime:  # argv cannot hold a NUL
            ends_well(capsys, ["sample", str(model_run), f"--prime={prime[:2_000]}", "--length", "3", "--seed", "1"])
        seen[kind] += 1

    case()
    for kind, n in sorted(seen.items()):
        report("fuzzed input", f"eval, sample --prime-file, --prime with a text: {kind}", n,
               "scored / sampled, or one sentence (exit 2)")


# --- every flag of train, sample and eval ------------------------------------------------------------
def _actions(command: str):
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command").choices[command]
    return [a for a in sub._actions if a.option_strings and a.option_strings[0] != "-h"]


PLAIN = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["nan", "inf", "-inf", "1e999", "-0.0", "1e-320", "0x10", "1_000"]))
WHOLE = st.one_of(st.integers(-3, 0), st.integers(1, 4), st.sampled_from([2**31, 2**63, 10**30, -(10**30)])).map(str)
# Flags whose large valid values are real work (a run that long, a sample that long) get small
# valid values here; every one still gets its invalid side and the values past int64.
SMALL = st.one_of(st.integers(-3, 0), st.integers(1, 6)).map(str)
BOUNDED = {("sample", "--length"): SMALL,  # any length is valid: 10**30 characters would take that long
           ("sample", "--num-samples"): st.one_of(SMALL, st.sampled_from(["100001", str(2**63), str(10**30)]))}
# --out writes: keep it inside the test's folder (relative names, no '..').
RELATIVE = PLAIN.filter(lambda s: not s.startswith(("/", "~")) and ".." not in s)


def _values(command: str, action):
    if action.nargs == 0:  # a switch: present or not
        return st.just(None)
    if (command, action.option_strings[0]) in BOUNDED:
        return BOUNDED[(command, action.option_strings[0])]
    if action.choices:
        return st.one_of(st.sampled_from(list(action.choices)), PLAIN)
    if action.option_strings[0] == "--out":
        return RELATIVE
    if action.option_strings[0] == "--device":
        return st.one_of(st.sampled_from(["auto", "cpu", "cpu:0", "cuda", "cuda:3", "meta", "mps", "xla", ""]), PLAIN)
    if action.type is int:
        return st.one_of(WHOLE, PLAIN, NUMBERS)
    if action.type is float:
        return st.one_of(NUMBERS, WHOLE, PLAIN)
    return PLAIN


COMMANDS = ("train", "sample", "eval")
FLAGS = [(c, a.option_strings[0]) for c in COMMANDS for a in _actions(c)]


def test_every_flag_has_a_strategy():
    assert len(FLAGS) > 50  # train alone has one flag per config field
    for command, flag in FLAGS:
        action = next(a for a in _actions(command) if a.option_strings[0] == flag)
        assert _values(command, action) is not None


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_over_its_range(model_run, tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)  # --out names and runs/<date> land here
    text = tmp_path / "text.txt"
    text.write_text("abc ab\nca\r\n" * 30, encoding="utf-8")
    base = {"train": ["train", str(text), *TINY],
            "sample": ["sample", str(model_run), "--length", "3", "--seed", "1"],
            "eval": ["eval", str(model_run), str(text)]}[command]
    actions = _actions(command)
    counts, ends = Counter(), Counter()

    @settings(SETTINGS, max_examples=4 * len(actions))
    @given(data=st.data())
    def case(data):
        action = data.draw(st.sampled_from(actions))
        flag = action.option_strings[0]
        value = data.draw(_values(command, action))
        argv = [*base, flag] + ([] if value is None else [value])
        if command == "train" and "--out" != flag:
            argv += ["--out", f"run{sum(counts.values())}"]
        try:
            code = ends_well(capsys, argv)
        except SystemExit as e:  # argparse refusing a value: its own one-line error
            assert e.code == 2, (argv, e.code)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "error: " in err, err
            code = 2
        counts[flag] += 1
        ends[code] += 1

    case()
    report("fuzzed input", f"every flag of `unrolled {command}` ({len(actions)} flags), values in and out of range",
           sum(counts.values()), f"{ends[0]} ran, {ends[2]} refused in one line (exit 2)")
