"""The interactive page in a real headless Chromium: what it shows equals the library.

The page recomputes the loss in JavaScript when a score, the target or the temperature
changes; these tests change them through the page (typing, arrow keys, the menu) and check the
displayed numbers against :func:`crossent.cross_entropy` and friends to the displayed
precision. Skipped only when Debian's ``chromium``/``chromedriver`` are not installed.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crossent
from crossent import reference
from crossent.explain import explain, format_number, write_html
from crossent.explain._messages import MESSAGES
from numgrad import reference_grad

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SEED = [10.0, 9.0, 8.0]


def fmt(x: float) -> str:
    return format_number(x, 3)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    for exe in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(exe) is None:
            pytest.skip(f"{exe} is not installed (bash .ci/run installs it)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="crossent-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,1000",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: Any, path: Path) -> None:
    driver.get(path.as_uri())
    assert driver.find_element("tag name", "body").get_attribute("data-ready") == "1"


def text(driver: Any, element_id: str) -> str:
    return str(driver.find_element("id", element_id).text)


def shown(driver: Any, prefix: str, n: int) -> list[str]:
    return [text(driver, f"{prefix}-{i}") for i in range(n)]


def type_score(driver: Any, i: int, value: str) -> None:
    box = driver.find_element("id", f"num-{i}")
    box.clear()
    box.send_keys(value)


def page_scores(driver: Any, n: int) -> list[float]:
    return [float(driver.find_element("id", f"num-{i}").get_attribute("value")) for i in range(n)]


def no_errors(driver: Any) -> None:
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    # nothing was fetched: no script, style, font or image from anywhere
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0


LANGS = ["en", "zh"]
# the first words of the reading of a wrong answer, per language
WRONG = {"en": "Wrong: the model prefers dog", "zh": "预测错误：模型更倾向于 dog"}


@pytest.mark.parametrize("lang", LANGS)
def test_seed_page_in_the_browser(driver: Any, tmp_path: Path, lang: str) -> None:
    page = write_html(explain(), tmp_path / "seed.html", lang=lang)
    open_page(driver, page)
    no_errors(driver)

    # the initial state is the seed's example, as the library computes it
    p = crossent.softmax(SEED)
    assert text(driver, "loss") == fmt(crossent.cross_entropy(SEED, 0)) == "0.408"
    assert shown(driver, "p", 3) == [fmt(v) for v in p] == ["0.665", "0.245", "0.090"]
    assert shown(driver, "grad", 3) == [fmt(v) for v in crossent.cross_entropy_grad(SEED, 0)]
    point = driver.find_element("css selector", "#curve circle.point")
    x0 = float(point.get_attribute("cx"))

    # type a new score for cat: the page recomputes, and agrees with the library
    type_score(driver, 0, "7.5")
    scores = [7.5, 9.0, 8.0]
    loss = crossent.cross_entropy(scores, 0)
    assert text(driver, "loss") == fmt(loss) == "1.964"
    assert shown(driver, "p", 3) == [fmt(v) for v in crossent.softmax(scores)]
    assert shown(driver, "nlp", 3) == [fmt(-v) for v in crossent.log_softmax(scores)]
    assert shown(driver, "grad", 3) == [fmt(v) for v in crossent.cross_entropy_grad(scores, 0)]
    assert text(driver, "reading") == explain(scores, 0).reading_in(lang)
    assert text(driver, "reading").startswith(WRONG[lang])
    # the point on the -log curve moved left (p of cat fell from 0.665 to 0.140)
    point = driver.find_element("css selector", "#curve circle.point")
    assert float(point.get_attribute("cx")) < x0
    assert point.get_attribute("data-class") == "cat"

    # move dog's slider with the keyboard: three steps of 0.1 to the right
    from selenium.webdriver.common.keys import Keys

    driver.find_element("id", "score-1").send_keys(Keys.ARROW_RIGHT * 3)
    scores = page_scores(driver, 3)
    assert scores == pytest.approx([7.5, 9.3, 8.0])
    assert text(driver, "loss") == fmt(crossent.cross_entropy(scores, 0))

    # pick another target from the menu
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "target")).select_by_visible_text("horse")
    assert text(driver, "loss") == fmt(crossent.cross_entropy(scores, 2))
    assert driver.find_element("id", "row-2").get_attribute("class") == "target"

    # an invalid score is flagged, not computed
    type_score(driver, 2, "1e")
    assert text(driver, "loss") == "?"
    assert "invalid" in driver.find_element("id", "num-2").get_attribute("class")
    type_score(driver, 2, "-3.25")
    scores = page_scores(driver, 3)
    assert scores[2] == -3.25
    assert text(driver, "loss") == fmt(crossent.cross_entropy(scores, 2))

    # tiny probabilities are written as the text and the library's formatter write them
    type_score(driver, 0, "20")
    scores = page_scores(driver, 3)
    p = crossent.softmax(scores)
    assert p[2] < 1e-4
    assert shown(driver, "p", 3) == [format_number(v, 3, tiny=True) for v in p]
    assert re.fullmatch(r"\d\.\d\de-\d\d", text(driver, "p-2"))  # 7.99e-11
    assert text(driver, "loss") == fmt(crossent.cross_entropy(scores, 2))
    no_errors(driver)

    shot = tmp_path / "seed-page.png"
    assert driver.save_screenshot(str(shot))
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] >= 600 and img.shape[1] >= 900
    assert img[..., :3].std() > 0.05


@pytest.mark.parametrize("lang", LANGS)
def test_page_with_every_option_agrees_with_the_library(
    driver: Any, tmp_path: Path, lang: str
) -> None:
    opts: dict[str, Any] = {"weight": [2.0, 1.0, 0.5, 1.5], "softcap": 4.0, "z_loss": 0.01}
    q = np.array([0.1, 0.6, 0.0, 0.3])
    x = [1.0, 3.0, -2.0, 0.5]
    ex = explain(x, q, classes=["a", "b", "c", "d"], temperature=1.5, label_smoothing=0.1, **opts)
    page = write_html(ex, tmp_path / "options.html", lang=lang)
    open_page(driver, page)
    assert text(driver, "loss") == fmt(ex.loss)

    type_score(driver, 1, "0.75")
    x = [1.0, 0.75, -2.0, 0.5]
    kw = {"temperature": 1.5, "label_smoothing": 0.1, **opts}
    assert text(driver, "loss") == fmt(crossent.cross_entropy(x, q, reduction="sum", **kw))
    grad = crossent.cross_entropy_grad(x, q, reduction="sum", **kw)
    assert shown(driver, "grad", 4) == [fmt(v) for v in grad]

    # the temperature slider: one step down (0.1), the label smoothing one step down (0.05)
    from selenium.webdriver.common.keys import Keys

    driver.find_element("id", "temperature").send_keys(Keys.ARROW_LEFT)
    driver.find_element("id", "smoothing").send_keys(Keys.ARROW_LEFT)
    kw.update(temperature=1.4, label_smoothing=0.05)
    assert text(driver, "temperature-value") == "1.4"
    assert text(driver, "loss") == fmt(crossent.cross_entropy(x, q, reduction="sum", **kw))

    # a class target instead of the distribution
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "target")).select_by_visible_text("d")
    assert text(driver, "loss") == fmt(crossent.cross_entropy(x, 3, reduction="sum", **kw))
    assert text(driver, "reading") == explain(x, 3, classes=list("abcd"), **kw).reading_in(lang)
    assert shown(driver, "p", 4) == [
        fmt(v) for v in crossent.softmax(4.0 * np.tanh(np.array(x) / 1.4 / 4.0))
    ]
    no_errors(driver)


@pytest.mark.parametrize("lang", LANGS)
def test_probability_target_page_reads_like_the_library(
    driver: Any, tmp_path: Path, lang: str
) -> None:
    q = [0.2, 0.5, 0.3]
    page = write_html(explain(SEED, q), tmp_path / "probs.html", lang=lang)
    open_page(driver, page)
    assert text(driver, "loss") == fmt(crossent.cross_entropy(SEED, np.array(q)))
    assert text(driver, "reading") == explain(SEED, q).reading_in(lang)  # entropy, KL gap
    type_score(driver, 1, "11")
    scores = [10.0, 11.0, 8.0]
    assert text(driver, "loss") == fmt(crossent.cross_entropy(scores, np.array(q)))
    assert text(driver, "reading") == explain(scores, q).reading_in(lang)
    points = driver.find_elements("css selector", "#curve circle.point")
    assert [pt.get_attribute("data-class") for pt in points] == ["cat", "dog", "horse"]
    no_errors(driver)


def test_language_switch_changes_the_words_not_the_numbers(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    page = write_html(explain(), tmp_path / "switch.html")
    open_page(driver, page)
    type_score(driver, 0, "7.5")
    numbers = {k: shown(driver, k, 3) for k in ("p", "nlp", "grad")}
    loss = text(driver, "loss")
    Select(driver.find_element("id", "lang")).select_by_value("zh")
    ex = explain([7.5, 9.0, 8.0], 0)
    assert driver.find_element("tag name", "html").get_attribute("lang") == "zh"
    assert text(driver, "reading") == ex.reading_in("zh")
    assert "逐步计算" in driver.find_element("tag name", "h1").text
    assert driver.title == MESSAGES["zh"]["page_title"]
    assert {k: shown(driver, k, 3) for k in numbers} == numbers and text(driver, "loss") == loss
    Select(driver.find_element("id", "lang")).select_by_value("en")
    assert text(driver, "reading") == ex.reading
    assert driver.find_element("tag name", "h1").text == MESSAGES["en"]["page_h1"]
    no_errors(driver)


def test_page_formulas_equal_the_library_on_a_grid(driver: Any, tmp_path: Path) -> None:
    """The page's compute() against crossent.reference (the gradient by torch's autograd), to
    rounding, on a grid: the JavaScript cannot call crossent._algebra, so it is pinned here."""
    open_page(driver, write_html(explain(), tmp_path / "grid.html"))
    cases = []
    for scores in ([10.0, 9.0, 8.0], [-3.0, 0.0, 40.0, 2.5], [1e-3, -700.0, 5.0]):
        c = len(scores)
        targets: list[Any] = [0, c - 1, list(np.full(c, 1.0 / c))]
        for target in targets:
            for temperature in (0.3, 1.0, 2.5):
                for softcap in (None, 3.0):
                    for eps in (0.0, 0.2):
                        for z_loss in (0.0, 0.01):
                            for weight in (None, list(np.linspace(0.5, 2.0, c))):
                                o = {"temperature": temperature, "softcap": softcap}
                                o.update(eps=eps, zloss=z_loss, weight=weight)
                                cases.append((scores, target, o))
    got = driver.execute_script(
        "return arguments[0].map(function (a) {"
        "  var r = window.crossent.compute(a[0], a[1], a[2]);"
        "  return [r.loss, r.p, r.grad]; });",
        cases,
    )
    assert len(got) == len(cases) == 432
    for (scores, target, o), (loss, p, grad) in zip(cases, got, strict=True):
        tgt = np.array(target) if isinstance(target, list) else target
        kw = {
            "weight": o["weight"],
            "label_smoothing": o["eps"],
            "z_loss": o["zloss"],
            "softcap": o["softcap"],
            "temperature": o["temperature"],
        }
        want = reference.cross_entropy(scores, tgt, reduction="sum", **kw)
        assert loss == pytest.approx(float(want), rel=1e-9, abs=1e-12), (scores, target, o)
        want_grad = reference_grad(scores, tgt, reduction="sum", **kw)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-12)
        z = np.array(scores) / o["temperature"]
        if o["softcap"]:
            z = o["softcap"] * np.tanh(z / o["softcap"])
        np.testing.assert_allclose(p, crossent.softmax(z), rtol=1e-9, atol=1e-15)


def test_page_numbers_are_written_as_python_writes_them(driver: Any, tmp_path: Path) -> None:
    """The page's two number formats against the library's, on a grid of values."""
    from crossent.explain._result import _g

    open_page(driver, write_html(explain(), tmp_path / "numbers.html"))
    values = [0.0, 1.0, -2.5, 1234.56, 999.7, 999.4, 0.5004, 1e-3, 1.23456e-5, 9.996e-5]
    values += [1e-5, -3.21e-8, 7.99e-11, 2.0 / 3.0, 0.000123, 123.45, 0.099951]
    got = driver.execute_script(
        "return arguments[0].map(function (x) {"
        "  var c = window.crossent; return [c.g3(x), c.fmt(x, true), c.fmt(x, false)]; });",
        values,
    )
    want = [[_g(x), format_number(x, 3, tiny=True), format_number(x, 3)] for x in values]
    assert got == want
