"""The command line's own behaviour: help, version, missing optional dependencies."""

from __future__ import annotations

import sys

import pytest

import crossent
from crossent.cli import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"crossent {crossent.__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "explain", "bench"):
        assert command in out


def test_a_missing_optional_dependency_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "rich", None)  # `import rich` now fails
    monkeypatch.setitem(sys.modules, "rich.console", None)
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "crossent train: error: this command needs 'rich" in err
    assert "pip install 'crossent[cli]'" in err


def test_unknown_command_is_a_usage_error_in_one_line(capsys):
    assert main(["fit"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'fit'" in err and err.count("\n") == 1
