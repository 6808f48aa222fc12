"""The command line entry points themselves: console script, python -m, help, version, errors."""
import subprocess
import sys

import pytest

import unrolled
from unrolled import cli


def test_python_dash_m_runs_and_lists_commands():
    r = subprocess.run([sys.executable, "-m", "unrolled", "--help"], capture_output=True, text=True, check=True)
    assert "hello" in r.stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert unrolled.__version__ in capsys.readouterr().out


def test_user_error_is_one_sentence_and_exit_2(capsys, monkeypatch):
    def boom(sub):
        p = sub.add_parser("boom")
        p.set_defaults(func=lambda args: (_ for _ in ()).throw(unrolled.UserError("file x is empty; give a file with text")))

    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, boom])
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err == "unrolled: error: file x is empty; give a file with text\n"
    assert "Traceback" not in err
