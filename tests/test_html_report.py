"""pgf-report --html: the page opens in headless Chromium offline, draws every chart, and filters.

A made-up sweep whose every number is written here, so the counts and fronts are known by hand:

    vit (top1, higher is better)                      gpt2 (perplexity, lower is better)
    setting        values (seeds)  train FLOPs        setting        values (seeds)  train FLOPs
    dense          70, 72          3.0e12             dense          5               3.0e12
    1:16 srste     60, 62, 64      1.0e12             1:4 ste        12              0.8e12
    1:16 mdgf_exp  66, 68          1.5e12             1:4 srste      10, 14          1.0e12
    2:4 sdgf_geo   66              2.0e12             1:4 mdgf_exp   6, 8            1.5e12
    1:32 mdgf_exp  63              1.4e12

15 finished runs (9 vit, 6 gpt2), plus one failed and one unfinished run that draw nothing.
The 7 sparse vit runs log gradient noise. Walking up the FLOPs, the vit front (higher is
better) is srste 1:16 (62), mdgf_exp 1:32 (63), mdgf_exp 1:16 (67), dense (71): sdgf_geo's
66 at 2e12 is beaten by 67 at 1.5e12. The gpt2 front (lower is better) is ste (12),
mdgf_exp (7), dense (5); srste's 12 at 1e12 is no better than ste's 12 at 0.8e12.

The browser is Debian's chromium and chromium-driver through Selenium, never a download.
Without them these tests fail with the command that installs them; PGF_NO_BROWSER=1 skips
them instead (a machine that cannot have a browser).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from pgfsparse.cli.pgf_report import main
from pgfsparse.report.plots import FLOPS_AXIS_WITH_ZERO

RESULTS = Path(__file__).resolve().parents[1] / "results"
INSTALL = "apt-get install chromium chromium-driver"

VIT = {  # (sparsity, recipe): (values by seed, train FLOPs)
    ("dense", "dense"): ((70.0, 72.0), 3.0e12),
    ("1:16", "srste"): ((60.0, 62.0, 64.0), 1.0e12),
    ("1:16", "mdgf_exp"): ((66.0, 68.0), 1.5e12),
    ("2:4", "sdgf_geo"): ((66.0,), 2.0e12),
    ("1:32", "mdgf_exp"): ((63.0,), 1.4e12),
}
GPT2 = {
    ("dense", "dense"): ((5.0,), 3.0e12),
    ("1:4", "ste"): ((12.0,), 0.8e12),
    ("1:4", "srste"): ((10.0, 14.0), 1.0e12),
    ("1:4", "mdgf_exp"): ((6.0, 8.0), 1.5e12),
}
VIT_FRONT = [[1.0e12, 62.0], [1.4e12, 63.0], [1.5e12, 67.0], [3.0e12, 71.0]]
GPT2_FRONT = [[0.8e12, 12.0], [1.5e12, 7.0], [3.0e12, 5.0]]


# -- a made-up sweep -----------------------------------------------------------------------------
def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def write_run(sweep: Path, model, sparsity, recipe, seed, value, flops, noise: bool) -> None:
    """summary.json, status.json and metrics.jsonl (4 train and 2 eval events; 4 diagnostics when `noise`)."""
    metric, higher = ("top1", True) if model == "vit" else ("perplexity", False)
    slug = "dense" if sparsity == "dense" else "n{}m{}".format(*sparsity.split(":"))
    name = f"{model}-{slug}-{recipe}-s{seed}"
    write_json(sweep / name / "summary.json", {
        "run_name": name, "model": model, "sparsity": sparsity, "recipe": recipe, "seed": seed, "steps": 40,
        "train_flops": flops, "inference_flops": flops / 1e4, "eval_metric": metric, "eval_value": value,
        "eval_value_strict": value, "eval_higher_is_better": higher,
        "eval": {f"eval/{metric}": value, f"eval_strict/{metric}": value}, "wall_seconds": 60.0,
        "budget": {"kind": "steps", "value": 40.0}, "sweep": "grid", "status": "finished"})
    write_json(sweep / name / "status.json", {"status": "finished", "run_name": name, "sweep": "grid"})
    events = []
    for step in (10, 20, 30, 40):
        events.append({"event": "train", "step": step, "train_flops": flops * step / 40, "train/loss": 3 - step / 20})
        if step in (20, 40):
            events.append({"event": "eval", "step": step, "train_flops": flops * step / 40,
                           f"eval/{metric}": value * step / 40})
        if noise:
            events.append({"event": "diagnostics", "step": step, "train_flops": flops * step / 40,
                           "sparsity/ff/grad_abs_var": 1.0 / step, "sparsity/ff/exp_avg_sq_var": 1.0 / step ** 2})
    (sweep / name / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("html") / "grid"
    for model, table in (("vit", VIT), ("gpt2", GPT2)):
        for (sparsity, recipe), (values, flops) in table.items():
            for seed, value in enumerate(values):
                noise = model == "vit" and recipe != "dense"
                write_run(sweep, model, sparsity, recipe, seed, value, flops, noise)
    write_json(sweep / "vit-n1m64-srste-s0" / "status.json", {
        "status": "failed", "run_name": "vit-n1m64-srste-s0", "sweep": "grid", "error": "loss is NaN"})
    (sweep / "vit-n1m8-srste-s0").mkdir()
    (sweep / "vit-n1m8-srste-s0" / "metrics.jsonl").write_text(json.dumps({"event": "train", "step": 3}) + "\n")
    return sweep


@pytest.fixture(scope="module")
def page(sweep) -> Path:
    out = sweep.parent / "report"
    assert main([str(sweep), "--out", str(out), "--no-plots", "--html", "--baseline", "recipe=srste"]) == 0
    return out / "index.html"


# -- the browser ---------------------------------------------------------------------------------
def find_browser():
    """(chromium, chromedriver) paths, or None for each one missing."""
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    return chromium, shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module's tests; it may reach nothing (every host name fails to resolve)."""
    chromium, driver_path = find_browser()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    missing = [name for name, found in (("chromium", chromium), ("chromedriver", driver_path)) if not found]
    if missing or webdriver is None:
        fix = [INSTALL] if missing else []
        fix += [] if webdriver else ["pip install -e '.[dev]' (selenium)"]
        message = f"no {', '.join(missing + ([] if webdriver else ['selenium']))} for the page's browser test: "
        message += " and ".join(fix)
        if os.environ.get("PGF_NO_BROWSER") == "1":
            pytest.skip(f"{message} (skipped: PGF_NO_BROWSER=1)")
        pytest.fail(f"{message} (or set PGF_NO_BROWSER=1 to skip the browser tests)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--host-resolver-rules=MAP * ~NOTFOUND"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def opened(browser, page):
    """The made-up sweep's page, loaded once for the tests below (each leaves its filters as it found them)."""
    open_page(browser, page)
    return browser


def open_page(driver, path: Path) -> None:
    """Load the page and wait for its first drawing; the console must hold no error."""
    driver.get(path.resolve().as_uri())
    wait_for_draws(driver, 1)
    assert_no_console_error(driver)


def assert_no_console_error(driver) -> None:
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe


def draws(driver) -> int:
    return driver.execute_script("return window.pgfReport ? window.pgfReport.draws : 0") or 0


def wait_for_draws(driver, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while draws(driver) < count:
        assert time.monotonic() < deadline, "the page did not finish drawing"
        time.sleep(0.05)


# What each shown chart drew, read from plotly's SVG: per trace kind (plotly's `meta`), the markers
# (path.point) and lines (path.js-line) really on the page; the front's points from its data.
DRAWN = """
const out = {};
for (const section of ["flops", "sparsity", "curves", "noise"]) {
  out[section] = {};
  for (const gd of document.querySelectorAll("#" + section + " .js-plotly-plot")) {
    if (gd.style.display === "none") continue;
    const kinds = {};
    for (const g of gd.querySelectorAll(".scatterlayer .trace")) {
      const kind = g.__data__[0].trace.meta;
      kinds[kind] = kinds[kind] || { markers: 0, lines: 0 };
      kinds[kind].markers += g.querySelectorAll("path.point").length;
      kinds[kind].lines += g.querySelectorAll("path.js-line").length;
    }
    const front = gd.data.find((t) => t.meta === "front");
    kinds.front_points = front ? front.x.slice(0, -1).map((x, i) => [x, front.y[i]]) : [];
    kinds.ytitle = gd.layout.yaxis.title.text;
    out[section][gd.dataset.chart] = kinds;
  }
}
out.table = [...document.querySelectorAll("#table tbody tr")].map((tr) => [tr.className, tr.textContent]);
out.compare = [...document.querySelectorAll("#compare tbody tr")].map(
  (tr) => [...tr.children].map((td) => td.textContent).join(" ") + " class=" + tr.lastChild.className);
return out;
"""


def drawn(driver):
    return driver.execute_script(DRAWN)


def total(section, kind, what):
    return sum(chart.get(kind, {}).get(what, 0) for chart in section.values())


def click_filter(driver, key: str, value: str) -> None:
    """Tick or untick one filter box and wait for the redraw."""
    before = draws(driver)
    driver.find_element("css selector", f'input[data-key="{key}"][data-value="{value}"]').click()
    wait_for_draws(driver, before + 1)


# -- tests ---------------------------------------------------------------------------------------
def test_the_page_is_one_file_that_fetches_nothing(page):
    text = page.read_text()
    assert "<script src" not in text and "<link rel=\"stylesheet\"" not in text
    assert text.count("<script") == 3  # plotly.js, the data, the page's script
    data = json.loads(text.split('id="pgf-data">', 1)[1].split("</script>", 1)[0].replace("<\\/", "</"))
    assert data["counts"] == {"finished": 15, "other": 2}
    assert len(data["runs"]) == 15 and len(data["table"]["rows"]) == 9


def test_the_page_draws_a_marker_per_run_a_line_per_run_and_the_fronts_by_direction(opened, tmp_path):
    browser = opened
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0  # nothing fetched
    charts = drawn(browser)
    assert total(charts["flops"], "run", "markers") == 15  # one per finished run
    assert total(charts["flops"], "setting", "markers") == 9  # one per table row
    assert total(charts["sparsity"], "run", "markers") == 15  # dense at M/N = 1
    assert {chart: total({chart: c}, "run", "lines") for chart, c in charts["curves"].items()} == {
        "vit/eval": 9, "vit/loss": 9, "gpt2/eval": 6, "gpt2/loss": 6}
    assert [total({k: c}, "run", "lines") for k, c in charts["noise"].items()] == [7, 7]  # dense runs log none
    flops = charts["flops"]
    assert flops["vit/top1"]["front_points"] == VIT_FRONT
    assert flops["gpt2/perplexity"]["front_points"] == GPT2_FRONT
    assert "lower is better" in flops["gpt2/perplexity"]["ytitle"] and "lower" not in flops["vit/top1"]["ytitle"]
    best = [text for kind, text in charts["table"] if kind == "best"]
    assert any("gpt2" in t and "mdgf_exp" in t and "7.00" in t for t in best)  # the lowest perplexity wins
    assert any("gpt2 1:4 mdgf_exp" in row.replace("steps=40", "").replace("  ", " ") and "class=better" in row
               for row in charts["compare"]), charts["compare"]  # -5 beyond the spread 2.83: better, as lower
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hovering_a_run_names_it_with_seed_flops_and_value(opened):
    text = opened.execute_script("""
        const gd = document.querySelector('#flops [data-chart="vit/top1"]');
        const i = gd.data.findIndex((t) => t.meta === "run" && t.name.startsWith("srste 1:16"));
        Plotly.Fx.hover(gd, [{ curveNumber: i, pointNumber: 1 }]);
        const text = gd.querySelector(".hoverlayer").textContent;
        Plotly.Fx.unhover(gd);
        return text;""")
    for part in ("vit-n1m16-srste-s1", "seed 1", "train FLOPs 1.00e12", "top-1: 62.00"):
        assert part in text, text


def test_filters_redraw_the_charts_tables_and_front(opened):
    browser = opened
    click_filter(browser, "recipe", "srste")
    charts = drawn(browser)
    assert total(charts["flops"], "run", "markers") == 10  # 3 vit and 2 gpt2 srste runs gone
    assert total(charts["sparsity"], "run", "markers") == 10
    assert total(charts["curves"], "run", "lines") == 2 * 10
    assert total(charts["noise"], "run", "lines") == 2 * 4
    assert len(charts["table"]) == 7  # the two srste settings gone
    assert len(charts["compare"]) == 3 and not any("srste" in row.split(" ")[2] for row in charts["compare"])
    assert charts["flops"]["vit/top1"]["front_points"] == VIT_FRONT[1:]  # the front of what is shown
    click_filter(browser, "model", "gpt2")
    charts = drawn(browser)
    assert list(charts["flops"]) == ["vit/top1"] and total(charts["flops"], "run", "markers") == 6
    assert set(charts["curves"]) == {"vit/eval", "vit/loss"}
    click_filter(browser, "model", "gpt2")
    click_filter(browser, "recipe", "srste")
    assert total(drawn(browser)["flops"], "run", "markers") == 15
    assert_no_console_error(browser)


def test_the_cifar10_results_page_draws_every_finished_run(browser, tmp_path):
    summaries = [json.loads(p.read_text()) for p in (RESULTS / "cifar10").rglob("summary.json")]
    assert main([str(RESULTS / "cifar10"), "--out", str(tmp_path), "--no-plots", "--html"]) == 0
    open_page(browser, tmp_path / "index.html")
    charts = drawn(browser)
    assert total(charts["flops"], "run", "markers") == len(summaries) == total(charts["sparsity"], "run", "markers")
    assert [total({k: c}, "run", "lines") for k, c in charts["curves"].items()] == [len(summaries)] * 2
    sparse = sum(s["sparsity"] != "dense" for s in summaries)
    assert [total({k: c}, "run", "lines") for k, c in charts["noise"].items()] == [sparse] * 2


def test_a_setting_that_trained_nothing_sits_on_a_zero_tick(browser, tmp_path):
    """A magnitude prune evaluated untrained (0 FLOPs) is drawn a decade left of the rest, at a tick '0'."""
    sweep = tmp_path / "zero"
    write_run(sweep, "gpt2", "1:8", "none", 0, 170.0, 0.0, False)
    write_run(sweep, "gpt2", "1:8", "srste", 0, 5.0, 2.6e13, False)
    assert main([str(sweep), "--out", str(tmp_path / "r"), "--no-plots", "--html"]) == 0
    open_page(browser, tmp_path / "r" / "index.html")
    chart = drawn(browser)["flops"]["gpt2/perplexity"]
    assert chart["setting"]["markers"] == 2 and chart["run"]["markers"] == 2  # none dropped
    axis = browser.execute_script(
        'const gd = document.querySelector("#flops [data-chart=\'gpt2/perplexity\']");'
        "return [gd.layout.xaxis.tickvals, gd.layout.xaxis.ticktext, gd.data.map((t) => t.x[0]),"
        " gd.layout.xaxis.title.text];")
    tickvals, ticktext, xs, title = axis
    assert title == FLOPS_AXIS_WITH_ZERO  # the PNG's title, from one place
    assert ticktext[:2] == ["0", "1e13"] and tickvals[0] == pytest.approx(1e12)
    assert sorted(x for x in xs if x is not None)[0] == pytest.approx(1e12)  # 0 FLOPs drawn at the '0' tick


def test_without_plotly_html_is_a_one_line_error(sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    assert main([str(sweep), "--out", str(tmp_path), "--no-plots", "--html"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "pip install 'pgfsparse[report]'" in error
    assert not (tmp_path / "index.html").exists()
