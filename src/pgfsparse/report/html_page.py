"""The report page's HTML, style and script: html.py gathers the data, this draws it.

The script reads the JSON that html.page_data wrote into the page, builds the filter
checkboxes, and on every change redraws the tables and the plotly charts from the runs
and settings that pass all filters. It decides nothing that ranks: the best setting and
the compare readings come in the data; only the Pareto front is recomputed, of the
settings shown, by the rule of plots.pareto_front. Each chart trace says what it is in
plotly's `meta` ("run": a marker or line per run, "setting", "front", "dense"), so a test
(tests/test_html_report.py) can count what was drawn. window.pgfReport.draws counts
finished redraws; a listener can wait for it to move after a click.
"""

from __future__ import annotations

import html
import json
from typing import Any, Dict

STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222; }
header { padding: 12px 20px 4px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 18px 0 6px; }
main { padding: 0 20px 30px; }
.note { color: #555; margin: 2px 0 8px; max-width: 1100px; }
#filters { position: sticky; top: 0; z-index: 10; background: #f6f7f9; border-bottom: 1px solid #ddd;
  padding: 6px 20px; display: flex; flex-wrap: wrap; gap: 6px 22px; align-items: center; }
#filters fieldset { border: 0; padding: 0; margin: 0; }
#filters legend { font-weight: 600; float: left; margin-right: 6px; }
#filters label { margin-right: 8px; white-space: nowrap; cursor: pointer; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f6f7f9; }
td:first-child, th:first-child { text-align: left; }
tr.best td { font-weight: 600; background: #fff8dc; }
td.better { color: #1a7f37; font-weight: 600; } td.worse { color: #b42318; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 10px; }
.pair { display: flex; flex-wrap: wrap; gap: 0 12px; } .pair > section { max-width: 1300px; }
.pair .note { max-width: 640px; min-height: 4.2em; }  /* the two charts start level */
.chart { width: 640px; height: 500px; border: 1px solid #eee; }
.empty { color: #777; font-style: italic; }
pre { background: #f6f7f9; padding: 8px; white-space: pre-wrap; max-width: 1200px; }
"""

BODY = """
<header>
  <h1>pgf-report: <span id="title"></span></h1>
  <p class="note" id="summary"></p>
</header>
<nav id="filters" aria-label="filters"></nav>
<main>
  <section>
    <h2>Settings: mean &plusmn; sample std over seeds</h2>
    <p class="note" id="table-note"></p>
    <div id="table"></div>
  </section>
  <section>
    <h2>Against a baseline</h2>
    <p class="note"><label>baseline <select id="baseline"></select></label></p>
    <p class="note" id="compare-intro"></p>
    <div id="compare"></div>
  </section>
  <div class="pair">
  <section>
    <h2>Headline metric vs training FLOPs</h2>
    <p class="note">A small marker per run, a large one per setting (mean, bars: sample std over seeds); dashed and
      ringed: the Pareto front of the settings shown (the best value at equal or fewer FLOPs, by the metric's
      direction).</p>
    <div class="charts" id="flops"></div>
  </section>
  <section>
    <h2>Headline metric vs N:M sparsity</h2>
    <p class="note">A marker per run; lines join a recipe's setting means across patterns; dotted: dense.</p>
    <div class="charts" id="sparsity"></div>
  </section>
  </div>
  <section>
    <h2>Training curves</h2>
    <p class="note">A line per run against training FLOPs; colour: recipe, line style: sparsity.</p>
    <div class="charts" id="curves"></div>
  </section>
  <section>
    <h2>Gradient noise over the FF weights</h2>
    <p class="note" id="noise-note"></p>
    <div class="charts" id="noise"></div>
  </section>
  <section>
    <h2>Runs that did not finish</h2>
    <pre id="notes"></pre>
  </section>
</main>
"""

SCRIPT = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("pgf-data").textContent);
  const state = window.pgfReport = { data: data, draws: 0 };
  const chosen = {};
  for (const [key, values] of Object.entries(data.filters)) chosen[key] = new Set(values);
  const shown = (item) => Object.keys(chosen).every((k) => !(k in item.f) || chosen[k].has(item.f[k]));
  const DASHES = ["solid", "dash", "dot", "dashdot", "longdash"];
  const CONFIG = { displaylogo: false, responsive: true };
  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const unique = (values) => [...new Set(values)];

  // The rule of plots.pareto_front: walking up the FLOPs, keep each point strictly better than all before it.
  function paretoFront(points, higher) {
    const sign = higher ? 1 : -1;
    const valid = points.filter((p) => p.x != null && p.y != null && !Number.isNaN(p.y));
    valid.sort((a, b) => a.x - b.x || sign * (b.y - a.y));
    const front = [];
    let best = -Infinity;
    for (const p of valid) if (sign * p.y > best) { front.push(p); best = sign * p.y; }
    return front;
  }
  state.paretoFront = paretoFront;

  // -- filters ------------------------------------------------------------------------------------
  function buildFilters() {
    const nav = document.getElementById("filters");
    for (const [key, values] of Object.entries(data.filters)) {
      const box = el("fieldset");
      box.appendChild(el("legend", {}, key));
      for (const value of values) {
        const label = el("label");
        const input = el("input", { type: "checkbox", "data-key": key, "data-value": value });
        input.checked = true;
        input.addEventListener("change", () => {
          input.checked ? chosen[key].add(value) : chosen[key].delete(value);
          redraw();
        });
        label.appendChild(input);
        label.appendChild(document.createTextNode(" " + value));
        box.appendChild(label);
      }
      nav.appendChild(box);
    }
    if (!Object.keys(data.filters).length) nav.appendChild(el("span", { class: "empty" }, "no finished runs"));
  }

  // -- tables -------------------------------------------------------------------------------------
  function table(target, header, rows, decorate, empty) {
    const box = document.getElementById(target);
    box.replaceChildren();
    const kept = rows.filter(shown);
    if (!header.length || !kept.length) {
      box.appendChild(el("p", { class: "empty" }, header.length ? "no setting passes the filters" : empty));
      return;
    }
    const t = el("table");
    const head = el("tr");
    header.forEach((h) => head.appendChild(el("th", {}, h)));
    t.appendChild(el("thead")).appendChild(head);
    const body = t.appendChild(el("tbody"));
    for (const row of kept) {
      const tr = el("tr");
      row.cells.forEach((c) => tr.appendChild(el("td", {}, c)));
      decorate(tr, row);
      body.appendChild(tr);
    }
    box.appendChild(t);
  }

  function drawTables() {
    table("table", data.table.header, data.table.rows, (tr, row) => {
      if (row.best) { tr.className = "best"; tr.title = "the best mean of its model, sparsity and metric"; }
    }, data.table.empty.replace(/_/g, ""));
    const option = data.compare.options[document.getElementById("baseline").selectedIndex];
    document.getElementById("compare-intro").textContent = option ? option.intro :
      "No setting has a baseline: no table column has settings that differ only in it (and the budget).";
    table("compare", option ? option.header : [], option ? option.rows : [], (tr, row) => {
      const last = tr.lastChild;
      if (row.reading === "better" || row.reading === "worse") last.className = row.reading;
    }, "none");
  }

  // -- charts -------------------------------------------------------------------------------------
  function chart(section, key) {
    const box = document.getElementById(section);
    let div = [...box.children].find((d) => d.dataset.chart === key);
    if (!div) {
      div = el("div", { class: "chart", "data-chart": key });
      box.appendChild(div);
    }
    return div;
  }

  function layout(title, x, y, extra) {
    const base = {
      title: { text: title, font: { size: 14 }, x: 0.01, xanchor: "left" },
      xaxis: Object.assign({ title: { text: x.title }, zeroline: false }, x.axis || {}),
      yaxis: Object.assign({ title: { text: y.title }, zeroline: false }, y.axis || {}),
      margin: { l: 64, r: 16, t: 44, b: 10 },
      hovermode: "closest",
      hoverlabel: { align: "left" },
      legend: { font: { size: 11 }, orientation: "h", x: 0, y: -0.2, yanchor: "top" },
      showlegend: true,
    };
    return Object.assign(base, extra || {});
  }

  function draw(div, traces, lay, visible) {
    if (!visible) {
      div.style.display = "none";
      if (div.data) Plotly.purge(div);
      return Promise.resolve();
    }
    div.style.display = "";
    if (!traces.length) {
      lay.annotations = [{ text: "no run passes the filters", showarrow: false, xref: "paper", yref: "paper",
                           x: 0.5, y: 0.5 }];
    }
    return Plotly.react(div, traces, lay, CONFIG);
  }

  const modelShown = (model) => !chosen.model || chosen.model.has(model);
  const hoverTemplate = "%{text}<extra></extra>";
  const dashOf = (keys) => { const order = unique(keys); return (k) => DASHES[order.indexOf(k) % DASHES.length]; };

  function flopsChart(panel) {
    const mine = (item) => item.model === panel.model && item.metric === panel.metric && item.flops != null;
    const runs = data.runs.filter((r) => mine(r) && shown(r));
    const settings = data.settings.filter((s) => mine(s) && shown(s));
    // A setting that trained nothing (0 FLOPs: a magnitude prune evaluated untrained) has no place on a
    // log axis: it is drawn a decade left of the smallest other value, on a tick labelled 0.
    const all = runs.map((r) => r.flops).concat(settings.map((s) => s.flops));
    const positive = all.filter((x) => x > 0);
    const zeroAt = positive.length ? Math.pow(10, Math.floor(Math.log10(Math.min(...positive))) - 1) : 1;
    const at = (x) => (x > 0 ? x : zeroAt);
    const traces = [];
    for (const s of settings) {
      const own = runs.filter((r) => r.setting === s.label);
      traces.push({
        type: "scatter", mode: "markers", meta: "run", name: s.label, legendgroup: s.label,
        x: own.map((r) => at(r.flops)), y: own.map((r) => r.value), text: own.map((r) => r.hover),
        hovertemplate: hoverTemplate, marker: { color: s.color, symbol: s.symbol, size: 7, opacity: 0.55 },
      });
      traces.push({
        type: "scatter", mode: "markers", meta: "setting", name: s.label, legendgroup: s.label, showlegend: false,
        x: [at(s.flops)], y: [s.mean], text: [s.hover], hovertemplate: hoverTemplate,
        error_y: { type: "data", array: [s.std || 0], visible: true, color: s.color, thickness: 1.2 },
        marker: { color: s.color, symbol: s.symbol, size: 13, line: { color: "white", width: 1 } },
      });
    }
    const front = paretoFront(settings.map((s) => ({ x: s.flops, y: s.mean })), panel.higher);
    if (front.length) {
      const right = at(Math.max(...settings.map((s) => s.flops)));
      traces.push({
        type: "scatter", mode: "lines+markers", meta: "front", name: "Pareto front (best at ≤ FLOPs)",
        x: [...front.map((p) => at(p.x)), right], y: [...front.map((p) => p.y), front[front.length - 1].y],
        line: { shape: "hv", dash: "dash", color: "#404040", width: 1.2 }, hoverinfo: "skip",
        marker: { symbol: "circle-open", color: "#404040", size: [...front.map(() => 20), 0], line: { width: 1.5 } },
      });
    }
    const xs = all.map((x) => Math.log10(at(x)));
    const axis = { type: "log", exponentformat: "e" };
    let title = data.axes.flops;
    if (xs.length && Math.max(...xs) - Math.min(...xs) < 0.05) {  // one FLOPs value: a narrow axis, not two decades
      axis.range = [Math.min(...xs) - 0.1, Math.max(...xs) + 0.1];
    }
    if (positive.length < all.length) {  // decades as ticks, the first one labelled 0
      const decades = [];
      for (let e = Math.round(Math.log10(zeroAt)); e <= Math.ceil(Math.max(...xs)); e++) decades.push(Math.pow(10, e));
      Object.assign(axis, { tickmode: "array", tickvals: decades,
                            ticktext: decades.map((d, i) => (i === 0 ? "0" : d.toExponential(0).replace("+", ""))) });
      title = data.axes.flops_with_zero;
    }
    return draw(
      chart("flops", panel.model + "/" + panel.metric),
      traces,
      layout(panel.model + ": " + panel.name + " vs training FLOPs",
             { title: title, axis: axis }, { title: panel.label }),
      modelShown(panel.model),
    );
  }

  function sparsityChart(panel) {
    const mine = (item) => item.model === panel.model && item.metric === panel.metric && item.ratio != null;
    const runs = data.runs.filter((r) => mine(r) && shown(r));
    const settings = data.settings.filter((s) => mine(s) && shown(s));
    const lines = unique(settings.map((s) => s.line));
    const styles = dashOf(settings.map((s) => s.style));
    const traces = [];
    const shapes = [];
    for (const line of lines) {
      const points = settings.filter((s) => s.line === line).sort((a, b) => a.ratio - b.ratio);
      const own = runs.filter((r) => r.line === line);
      const color = points[0].color;
      traces.push({
        type: "scatter", mode: "markers", meta: "run", name: line, legendgroup: line, showlegend: false,
        x: own.map((r) => r.ratio), y: own.map((r) => r.value), text: own.map((r) => r.hover),
        hovertemplate: hoverTemplate,
        marker: { color: color, symbol: own.map((r) => r.symbol), size: 7, opacity: 0.55 },
      });
      traces.push({
        type: "scatter", mode: "lines+markers", meta: "setting", name: line, legendgroup: line,
        x: points.map((s) => s.ratio), y: points.map((s) => s.mean), text: points.map((s) => s.hover),
        hovertemplate: hoverTemplate, line: { color: color, dash: styles(points[0].style) },
        error_y: { type: "data", array: points.map((s) => s.std || 0), visible: true, color: color, thickness: 1 },
        marker: { color: color, symbol: points.map((s) => s.symbol), size: 10 },
      });
      for (const s of points.filter((p) => p.ratio === 1)) {
        shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: s.mean, y1: s.mean,
                      line: { color: s.color, dash: "dot", width: 1.2 } });
      }
    }
    const ratios = unique(runs.map((r) => r.ratio).concat(settings.map((s) => s.ratio))).sort((a, b) => a - b);
    const names = (ratio) => unique(settings.concat(runs).filter((x) => x.ratio === ratio)
      .map((x) => x.sparsity)).join("/");
    return draw(
      chart("sparsity", panel.model + "/" + panel.metric),
      traces,
      layout(panel.model + ": " + panel.name + " vs N:M sparsity",
             { title: "N:M pattern (M/N on a log scale, dense = 1; sparser to the right)",
               axis: { type: "log", tickmode: "array", tickvals: ratios, ticktext: ratios.map(names) } },
             { title: panel.label }, { shapes: shapes }),
      modelShown(panel.model),
    );
  }

  function curveTraces(runs, field, valueName) {
    const seen = new Set();
    const dash = dashOf(data.curves.map((r) => r.sparsity));
    return runs.filter((r) => r[field].length).map((r) => {
      const first = !seen.has(r.setting);
      seen.add(r.setting);
      return {
        type: "scatter", mode: "lines", meta: "run", name: r.setting, legendgroup: r.setting, showlegend: first,
        x: r[field].map((p) => p[0]), y: r[field].map((p) => p[1]),
        line: { color: r.color, dash: dash(r.sparsity), width: 1.4 },
        hovertemplate: r.hover + "<br>train FLOPs %{x:.3~e}<br>" + valueName + ": %{y:.3~f}<extra></extra>",
      };
    });
  }

  function curveCharts() {
    const models = unique(data.curves.map((r) => r.model));
    const drawn = [];
    for (const model of models) {
      const all = data.curves.filter((r) => r.model === model);
      const runs = all.filter(shown);
      const first = all[0];
      if (all.some((r) => r.eval.length)) {
        drawn.push(draw(chart("curves", model + "/eval"), curveTraces(runs, "eval", first.name),
          layout(model + ": " + first.name + " during training", { title: "training FLOPs" }, { title: first.label }),
          modelShown(model)));
      }
      if (all.some((r) => r.loss.length)) {
        drawn.push(draw(chart("curves", model + "/loss"), curveTraces(runs, "loss", "train loss"),
          layout(model + ": training loss", { title: "training FLOPs" }, { title: "train loss" }), modelShown(model)));
      }
    }
    if (!models.length) document.getElementById("curves").replaceChildren(el("p", { class: "empty" },
      "no finished run has train loss or eval events"));
    return drawn;
  }

  function noiseCharts() {
    const runs = data.noise.runs.filter(shown);
    const dash = dashOf(data.noise.runs.map((r) => r.sparsity));
    document.getElementById("noise-note").textContent = data.noise.runs.length
      ? "A line per run (running mean of " + data.noise.window + " points, log scale); MDGF's fall during "
        + "training while SR-STE's stay high. Dense runs log none."
      : "No run logged diagnostics (dense runs log none).";
    if (!data.noise.runs.length) return [];
    return data.noise.panels.map((panel) => {
      const seen = new Set();
      const traces = runs.filter((r) => r.curves[panel.key]).map((r) => {
        const points = r.curves[panel.key];
        const first = !seen.has(r.setting);
        seen.add(r.setting);
        return {
          type: "scatter", mode: "lines", meta: "run", name: r.setting, legendgroup: r.setting, showlegend: first,
          x: points.map((p) => p[0]), y: points.map((p) => p[2]), customdata: points.map((p) => p[1]),
          line: { color: r.color, dash: dash(r.sparsity), width: 1.4 },
          hovertemplate: r.hover + "<br>step %{x}<br>train FLOPs %{customdata:.3~e}<br>variance %{y:.3~e}"
            + "<extra></extra>",
        };
      });
      const y = { title: "variance (log scale)", axis: { type: "log", exponentformat: "e" } };
      return draw(chart("noise", panel.key), traces, layout(panel.title, { title: "optimizer step" }, y), true);
    });
  }

  function redraw() {
    drawTables();
    const drawn = [
      ...data.panels.map(flopsChart),
      ...data.panels.map(sparsityChart),
      ...curveCharts(),
      ...noiseCharts(),
    ];
    if (!data.panels.length) {
      ["flops", "sparsity"].forEach((id) => document.getElementById(id).replaceChildren(
        el("p", { class: "empty" }, "no finished run has a metric value")));
    }
    return Promise.all(drawn).then(() => { state.draws += 1; });
  }

  // -- the page -----------------------------------------------------------------------------------
  document.getElementById("title").textContent = data.title;
  document.getElementById("summary").textContent =
    data.counts.finished + " finished runs, " + data.table.rows.length + " settings"
    + (data.counts.other ? ", " + data.counts.other + " runs that did not finish (listed at the end)" : "")
    + ". Headline: " + data.headline + (data.directions.length ? "; " + data.directions.join("; ") : "") + ".";
  document.getElementById("table-note").textContent =
    "The rows of table.md. Highlighted: the best mean of each model, sparsity and metric with more than one "
    + "setting, by the metric's direction (whether a gap exceeds the spread over seeds: the baseline table below).";
  document.getElementById("notes").textContent = data.notes || "All runs finished.";
  const select = document.getElementById("baseline");
  data.compare.options.forEach((o, i) => {
    const option = el("option", { value: String(i) }, o.baseline);
    option.selected = i === data.compare.selected;
    select.appendChild(option);
  });
  select.disabled = !data.compare.options.length;
  select.addEventListener("change", drawTables);
  buildFilters();
  state.redraw = redraw;
  redraw();
})();
"""


def render(data: Dict[str, Any], plotly_js: str) -> str:
    """The whole page: style, plotly.js, the data as JSON and the script, in one file."""
    payload = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")  # cannot end the element
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>pgf-report: {html.escape(str(data.get('title') or ''))}</title>",
            '<link rel="icon" href="data:,">',  # no favicon request
            f"<style>{STYLE}</style>",
            f"<script>{plotly_js}</script>",
            "</head><body>",
            BODY,
            f'<script type="application/json" id="pgf-data">{payload}</script>',
            f"<script>{SCRIPT}</script>",
            "</body></html>",
            "",
        ]
    )
