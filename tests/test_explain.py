"""``crossent explain`` and ``crossent.explain``: every number shown equals the library's."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crossent
from crossent import reference
from crossent.cli import main
from crossent.explain import explain, format_number, format_text, render_html

SEED = [10.0, 9.0, 8.0]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["explain", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(text: str) -> dict[str, list[str]]:
    """The table's rows by first cell, header included (key 'class')."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class "))
    rows = {}
    for line in lines[start:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def fmt3(x: float) -> str:
    return format_number(x, 3)


# ---------------------------------------------------------------- the seed's example


def test_default_is_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys)
    assert code == 0
    assert err == ""
    assert "scores: cat 10, dog 9, horse 8; target: cat (class 0)" in out
    rows = table_rows(out)
    assert rows["class"] == ["score", "shifted", "exp", "p", "-log", "p", "target", "p", "-", "y"]
    # the seed's numbers
    assert [rows[c][3] for c in ("cat", "dog", "horse")] == ["0.665", "0.245", "0.090"]
    assert "loss = -log p(cat) = -log 0.665 = 0.408" in out
    assert "exp(10000) is inf in float64" in out
    assert "Right but unsure" in out


@pytest.mark.parametrize(
    ("argv", "scores", "target"),
    [
        ((), SEED, 0),
        (("10", "9", "8", "--target", "0", "--classes", "cat", "dog", "horse"), SEED, 0),
        (("10", "9", "8", "--target", "horse"), SEED, 2),
        (("1", "-2", "0.5", "4", "--target", "2"), [1.0, -2.0, 0.5, 4.0], 2),
        (("3", "0", "--classes", "yes", "no", "--target", "no"), [3.0, 0.0], 1),
    ],
)
def test_table_numbers_are_the_librarys(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], scores: list[float], target: int
) -> None:
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    x = np.array(scores)
    p = crossent.softmax(x)
    logp = crossent.log_softmax(x)
    grad = crossent.cross_entropy_grad(x, target)
    rows = table_rows(out)
    names = [n for n in rows if n not in ("class", "sum")]
    assert len(names) == len(scores)
    for c, name in enumerate(names):
        score, shifted, e, pc, nlp, tgt, g = rows[name]
        assert score == fmt3(x[c])
        assert shifted == fmt3(x[c] - x.max())
        assert e == format_number(np.exp(x[c] - x.max()), 3, tiny=True)
        assert pc == format_number(p[c], 3, tiny=True)
        assert nlp == fmt3(-logp[c])
        assert tgt == ("1" if c == target else "0")
        assert g == fmt3(grad[c])
    assert rows["sum"] == [fmt3(np.exp(x - x.max()).sum()), "1.000", "1", "0.000"]
    loss = crossent.cross_entropy(x, target)
    assert f"= {fmt3(loss)}\n" in out


def test_numbers_of_the_seed_explanation() -> None:
    ex = explain()
    np.testing.assert_allclose(
        ex.probs, [0.6652409557748219, 0.2447284710547976, 0.09003057317038046]
    )
    assert ex.loss == pytest.approx(0.4076059644443804, rel=1e-15)
    assert ex.loss == crossent.cross_entropy(SEED, 0)
    np.testing.assert_array_equal(ex.probs, crossent.softmax(SEED))
    np.testing.assert_array_equal(ex.grad, crossent.cross_entropy_grad(SEED, 0))
    np.testing.assert_allclose(ex.grad, ex.probs - [1, 0, 0], atol=1e-16)
    assert ex.sum_exp == pytest.approx(1 + np.exp(-1) + np.exp(-2))
    assert ex.classes == ("cat", "dog", "horse")
    assert ex.plain


# ---------------------------------------------------------------- JSON, options, consistency

OPTION_CASES: list[tuple[list[str], dict[str, Any], Any]] = [
    ([], {}, 0),
    (["--target", "dog"], {}, 1),
    (["--weight", "1", "2", "3"], {"weight": [1.0, 2.0, 3.0]}, 0),
    (["--label-smoothing", "0.2", "--target", "2"], {"label_smoothing": 0.2}, 2),
    (["--temperature", "2.5"], {"temperature": 2.5}, 0),
    (["--z-loss", "0.01", "--target", "1"], {"z_loss": 0.01}, 1),
    (["--softcap", "3"], {"softcap": 3.0}, 0),
    (["--probs", "0.2", "0.5", "0.3"], {}, [0.2, 0.5, 0.3]),
    (
        ["--probs", "0.7", "0", "0.3", "--weight", "2", "1", "0.5", "--label-smoothing", "0.1",
         "--temperature", "0.7", "--softcap", "5", "--z-loss", "0.001"],
        {"weight": [2.0, 1.0, 0.5], "label_smoothing": 0.1, "temperature": 0.7,
         "softcap": 5.0, "z_loss": 0.001},
        [0.7, 0.0, 0.3],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "opts", "target"), OPTION_CASES)
def test_json_equals_library(
    capsys: pytest.CaptureFixture[str], argv: list[str], opts: dict[str, Any], target: Any
) -> None:
    code, out, _ = run_cli(capsys, "--json", *argv)
    assert code == 0
    d = json.loads(out)
    tgt = np.array(target) if isinstance(target, list) else target
    loss = crossent.cross_entropy(SEED, tgt, reduction="sum", **opts)
    grad = crossent.cross_entropy_grad(SEED, tgt, reduction="sum", **opts)
    assert d["scores"] == SEED
    assert d["target"] == target
    assert d["loss"] == loss
    assert d["mean_loss"] == crossent.cross_entropy(SEED, tgt, **opts)
    assert d["grad"] == grad.tolist()
    z = np.array(d["logits"])
    # the logits shown are the ones the loss uses: their plain cross-entropy is the same
    if not opts.get("z_loss"):
        plain = {k: v for k, v in opts.items() if k in ("weight", "label_smoothing")}
        assert crossent.cross_entropy(z, tgt, reduction="sum", **plain) == pytest.approx(loss)
    assert d["probs"] == crossent.softmax(z).tolist()
    assert d["log_probs"] == crossent.log_softmax(z).tolist()
    assert sum(d["terms"]) + d["z_term"] == pytest.approx(loss, rel=1e-12)
    assert d["z_term"] == pytest.approx(opts.get("z_loss", 0.0) * float(crossent.logsumexp(z)) ** 2)
    assert d["penalty"] is None and d["objective"] is None
    assert d["options"]["temperature"] == opts.get("temperature", 1.0)


def test_json_penalty_and_objective(capsys: pytest.CaptureFixture[str]) -> None:
    w = [0.5, -1.2, 2.0]
    for kind in ("l1", "l2", "elasticnet"):
        argv = ["--json", "--penalty", kind, "--alpha", "0.1", "--weights", *map(str, w)]
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0
        d = json.loads(out)
        value = crossent.penalty(np.array(w), kind, alpha=0.1)
        assert d["penalty"]["kind"] == kind
        assert d["penalty"]["value"] == value
        assert d["penalty"]["grad"] == crossent.penalty_grad(np.array(w), kind, 0.1)[0].tolist()
        assert d["objective"] == crossent.cross_entropy(SEED, 0) + value
    assert crossent.l2_penalty(w, 0.1) == pytest.approx(0.5 * 0.1 * (0.25 + 1.44 + 4.0))


def test_text_with_penalty_shows_the_objective(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--penalty", "l2", "--alpha", "0.1", "--weights", "1", "-2")
    assert code == 0
    value = crossent.l2_penalty([1.0, -2.0], 0.1)
    loss = crossent.cross_entropy(SEED, 0)
    assert f"alpha·½·sum w² = {fmt3(value)}" in out
    assert f"objective = loss term + regularization term = {fmt3(loss)} + {fmt3(value)} = " in out
    line = next(t for t in out.splitlines() if t.startswith("objective = "))
    assert line.endswith(f" = {fmt3(loss + value)}")


def test_text_with_options_shows_their_columns(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--weight", "2", "1", "3", "--temperature", "2", "--label-smoothing", "0.3"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    opts = {"weight": [2.0, 1.0, 3.0], "temperature": 2.0, "label_smoothing": 0.3}
    rows = table_rows(out)
    assert rows["class"][:2] == ["score", "z"]
    grad = crossent.cross_entropy_grad(SEED, 0, reduction="sum", **opts)
    assert [rows[c][-1] for c in ("cat", "dog", "horse")] == [fmt3(g) for g in grad]
    assert [rows[c][1] for c in ("cat", "dog", "horse")] == ["5.000", "4.500", "4.000"]
    loss = crossent.cross_entropy(SEED, 0, reduction="sum", **opts)
    assert f"= {fmt3(loss)}\n" in out
    mean = crossent.cross_entropy(SEED, 0, **opts)
    assert f"by the target's weight 2: {fmt3(mean)})" in " ".join(out.split())


@pytest.mark.parametrize(
    ("scores", "target", "verdict", "words"),
    [
        ([9.0, 0.0, 0.0], 0, "confident", "Right and confident"),
        (SEED, 0, "unsure", "Right but unsure"),
        (SEED, 2, "wrong", "Wrong: the model prefers cat"),
    ],
)
def test_reading_follows_the_seed(
    scores: list[float], target: int, verdict: str, words: str
) -> None:
    ex = explain(scores, target)
    assert ex.verdict == verdict
    assert ex.reading.startswith(words)
    assert f"{ex.loss:.3g}" in ex.reading


def test_probability_target_reads_entropy_and_kl() -> None:
    q = np.array([0.2, 0.5, 0.3])
    ex = explain(SEED, q)
    assert ex.entropy == pytest.approx(-(q * np.log(q)).sum())
    assert ex.loss == crossent.cross_entropy(SEED, q, reduction="sum")
    assert f"H(q) = {ex.entropy:.3g}" in ex.reading
    assert f"{ex.loss - ex.entropy:.3g} more (the KL divergence" in ex.reading


def test_underflowing_probability_still_gives_a_finite_loss(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(capsys, "1000", "-50", "8", "--target", "1")
    assert code == 0
    assert f"= {fmt3(crossent.cross_entropy([1000.0, -50.0, 8.0], 1))}\n" in out
    assert "underflows to 0 in float64" in out


# ---------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--weight", "1", "2"], "--weight: expected 3 values (one per class), got 2"),
        (["--weight", "1", "-2", "1"], "--weight: expected non-negative class weights, got -2"),
        (["--target", "3"], "--target: expected a class index in [0, 2] or one of the class"),
        (["--target", "zebra"], "names cat, dog, horse, got 'zebra'"),
        (["--probs", "0.5", "0.2", "0.2"], "--probs: expected probabilities summing to 1, got"),
        (["--probs", "1.5", "-0.5", "0"], "--probs: expected probabilities >= 0, got -0.5"),
        (["--probs", "0.5", "0.5"], "--probs: expected 3 values (one per class), got 2"),
        (["1", "2", "--classes", "a"], "--classes: expected 2 names (one per score), got 1"),
        (["1", "2", "--classes", "a", "a"], "--classes: expected distinct names, got a twice"),
        (["5"], "SCORES: expected at least 2 class scores, got 1"),
        (["1", "nan"], "SCORES: expected finite numbers, got nan"),
        (["--temperature", "0"], "--temperature: expected"),
        (["--label-smoothing", "1.5"], "--label-smoothing: expected"),
        (["--softcap", "-1"], "--softcap: expected"),
        (["--z-loss", "-1"], "--z-loss: expected"),
        (["--penalty", "l2"], "--weights: expected the model weights with --penalty, got none"),
        (["--weights", "1"], "--penalty: expected l1, l2 or elasticnet with --weights"),
        (["--penalty", "l1", "--weights", "1", "--alpha", "-1"], "--alpha: expected"),
        (["--penalty", "l1", "--weights", "inf"], "--weights: expected finite numbers, got inf"),
        (["--index", "3"], "--index: expected --model RUN_DIR with it"),
        (["--plot", "x.jpg"], "--plot: expected a file name ending in .png, got 'x.jpg'"),
        (["--plot", "/nonexistent/dir/x.png"], "--plot: expected an existing directory"),
        (["--html", "x.txt"], "--html: expected a file name ending in .html or .htm"),
        (["--digits", "20"], "--digits: expected an integer in [0, 12], got 20"),
        (["--model", "/nonexistent/run"], "--model: "),
    ],
)
def test_user_errors_name_the_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("crossent explain: error: ")
    assert message in err


def test_target_and_probs_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--target", "0", "--probs", "1", "0", "0"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_library_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^target: expected a class index in \[0, 2\]"):
        explain(SEED, 5)
    with pytest.raises(TypeError, match=r"^target: expected a class index or probabilities"):
        explain(SEED, True)
    with pytest.raises(ValueError, match=r"^penalty: expected one of 'l2', 'l1' or 'elasticnet'"):
        explain(penalty="l3", params=[1.0])
    with pytest.raises(ValueError, match=r"^scores: expected a 1-d sequence"):
        explain([[1.0, 2.0]])


# ---------------------------------------------------------------- the picture


def _png(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(mpimg.imread(path))


def test_plot_writes_a_sensible_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seed.png"
    code, text, err = run_cli(capsys, "--plot", str(out))
    assert code == 0
    assert "0.408" in text
    assert f"wrote {out}" in err
    img = _png(out)
    h, w = img.shape[:2]
    assert 300 <= h <= 600 and 700 <= w <= 1200, img.shape
    assert img[..., :3].std() > 0.05  # not blank
    assert 10_000 < out.stat().st_size < 150_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.png"]  # no temporary left

    # with a penalty: a third panel, and the file is replaced in place
    code, _, _ = run_cli(capsys, "--plot", str(out), "--penalty", "l1", "--weights", "1", "-2")
    assert code == 0
    assert _png(out).shape[1] > 1.3 * w
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.png"]


def test_plot_marks_the_target_and_labels_the_numbers() -> None:
    from matplotlib.collections import PathCollection
    from matplotlib.colors import to_hex

    fig = crossent.explain.plot(explain(SEED, "dog"))
    bars_ax, curve_ax = fig.axes
    colors = [to_hex(p.get_facecolor()) for p in bars_ax.patches[:3]]
    assert colors[1] != colors[0] == colors[2]
    heights = [p.get_height() for p in bars_ax.patches[:3]]
    np.testing.assert_allclose(heights, crossent.softmax(SEED))
    texts = {t.get_text() for t in bars_ax.texts}
    assert {"0.665", "0.245", "0.090"} <= texts
    (points,) = [c for c in curve_ax.collections if isinstance(c, PathCollection)]
    ((px, py),) = points.get_offsets()
    assert px == pytest.approx(crossent.softmax(SEED)[1])
    assert py == pytest.approx(crossent.cross_entropy(SEED, 1))
    assert bars_ax.get_title() and curve_ax.get_title() and curve_ax.get_legend()
    assert "loss = 1.408" in fig.get_suptitle()


# ---------------------------------------------------------------- the page (static checks)


def test_html_is_self_contained_and_starts_at_the_librarys_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "page.html"
    code, _, err = run_cli(capsys, "--html", str(out))
    assert code == 0 and f"wrote {out}" in err
    page = out.read_text(encoding="utf-8")
    for external in ("<link", "src=", "@import", "url(", "@font-face", "<iframe", "fetch("):
        assert external not in page
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"]  # a name
    p = crossent.softmax(SEED)
    assert '<output id="loss">0.408</output>' in page
    for i, pc in enumerate(p):
        assert f'<td id="p-{i}">{fmt3(pc)}</td>' in page
    data = json.loads(re.search(r'id="crossent-data">(.*?)</script>', page, re.S)[1])
    assert data["classes"] == ["cat", "dog", "horse"]
    assert data["library"]["loss"] == crossent.cross_entropy(SEED, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]


def test_html_escapes_class_names() -> None:
    page = render_html(explain([1.0, 2.0], 0, classes=["<b>", "</script>"]))
    assert "<b>" not in page.split("<body>")[1].split("<script")[0]
    assert '</script>"' not in page and "<\\/script>" in page


# ---------------------------------------------------------------- the rest


def test_format_text_digits(capsys: pytest.CaptureFixture[str]) -> None:
    text = format_text(explain(), digits=5)
    assert "loss = -log p(cat) = -log 0.66524 = 0.40761" in text
    code, out, _ = run_cli(capsys, "--digits", "0")
    assert code == 0
    assert table_rows(out)["dog"] == ["9", "-1", "3.7e-01", "2.4e-01", "1", "0", "0"]
    assert "loss = -log p(cat) = -log 1 = 0\n" in out


def test_help_and_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crossent", "explain", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert "--label-smoothing" in proc.stdout and "crossent explain --model" in proc.stdout


def test_import_stays_light() -> None:
    code = (
        "import sys, crossent, crossent.explain, crossent.cli.explain;"
        "bad = [m for m in ('matplotlib', 'rich', 'sklearn', 'torch') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docs_show_the_real_output(capsys: pytest.CaptureFixture[str]) -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "explain.md").read_text(encoding="utf-8")
    for argv in ((), ("--lang", "zh")):
        command = " ".join(("$ crossent explain", *argv)) + "\n"
        shown_output = page.split("```console\n" + command, 1)[1].split("```", 1)[0]
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0
        assert shown_output == out
    for name in ("explain.png", "explain-page.png"):
        assert f"]({name})" in page
        png = Path(__file__).resolve().parents[1] / "docs" / name
        assert _png(png).shape[1] >= 700
        assert png.stat().st_size < 150_000


# ---------------------------------------------------------------- a real example from a model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny digits run, trained by ``crossent train`` (or, without it, saved like it)."""
    pytest.importorskip("sklearn")
    io = pytest.importorskip("crossent.io")
    if not hasattr(io, "load_run"):
        pytest.skip("crossent.io.load_run is not available")
    out = tmp_path_factory.mktemp("run") / "digits"
    from crossent.cli import SUBCOMMANDS

    try:
        import crossent.cli.train  # noqa: F401

        have_train = "train" in SUBCOMMANDS
    except ImportError:
        have_train = False
    if have_train:
        argv = ["train", "--limit", "300", "--out", str(out), "--no-plots", "--quiet"]
        assert main([*argv, "--epochs", "30"]) == 0
    else:  # what `crossent train` writes: the model file and metrics.json with the data spec
        import json as _json
        import warnings

        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from crossent.data import DataSpec, load_dataset
        from crossent.models import SoftmaxClassifier

        spec = DataSpec(limit=300)
        ds = load_dataset(spec)
        model = make_pipeline(StandardScaler(), SoftmaxClassifier(max_iter=30, random_state=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a short fit need not converge
            model.fit(ds.X_train, ds.y_train)
        out.mkdir()
        io.save_model(model, out / "model.npz")
        metrics = {"model_file": "model.npz", "data": spec.to_dict(), "image_shape": [8, 8]}
        (out / "metrics.json").write_text(_json.dumps(metrics))
    return out


def test_model_example(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crossent.io import load_run

    run = load_run(run_dir)
    i = 7
    scores = np.asarray(run.model.decision_function(run.X_test[i : i + 1]))[0]
    y = run.classes.index(run.y_test[i])
    code, out, _ = run_cli(capsys, "--model", str(run_dir), "--index", str(i), "--json")
    assert code == 0
    d = json.loads(out)
    assert d["scores"] == scores.tolist()
    assert d["target"] == y
    assert d["loss"] == crossent.cross_entropy(scores, y, reduction="sum")
    assert d["probs"] == crossent.softmax(scores).tolist()
    assert d["grad"] == crossent.cross_entropy_grad(scores, y, reduction="sum").tolist()
    assert len(d["classes"]) == len(run.classes) == 10
    assert np.array(d["image"]).shape == (8, 8)
    assert f"test example {i} of {len(run.X_test)}" in d["source"]

    # the text: the image as characters, then the same table
    code, out, _ = run_cli(capsys, "--model", str(run_dir), "--index", str(i))
    assert code == 0
    lines = out.splitlines()
    assert sum(1 for line in lines[:12] if len(line) == 18 and line.startswith("  ")) == 8
    rows = table_rows(out)
    name = d["classes"][y]
    assert rows[name][3] == format_number(crossent.softmax(scores)[y], 3, tiny=True)
    assert f"= {fmt3(crossent.cross_entropy(scores, y))}\n" in out


def test_model_example_picture_and_errors(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "digit.png"
    code, _, _ = run_cli(capsys, "--model", str(run_dir), "--plot", str(png))
    assert code == 0
    assert _png(png).shape[1] >= 1000  # the image panel, the bars and the curve

    # the penalty defaults to the model's own weights and alpha
    from crossent.io import load_run

    run = load_run(run_dir)
    code, out, _ = run_cli(capsys, "--model", str(run_dir), "--penalty", "l2", "--json")
    assert code == 0
    d = json.loads(out)
    clf = run.classifier
    assert d["penalty"]["alpha"] == clf.alpha_  # 'auto' resolved
    assert d["penalty"]["value"] == crossent.penalty(clf.coef_.ravel(), "l2", alpha=clf.alpha_)
    assert d["objective"] == d["loss"] + d["penalty"]["value"]

    n = len(run.X_test)
    code, _, err = run_cli(capsys, "--model", str(run_dir), "--index", str(n))
    assert code == 2
    assert f"--index: expected a test example index in [0, {n - 1}], got {n}" in err
    code, _, err = run_cli(capsys, "1", "2", "--model", str(run_dir))
    assert code == 2 and "SCORES: expected no scores with --model" in err
    code, _, err = run_cli(capsys, "--model", str(tmp_path))
    assert code == 2 and "--model: cannot load the run" in err


# ---------------------------------------------------------------- languages

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?")

CASES = [
    [],
    ["10", "9", "8", "--target", "horse"],
    ["2", "1", "0.1", "--probs", "0.7", "0.2", "0.1"],
    ["1000", "0", "9", "--target", "1"],
    [
        "1",
        "3",
        "-2",
        "0.5",
        "--probs",
        "0.1",
        "0.6",
        "0",
        "0.3",
        "--weight",
        "2",
        "1",
        "0.5",
        "1.5",
        "--softcap",
        "4",
        "--z-loss",
        "0.01",
        "--temperature",
        "1.5",
        "--label-smoothing",
        "0.1",
        "--penalty",
        "elasticnet",
        "--weights",
        "1",
        "-2",
        "0.5",
    ],
    ["10", "9", "8", "--weight", "1", "2", "3", "--target", "2"],
]


@pytest.mark.parametrize("argv", CASES)
def test_chinese_text_has_the_same_numbers(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, en, _ = run_cli(capsys, *argv)
    assert code == 0
    code, zh, _ = run_cli(capsys, *argv, "--lang", "zh")
    assert code == 0
    assert zh != en
    assert "逐步计算一个样本的交叉熵" in zh and "损失" in zh
    # the same numbers (the reading may put them in another order)
    assert sorted(NUMBER.findall(zh)) == sorted(NUMBER.findall(en))
    # the columns line up in a terminal: the header (two columns per CJK character) ends
    # where the rows end
    lines = zh.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("类别"))
    wide = sum(unicodedata.east_asian_width(ch) in "WF" for ch in lines[head])
    assert len(lines[head]) + wide == len(lines[head + 1])


def test_chinese_json_has_the_same_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    _, en, _ = run_cli(capsys, "--json", "10", "9", "8", "--label-smoothing", "0.1")
    _, zh, _ = run_cli(capsys, "--json", "10", "9", "8", "--label-smoothing", "0.1", "--lang", "zh")
    en_d, zh_d = json.loads(en), json.loads(zh)
    assert zh_d.pop("reading") == explain(SEED, label_smoothing=0.1).reading_in("zh")
    en_d.pop("reading")
    assert zh_d == en_d


def test_chinese_plot_labels_and_font(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crossent.explain._plot import cjk_font

    if cjk_font() is None:
        pytest.skip("no CJK font installed (bash .ci/run installs fonts-noto-cjk)")
    fig = crossent.explain.plot(explain(), lang="zh")
    bars_ax, curve_ax = fig.axes
    assert bars_ax.get_title() == "softmax：从得分到概率"
    assert curve_ax.get_xlabel() == "目标类别的 p"
    assert "损失 = 0.408" in fig.get_suptitle()
    assert cjk_font() in bars_ax.title.get_fontfamily()
    out = tmp_path / "zh.png"
    code, _, err = run_cli(capsys, "--lang", "zh", "--plot", str(out))
    assert code == 0 and "note:" not in err
    assert _png(out)[..., :3].std() > 0.05


def test_chinese_plot_without_a_cjk_font_falls_back_to_english(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from crossent.explain import _plot

    monkeypatch.setattr(_plot, "cjk_font", lambda: None)
    with pytest.warns(UserWarning, match="fonts-noto-cjk"):
        fig = crossent.explain.plot(explain(), lang="zh")
    assert fig.axes[0].get_title() == "Softmax: scores to probabilities"
    out = tmp_path / "fallback.png"
    code, text, err = run_cli(capsys, "--lang", "zh", "--plot", str(out))
    assert code == 0 and "损失" in text  # the text stays Chinese
    assert "note: no font with Chinese glyphs found" in err and out.exists()


def test_chinese_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "zh.html"
    code, _, _ = run_cli(capsys, "--lang", "zh", "--html", str(out))
    assert code == 0
    page = out.read_text(encoding="utf-8")
    assert '<html lang="zh">' in page and '<output id="loss">0.408</output>' in page
    assert explain().reading_in("zh") in page
    assert '<option value="zh" selected>中文</option>' in page
    # the first column's words stay left-aligned like the class names under them
    assert '<th class="name" data-msg="h_class">类别</th>' in page
    assert '<td class="name" data-msg="row_sum">合计</td>' in page


def test_unknown_language_names_the_argument() -> None:
    with pytest.raises(ValueError, match="lang: expected one of 'en', 'zh', got 'fr'"):
        format_text(explain(), lang="fr")
    with pytest.raises(ValueError, match="lang: expected"):
        render_html(explain(), lang="EN")


# ---------------------------------------------------------------- the tutorial's figures


def test_tutorial_figures_draw_their_numbers() -> None:
    from matplotlib.collections import PathCollection

    from crossent.explain import (
        Curves,
        Sweep,
        plot_cases,
        plot_curves,
        plot_sweep,
        plot_templates,
    )

    cases = [explain([10.0, 5.0, 3.0], "cat"), explain(SEED, "cat"), explain(SEED, "horse")]
    (ax,) = plot_cases(cases).axes
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    got = [tuple(pc.get_offsets()[0]) for pc in points]
    want = [(c.probs[c.target_index], c.loss) for c in cases]
    np.testing.assert_allclose(got, want)
    labels = ax.get_legend_handles_labels()[1]
    assert [lab.split(":")[0] for lab in labels[1:]] == [
        "right and confident",
        "right but unsure",
        "wrong",
    ]
    with pytest.raises(ValueError, match="examples: expected class-index targets"):
        plot_cases([explain(SEED, [0.2, 0.5, 0.3])])

    sweep = Sweep(
        [1e-3, 1e-2],
        {"l1": [0.9, 0.8], "l2": [0.95, 0.9]},
        {"l1": [0.1, 0.5], "l2": [0.0, 0.0]},
        {},
    )
    acc_ax, zero_ax = plot_sweep(sweep, lang="en").axes
    assert [list(line.get_ydata()) for line in acc_ax.lines] == [[0.9, 0.8], [0.95, 0.9]]
    assert [list(line.get_ydata()) for line in zero_ax.lines] == [[0.1, 0.5], [0.0, 0.0]]
    assert acc_ax.get_xscale() == "log"

    W = np.arange(2 * 4, dtype=float).reshape(2, 4) - 3.0
    fig = plot_templates({"L1": W, "L2": -W}, (2, 2), class_names=["a", "b"])
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 4
    np.testing.assert_array_equal(images[1].get_array(), W[1].reshape(2, 2))
    assert images[0].get_clim() == (-4.0, 4.0)  # one symmetric scale per model

    run = Curves("linear", [1.0, 0.5], [0.8, 0.9], [0.7, 0.85])
    loss_ax, acc_ax = plot_curves([run]).axes
    assert list(loss_ax.lines[0].get_ydata()) == [1.0, 0.5]
    assert [list(line.get_ydata()) for line in acc_ax.lines] == [[0.7, 0.85], [0.8, 0.9]]


def test_every_language_has_every_message_with_the_same_fields() -> None:
    from crossent.explain._messages import MESSAGES

    fields = re.compile(r"\{(\w+)\}")
    en = MESSAGES["en"]
    for lang, table in MESSAGES.items():
        assert table.keys() == en.keys(), lang
        for key, text in table.items():
            assert set(fields.findall(text)) == set(fields.findall(en[key])), (lang, key)


def test_explain_is_linear_in_the_number_of_classes() -> None:
    """issue 20: 10⁵ scores once allocated a 10⁵ × 10⁵ one-hot matrix (80 GB): now O(C)."""
    import tracemalloc

    c = 100_000
    scores = np.linspace(-5.0, 5.0, c)
    tracemalloc.start()
    try:
        ex = explain(scores, c - 1, label_smoothing=0.1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * c * 8  # a few dozen vectors of C floats, never C × C
    want = reference.cross_entropy(scores, c - 1, label_smoothing=0.1, reduction="sum")
    assert ex.loss == pytest.approx(float(want), rel=1e-12)
    assert ex.terms.sum() == pytest.approx(float(want), rel=1e-12)
