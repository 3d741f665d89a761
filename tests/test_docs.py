"""The documentation site: it builds strictly, and every ```python block in it runs.

Each page's ```python blocks run in order in one namespace (a page is one session); a block
with ``>>>`` prompts is a doctest whose shown output must match, any other block is executed
as a script. ```bash / ```console / ```text blocks are not run.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
NUMBER = re.compile(r"-?\d+\.\d+|-?\d+")


def python_blocks(page: str) -> list[str]:
    return BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))


def run_page(page: str) -> int:
    """Run every python block of ``page``; the number of doctest examples checked."""
    namespace: dict[str, Any] = {"__name__": f"docs/{page}"}
    checked = 0
    for i, block in enumerate(python_blocks(page)):
        name = f"docs/{page} block {i + 1}"
        if ">>>" not in block:
            exec(compile(block, name, "exec"), namespace)
            continue
        test = doctest.DocTestParser().get_doctest(block, namespace, name, str(DOCS / page), 0)
        runner = doctest.DocTestRunner(optionflags=FLAGS)
        out: list[str] = []
        runner.run(test, out=out.append, clear_globs=False)
        namespace.update(test.globs)  # the next block sees this one's names
        assert runner.failures == 0, f"{name}:\n" + "".join(out)
        checked += runner.tries
    return checked


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)])
def test_page_code_runs_and_shows_what_it_says(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # anything a page writes stays out of the repository
    with warnings.catch_warnings():
        # a Chinese page on a machine without a CJK font draws English labels, and says so
        warnings.filterwarnings("ignore", message="no font with Chinese glyphs")
        assert run_page(page) >= 1


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = re.findall(r":\s+([\w/-]+\.md)\s*$", config, re.M)
    assert sorted(nav) == PAGES
    # the pages other branches write are in the nav already
    for page in ("troubleshooting.md", "distributed.md", "transformers.md"):
        assert page in nav
    assert "classifier-solvers.md" in nav


def test_every_image_exists() -> None:
    for page in PAGES:
        text = (DOCS / page).read_text(encoding="utf-8")
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text):
            assert (DOCS / page).parent.joinpath(target).is_file(), (page, target)


def _code(block: str) -> list[str]:
    """A block's code lines, without comments and ``lang="zh"`` arguments."""
    code = [line for line in block.splitlines() if line.startswith((">>> ", "... "))]
    return [re.sub(r',? ?lang="zh"|\s+#.*$', "", line) for line in code]


def _numbers(block: str) -> list[str]:
    """The numbers a block's doctests show."""
    shown = [line for line in block.splitlines() if not line.startswith((">>> ", "... "))]
    return sorted(NUMBER.findall("\n".join(shown)))


def test_chinese_tutorial_shares_the_code_and_the_numbers() -> None:
    en, zh = python_blocks("tutorial.md"), python_blocks("zh/tutorial.md")
    assert len(en) == len(zh) >= 10
    for a, b in zip(en, zh, strict=True):
        assert _code(a) == _code(b)
        assert _numbers(a) == _numbers(b)
    # the classic example's numbers, as the blog post gives them
    text = (DOCS / "zh/tutorial.md").read_text(encoding="utf-8")
    for number in ("0.6652", "0.2447", "0.09", "0.4076", "0.5881", "2.3026"):
        assert number in text


@pytest.mark.slow
def test_tutorial_example_prints_the_pages_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("tutorial", ROOT / "examples/tutorial.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path, "en")
    out = capsys.readouterr().out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["curves.png", "explain.png", "log-curve.png", "sweep.png", "templates.png"]
    page = (DOCS / "tutorial.md").read_text(encoding="utf-8")
    for line in out.splitlines():
        if line.startswith(("   l1", "   l2", "6.")):
            for number in NUMBER.findall(line.split(":")[-1]):
                if "." in number:
                    assert number.rstrip("0").rstrip(".") in page, (line, number)
    for number in ("2.3026", "0.6652", "0.4076", "0.5881", "2.4076", "0.0076"):
        assert number in out and number in page


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="pip install '.[docs]'")
def test_site_builds_strictly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for page in ("index.html", "tutorial/index.html", "zh/tutorial/index.html", "api/index.html"):
        assert (tmp_path / page).is_file()
    api = (tmp_path / "api/index.html").read_text(encoding="utf-8")
    for name in ("cross_entropy", "SoftmaxClassifier", "linear_cross_entropy", "render_html"):
        assert name in api
    zh = (tmp_path / "zh/tutorial/index.html").read_text(encoding="utf-8")
    assert "交叉熵" in zh and "0.4076" in zh
