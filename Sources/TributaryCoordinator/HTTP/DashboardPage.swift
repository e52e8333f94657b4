/// The coordinator's web dashboard: one self-contained HTML page (inline CSS and
/// JavaScript; no external script, style sheet, font or CDN) meant to be served at `/`.
///
/// The page polls `GET /v1/status` every 2 s, and `GET /v1/workers` when the coordinator
/// answers it (a 404 is tolerated: the table then says the list is unavailable). It shows
/// the job, progress, training and validation loss as an SVG chart, throughput, workers,
/// units, traffic and compression, rejections, timing and ETA, a U-Net job's latest sample
/// grid (`GET /v1/samples/latest.png`, fetched when a validation point appears), and a visible
/// "connection lost, retrying" banner while polling fails.
///
/// API location: by default the page asks its own origin (`/v1/status`). The query
/// parameter `api` names another base URL, e.g. `/?api=http://127.0.0.1:8080` — the
/// coordinator behind that URL must then allow the page's origin (CORS), or the page
/// must come from the same origin. Only `http:` and `https:` bases are accepted.
///
/// Everything the server sends is inserted with `textContent` / `setAttribute` (worker
/// names are chosen by volunteers): the script never assigns HTML strings.
///
/// Test hooks: `data-testid` on the chart's paths (`loss-train`, `loss-val`), the
/// version text (`version`) and the workers table body (`workers-body`).
public enum DashboardPage {
    /// A `Content-Security-Policy` to serve with the page: its inline script and styles
    /// only, no other resource; fetches to any http(s) origin (for `?api=`); images only
    /// from data: and blob: URLs (the sample grid, fetched by the script).
    public static let contentSecurityPolicy =
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' http: https:; "
        + "img-src data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    public static let html: String = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Tributary</title>
<style>
:root {
  --bg: #f4f5f7; --card: #ffffff; --fg: #1b1f24; --muted: #5d6773; --line: #d9dde3;
  --accent: #2563eb; --accent2: #d97706; --ok: #15803d; --bad: #b91c1c; --warn: #a16207;
  --bar-bg: #e5e8ec; --grid: #eceef1;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #111418; --card: #1a1e24; --fg: #e6e9ee; --muted: #97a1ad; --line: #2c323a;
    --accent: #60a5fa; --accent2: #fbbf24; --ok: #4ade80; --bad: #f87171; --warn: #facc15;
    --bar-bg: #2a3038; --grid: #242a31;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
header {
  display: flex; flex-wrap: wrap; align-items: center; gap: 8px 16px;
  padding: 14px 20px; border-bottom: 1px solid var(--line); background: var(--card);
}
header h1 { font-size: 20px; margin: 0; overflow-wrap: anywhere; }
header .model { color: var(--muted); font-size: 14px; overflow-wrap: anywhere; flex: 1 1 240px; }
.badge {
  display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 13px; font-weight: 600;
  border: 1px solid currentColor; white-space: nowrap;
}
.badge.live { color: var(--ok); }
.badge.done { color: var(--accent); }
.badge.offline { color: var(--bad); }
.badge.waiting { color: var(--muted); }
.banner {
  margin: 12px 20px 0; padding: 10px 14px; border-radius: 8px; font-weight: 600;
  background: color-mix(in srgb, var(--bad) 14%, var(--card)); color: var(--bad); border: 1px solid var(--bad);
}
.banner[hidden] { display: none; }
main {
  display: grid; gap: 14px; padding: 14px 20px 20px;
  grid-template-columns: repeat(auto-fit, minmax(250px, 1fr));
  max-width: 1400px; margin: 0 auto;
}
body.stale main { opacity: 0.6; }
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; min-width: 0;
}
.card.wide { grid-column: 1 / -1; }
.card[hidden] { display: none; }
#samples-box img { display: block; width: 100%; max-width: 360px; height: auto; image-rendering: pixelated; background: #000; }
.card h2 {
  font-size: 13px; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted); margin: 0 0 10px;
}
.progress-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 14px; }
.big { font-size: 28px; font-weight: 700; font-variant-numeric: tabular-nums; }
.muted { color: var(--muted); }
.bar { height: 12px; border-radius: 6px; background: var(--bar-bg); overflow: hidden; margin: 10px 0 8px; display: flex; }
.bar > div { height: 100%; transition: width 0.4s ease; }
#bar-fill { background: var(--accent); width: 0; }
.seg-done { background: var(--ok); }
.seg-leased { background: var(--accent2); }
.meta { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 13px; color: var(--muted); }
dl.stats { display: grid; grid-template-columns: auto 1fr; gap: 6px 14px; margin: 0; }
dl.stats dt { color: var(--muted); }
dl.stats dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
dl.stats .hidden { display: none; }
p.since { margin: -6px 0 10px; font-size: 12px; }
ul.plain { list-style: none; margin: 4px 0 0; padding: 0 0 0 12px; font-size: 13px; border-left: 2px solid var(--line); }
ul.plain:empty { display: none; }
ul.plain li { display: flex; justify-content: space-between; gap: 10px; font-variant-numeric: tabular-nums; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 13px; color: var(--muted); margin-bottom: 6px; }
.legend .key { display: inline-block; width: 18px; height: 3px; vertical-align: middle; margin-right: 6px; border-radius: 2px; }
.key.train { background: var(--accent); }
.key.val { background: var(--accent2); }
#chart-box { width: 100%; }
#chart { display: block; width: 100%; height: auto; }
#chart .grid line { stroke: var(--grid); stroke-width: 1; }
#chart .axis line, #chart .axis path { stroke: var(--muted); stroke-width: 1; }
#chart text { fill: var(--muted); font-size: 12px; font-family: inherit; }
#chart .series { fill: none; stroke-width: 2; stroke-linejoin: round; stroke-linecap: round; }
#chart .series.train { stroke: var(--accent); }
#chart .series.val { stroke: var(--accent2); stroke-dasharray: 6 4; }
#chart circle.val { fill: var(--accent2); }
#chart .empty { font-size: 14px; }
.table-wrap { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-size: 14px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: 0.04em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.name { max-width: 260px; overflow: hidden; text-overflow: ellipsis; }
td.note { color: var(--muted); white-space: normal; }
.dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 6px; background: var(--muted); }
.dot.on { background: var(--ok); }
footer { padding: 0 20px 20px; font-size: 12px; color: var(--muted); max-width: 1400px; margin: 0 auto; overflow-wrap: anywhere; }
@media (max-width: 600px) {
  body { font-size: 14px; }
  header { padding: 10px 12px; }
  header h1 { font-size: 18px; }
  .banner { margin: 10px 12px 0; }
  main { padding: 10px 12px 14px; gap: 10px; grid-template-columns: 1fr; }
  .card { padding: 12px; }
  .big { font-size: 22px; }
  th, td { padding: 5px 6px; }
  .wide-only { display: none; }
  td.name { max-width: 170px; }
  footer { padding: 0 12px 14px; }
}
</style>
</head>
<body class="stale">
<header>
  <h1 id="job">Tributary</h1>
  <span class="model" id="model">connecting…</span>
  <span class="badge waiting" id="badge">connecting</span>
</header>
<div class="banner" id="banner" role="alert" hidden>Connection lost, retrying…</div>
<form class="banner" id="token-form" data-testid="token-form" hidden>
  <label for="token-input">This job is private. Viewer token:</label>
  <input id="token-input" type="password" autocomplete="off" spellcheck="false">
  <button type="submit">Show</button>
</form>
<main>
  <section class="card wide" aria-labelledby="h-progress">
    <h2 id="h-progress">Progress</h2>
    <div class="progress-head">
      <span class="big" data-testid="version" id="version">–</span>
      <span id="round-text" class="muted"></span>
    </div>
    <div class="bar" id="bar" role="progressbar" aria-label="rounds done" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0"><div id="bar-fill"></div></div>
    <div class="meta">
      <span id="percent"></span><span id="epoch"></span><span id="mode"></span><span id="params"></span><span id="checkpoint"></span>
    </div>
  </section>

  <section class="card wide" aria-labelledby="h-loss">
    <h2 id="h-loss">Loss</h2>
    <div class="legend">
      <span><span class="key train"></span>training <b id="loss-train-now"></b></span>
      <span><span class="key val"></span>validation <b id="loss-val-now"></b></span>
    </div>
    <div id="chart-box">
      <svg id="chart" viewBox="0 0 640 280" role="img" aria-label="training and validation loss by round">
        <g id="chart-grid" class="grid"></g>
        <g id="chart-axes" class="axis"></g>
        <path data-testid="loss-train" id="path-train" class="series train" d=""></path>
        <path data-testid="loss-val" id="path-val" class="series val" d=""></path>
        <g id="chart-marks"></g>
        <text id="chart-empty" class="empty" x="320" y="140" text-anchor="middle">no loss reported yet</text>
      </svg>
    </div>
  </section>

  <section class="card" aria-labelledby="h-samples" id="samples-card" hidden>
    <h2 id="h-samples">Samples</h2>
    <p class="muted" id="samples-caption"></p>
    <div id="samples-box"></div>
  </section>

  <section class="card" aria-labelledby="h-speed">
    <h2 id="h-speed">Throughput &amp; time</h2>
    <dl class="stats">
      <dt>samples/s (last minute)</dt><dd id="sps">–</dd>
      <dt>tokens/s (last minute)</dt><dd id="tps">–</dd>
      <dt>last round</dt><dd id="last-round">–</dd>
      <dt>uptime</dt><dd id="uptime">–</dd>
      <dt>ETA</dt><dd id="eta">–</dd>
    </dl>
  </section>

  <section class="card" aria-labelledby="h-workers">
    <h2 id="h-workers">Workers</h2>
    <dl class="stats">
      <dt>active (holding a lease)</dt><dd id="w-active">–</dd>
      <dt>seen in the last 5 min</dt><dd id="w-recent">–</dd>
      <dt>registered</dt><dd id="w-total">–</dd>
    </dl>
  </section>

  <section class="card" aria-labelledby="h-units">
    <h2 id="h-units">Units this epoch</h2>
    <div class="bar" aria-hidden="true"><div id="u-bar-done" class="seg-done"></div><div id="u-bar-leased" class="seg-leased"></div></div>
    <dl class="stats">
      <dt>done</dt><dd id="u-done">–</dd>
      <dt>leased</dt><dd id="u-leased">–</dd>
      <dt>pending</dt><dd id="u-pending">–</dd>
      <dt>expired leases since start</dt><dd id="u-expired">–</dd>
      <dt>per epoch</dt><dd id="u-epoch">–</dd>
    </dl>
  </section>

  <section class="card" aria-labelledby="h-traffic">
    <h2 id="h-traffic">Traffic &amp; updates</h2>
    <p class="muted since" id="since-start">since coordinator start</p>
    <dl class="stats">
      <dt>received</dt><dd id="bytes-in">–</dd>
      <dt class="ratio-row hidden">as dense fp32</dt><dd class="ratio-row hidden" id="dense-in">–</dd>
      <dt class="ratio-row hidden">compression</dt><dd class="ratio-row hidden" id="ratio">–</dd>
      <dt>sent</dt><dd id="bytes-out">–</dd>
      <dt>updates accepted</dt><dd id="accepted">–</dd>
      <dt>updates rejected</dt><dd id="rejected-total">–</dd>
    </dl>
    <ul class="plain muted" id="rejected" aria-label="rejected updates by reason"></ul>
  </section>

  <section class="card wide" aria-labelledby="h-table">
    <h2 id="h-table">Volunteers</h2>
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th>name</th><th class="num">samples</th><th class="num wide-only">compute</th>
            <th class="num wide-only">accepted</th><th class="num wide-only">rejected</th><th>reputation</th><th>last seen</th>
          </tr>
        </thead>
        <tbody data-testid="workers-body" id="workers-body">
          <tr><td class="note" colspan="6">waiting for the coordinator…</td></tr>
        </tbody>
      </table>
    </div>
  </section>
</main>
<footer id="footer"></footer>
<script>
"use strict";
(function () {
  var POLL_MS = 2000;
  var TIMEOUT_MS = 5000;

  // The API's base: same origin unless ?api=<base URL> names another (http or https only).
  function apiBase() {
    var raw = new URLSearchParams(window.location.search).get("api");
    if (!raw) return "";
    try {
      var u = new URL(raw, window.location.href);
      if (u.protocol !== "http:" && u.protocol !== "https:") return "";
      return (u.origin + u.pathname).replace(/\/+$/, "");
    } catch (e) {
      return "";
    }
  }
  var API = apiBase();

  var el = function (id) { return document.getElementById(id); };
  var svg = el("chart");
  var SVGNS = svg.namespaceURI;
  var state = { status: null, workers: null, lastOk: 0, failures: 0, polls: 0, workersMissing: false };

  // ---- formatting (numbers in, plain text out) ----
  function num(v) { return typeof v === "number" && isFinite(v) ? v : null; }
  function fmtInt(v) { v = num(v); return v === null ? "–" : Math.round(v).toLocaleString("en-US"); }
  function fmtFixed(v, d) { v = num(v); return v === null ? "–" : v.toFixed(d); }
  function fmtRate(v) {
    v = num(v);
    if (v === null) return "–";
    if (v >= 1e9) return (v / 1e9).toFixed(2) + " G";
    if (v >= 1e6) return (v / 1e6).toFixed(2) + " M";
    if (v >= 1e4) return (v / 1e3).toFixed(1) + " k";
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }
  function fmtBytes(v) {
    v = num(v);
    if (v === null) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    var i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(v >= 100 ? 0 : 1)) + " " + units[i];
  }
  function fmtFlops(v) {
    v = num(v);
    if (v === null) return "–";
    var units = ["FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP", "EFLOP"];
    var i = 0;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(v >= 100 ? 0 : 1)) + " " + units[i];
  }
  function pad2(n) { return (n < 10 ? "0" : "") + n; }
  function fmtDuration(sec) {
    sec = num(sec);
    if (sec === null || sec < 0) return "–";
    if (sec < 10) return sec.toFixed(1) + " s";
    var s = Math.round(sec);
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
    if (m < 60) return m + " min " + pad2(s % 60) + " s";
    if (h < 24) return h + " h " + pad2(m % 60) + " min";
    return d + " d " + (h % 24) + " h";
  }
  function fmtAgo(iso) {
    if (typeof iso !== "string") return "–";
    var t = Date.parse(iso);
    if (!isFinite(t)) return "–";
    var sec = Math.max(0, (Date.now() - t) / 1000);
    if (sec < 5) return "just now";
    if (sec < 60) return Math.round(sec) + " s ago";
    return fmtDuration(sec).replace(/ \d+ s$/, "") + " ago";
  }

  // ---- DOM helpers: text only ----
  function setText(id, text) {
    var node = el(id);
    if (node && node.textContent !== text) node.textContent = text;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function svgEl(name, attrs, text) {
    var n = document.createElementNS(SVGNS, name);
    for (var k in attrs) n.setAttribute(k, String(attrs[k]));
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function td(text, cls) {
    var c = document.createElement("td");
    if (cls) c.className = cls;
    c.textContent = text;
    return c;
  }

  // ---- the loss chart ----
  function points(list) {
    if (!Array.isArray(list)) return [];
    var out = [];
    for (var i = 0; i < list.length; i++) {
      var p = list[i];
      if (p && num(p.round) !== null && num(p.value) !== null) out.push({ x: p.round, y: p.value });
    }
    return out;
  }
  function niceStep(span, count) {
    var raw = span / Math.max(1, count);
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
  }
  // Ticks at round numbers. `exact`: the domain is [lo, hi] itself (rounds on x);
  // otherwise it widens to the outer ticks (loss on y).
  function ticks(lo, hi, count, integer, exact) {
    if (!(hi > lo)) {
      var pad = integer ? 1 : Math.max(Math.abs(lo) * 0.05, 0.05);
      lo -= pad; hi += pad;
    }
    var step = niceStep(hi - lo, count);
    if (integer) step = Math.max(1, Math.round(step));
    var start = Math.floor(lo / step) * step, end = Math.ceil(hi / step) * step;
    if (exact) { start = Math.ceil(lo / step - 1e-9) * step; end = Math.floor(hi / step + 1e-9) * step; }
    var list = [];
    for (var v = start; v <= end + step * 1e-9 && list.length < 50; v += step) list.push(Math.round(v / step) * step);
    var digits = integer ? 0 : Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
    return { lo: exact ? lo : start, hi: exact ? hi : end, values: list, digits: digits };
  }
  function pathData(pts, sx, sy) {
    var parts = [];
    for (var i = 0; i < pts.length; i++) parts.push((i ? "L" : "M") + sx(pts[i].x).toFixed(1) + " " + sy(pts[i].y).toFixed(1));
    return parts.join(" ");
  }
  function drawChart(s) {
    s = s || {};
    var train = points(s.training_loss), val = points(s.validation_loss);
    var box = el("chart-box");
    var W = Math.max(280, Math.round(box.clientWidth || 640));
    var H = Math.round(Math.min(340, Math.max(200, W * 0.42)));
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var gridG = el("chart-grid"), axesG = el("chart-axes"), marks = el("chart-marks");
    clear(gridG); clear(axesG); clear(marks);
    var all = train.concat(val);
    var empty = el("chart-empty");
    empty.setAttribute("x", String(W / 2));
    empty.setAttribute("y", String(H / 2));
    if (all.length === 0) {
      empty.style.display = "";
      el("path-train").setAttribute("d", "");
      el("path-val").setAttribute("d", "");
      return;
    }
    empty.style.display = "none";
    var xs = all.map(function (p) { return p.x; }), ys = all.map(function (p) { return p.y; });
    var narrow = W < 480;
    var xt = ticks(Math.min.apply(null, xs), Math.max.apply(null, xs), narrow ? 4 : 8, true, true);
    var yt = ticks(Math.min.apply(null, ys), Math.max.apply(null, ys), narrow ? 4 : 6, false, false);
    var yLabels = yt.values.map(function (v) { return v.toFixed(yt.digits); });
    var longest = yLabels.reduce(function (a, b) { return Math.max(a, b.length); }, 1);
    // Room on the right for half of the last round's label.
    var m = { l: 18 + 7 * longest, r: Math.max(12, 4 + 3.5 * String(Math.round(xt.hi)).length), t: 10, b: 40 };
    var pw = W - m.l - m.r, ph = H - m.t - m.b;
    var sx = function (x) { return m.l + (x - xt.lo) / (xt.hi - xt.lo) * pw; };
    var sy = function (y) { return m.t + (1 - (y - yt.lo) / (yt.hi - yt.lo)) * ph; };
    yt.values.forEach(function (v, i) {
      var y = sy(v).toFixed(1);
      gridG.appendChild(svgEl("line", { x1: m.l, x2: W - m.r, y1: y, y2: y }));
      axesG.appendChild(svgEl("line", { x1: m.l - 5, x2: m.l, y1: y, y2: y }));
      axesG.appendChild(svgEl("text", { x: m.l - 8, y: y, "text-anchor": "end", "dominant-baseline": "middle" }, yLabels[i]));
    });
    xt.values.forEach(function (v) {
      var x = sx(v).toFixed(1);
      gridG.appendChild(svgEl("line", { x1: x, x2: x, y1: m.t, y2: H - m.b }));
      axesG.appendChild(svgEl("line", { x1: x, x2: x, y1: H - m.b, y2: H - m.b + 5 }));
      axesG.appendChild(svgEl("text", { x: x, y: H - m.b + 18, "text-anchor": "middle" }, String(v)));
    });
    axesG.appendChild(svgEl("path", { d: "M" + m.l + " " + m.t + " V" + (H - m.b) + " H" + (W - m.r), fill: "none" }));
    axesG.appendChild(svgEl("text", { x: m.l + pw / 2, y: H - 4, "text-anchor": "middle" }, "round"));
    axesG.appendChild(svgEl("text", { x: 12, y: m.t + ph / 2, "text-anchor": "middle",
                                      transform: "rotate(-90 12 " + (m.t + ph / 2).toFixed(1) + ")" }, "loss"));
    el("path-train").setAttribute("d", pathData(train, sx, sy));
    el("path-val").setAttribute("d", pathData(val, sx, sy));
    if (val.length <= 80) {
      val.forEach(function (p) {
        marks.appendChild(svgEl("circle", { class: "val", cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: 3 }));
      });
    }
    if (train.length === 1) {
      marks.appendChild(svgEl("circle", { cx: sx(train[0].x).toFixed(1), cy: sy(train[0].y).toFixed(1), r: 3, fill: "currentColor", style: "color: var(--accent)" }));
    }
  }

  // ---- the status ----
  function renderStatus(s) {
    var job = typeof s.job === "string" && s.job ? s.job : "job";
    var model = typeof s.model === "string" ? s.model : "";
    var version = num(s.version), total = num(s.total_rounds), round = num(s.round);
    var complete = s.complete === true;
    setText("job", job);
    setText("model", model);
    setText("version", (version === null ? "–" : String(version)) + " / " + (total === null ? "–" : String(total)));
    setText("round-text", complete ? "training complete" : (round === null ? "" : "round " + round + " in progress"));
    var frac = version !== null && total ? Math.max(0, Math.min(1, version / total)) : 0;
    el("bar-fill").style.width = (frac * 100).toFixed(2) + "%";
    el("bar").setAttribute("aria-valuenow", (frac * 100).toFixed(1));
    setText("percent", (frac * 100).toFixed(1) + "% of rounds");
    setText("epoch", num(s.epoch) === null ? "" : "epoch " + s.epoch);
    setText("mode", typeof s.mode === "string" ? s.mode + " rounds" : "");
    setText("params", num(s.parameters) === null ? "" : fmtInt(s.parameters) + " parameters in " + fmtInt(s.shards) + " shards");
    setText("checkpoint", num(s.checkpointed_version) === null ? "" : "checkpointed at version " + s.checkpointed_version);
    document.title = job + " · " + (version === null ? "?" : version) + "/" + (total === null ? "?" : total) + (complete ? " · complete" : "") + " · Tributary";

    var train = points(s.training_loss), val = points(s.validation_loss);
    setText("loss-train-now", train.length ? train[train.length - 1].y.toFixed(4) : "–");
    setText("loss-val-now", val.length ? val[val.length - 1].y.toFixed(4) + " (round " + val[val.length - 1].x + ")" : "–");
    drawChart(s);

    setText("sps", fmtRate(s.samples_per_second));
    setText("tps", fmtRate(s.tokens_per_second));
    setText("last-round", fmtDuration(s.last_round_seconds));
    setText("uptime", fmtDuration(s.uptime_seconds));
    // These counters live in the coordinator's memory: a restart sets them back to zero.
    setText("since-start", "since coordinator start, " + fmtDuration(s.uptime_seconds) + " ago (a restart resets these)");
    setText("eta", complete ? "done" : (num(s.eta_seconds) === null ? "unknown (no throughput yet)" : fmtDuration(s.eta_seconds)));

    var w = s.workers || {};
    setText("w-active", fmtInt(w.active));
    setText("w-recent", fmtInt(w.seen_recently));
    setText("w-total", fmtInt(w.total));

    var u = s.units || {};
    setText("u-done", fmtInt(u.done));
    setText("u-leased", fmtInt(u.leased));
    setText("u-pending", fmtInt(u.pending));
    setText("u-expired", fmtInt(u.expired));
    setText("u-epoch", fmtInt(u.per_epoch));
    var per = num(u.per_epoch);
    el("u-bar-done").style.width = per ? (Math.min(1, (num(u.done) || 0) / per) * 100).toFixed(2) + "%" : "0";
    el("u-bar-leased").style.width = per ? (Math.min(1, (num(u.leased) || 0) / per) * 100).toFixed(2) + "%" : "0";

    setText("bytes-in", fmtBytes(s.bytes_in));
    setText("bytes-out", fmtBytes(s.bytes_out));
    var dense = num(s.dense_bytes_in), inBytes = num(s.bytes_in);
    var showRatio = dense !== null && inBytes !== null && inBytes > 0;
    document.querySelectorAll(".ratio-row").forEach(function (n) { n.classList.toggle("hidden", !showRatio); });
    if (showRatio) {
      setText("dense-in", fmtBytes(dense));
      setText("ratio", "×" + (dense / inBytes).toFixed(dense / inBytes >= 10 ? 0 : 1));
    }
    setText("accepted", fmtInt(s.updates_accepted));
    var rejected = s.updates_rejected && typeof s.updates_rejected === "object" ? s.updates_rejected : {};
    var reasons = Object.keys(rejected).filter(function (k) { return num(rejected[k]) !== null; });
    reasons.sort(function (a, b) { return rejected[b] - rejected[a] || (a < b ? -1 : 1); });
    var totalRejected = reasons.reduce(function (a, k) { return a + rejected[k]; }, 0);
    setText("rejected-total", reasons.length ? fmtInt(totalRejected) : "none");
    var list = el("rejected");
    clear(list);
    reasons.forEach(function (k) {
      var li = document.createElement("li");
      var a = document.createElement("span"); a.textContent = k.replace(/_/g, " ");
      var b = document.createElement("span"); b.textContent = fmtInt(rejected[k]);
      li.appendChild(a); li.appendChild(b);
      list.appendChild(li);
    });
  }

  // ---- the workers table ----
  var MAX_ROWS = 500;
  function renderWorkers(workers, note) {
    var body = el("workers-body");
    clear(body);
    if (!workers) {
      var tr = document.createElement("tr");
      var c = td(note || "no worker list", "note");
      c.colSpan = 7;
      tr.appendChild(c);
      body.appendChild(tr);
      return;
    }
    var rows = workers.filter(function (w) { return w && typeof w === "object"; }).slice();
    rows.sort(function (a, b) {
      return (b.active === true) - (a.active === true) || (num(b.samples) || 0) - (num(a.samples) || 0);
    });
    if (rows.length === 0) {
      renderWorkers(null, "no volunteer has joined yet");
      return;
    }
    rows.slice(0, MAX_ROWS).forEach(function (w) {
      var tr = document.createElement("tr");
      var name = td("", "name");
      var dot = document.createElement("span");
      dot.className = "dot" + (w.active === true ? " on" : "");
      dot.title = w.active === true ? "active" : "idle";
      name.appendChild(dot);
      name.appendChild(document.createTextNode(typeof w.name === "string" && w.name ? w.name : "(unnamed)"));
      if (typeof w.id === "string") name.title = "id " + w.id;
      tr.appendChild(name);
      tr.appendChild(td(fmtInt(w.samples), "num"));
      tr.appendChild(td(fmtFlops(w.flops), "num wide-only"));
      tr.appendChild(td(fmtInt(w.accepted_updates), "num wide-only"));
      tr.appendChild(td(fmtInt(w.rejected_updates), "num wide-only"));
      tr.appendChild(td(fmtReputation(w)));
      tr.appendChild(td(w.active === true ? "active" : fmtAgo(w.last_seen)));
      body.appendChild(tr);
    });
    if (rows.length > MAX_ROWS) {
      var more = document.createElement("tr");
      var c2 = td("and " + (rows.length - MAX_ROWS) + " more", "note");
      c2.colSpan = 7;
      more.appendChild(c2);
      body.appendChild(more);
    }
  }

  // Validation by replication: banned, trusted or new, and the agreement record.
  function fmtReputation(w) {
    if (w.banned === true) return "banned";
    var r = w.reputation;
    if (!r || typeof r !== "object") return "\u2014";
    var agreed = num(r.agreements) || 0, disagreed = num(r.disagreements) || 0;
    return (r.trusted === true ? "trusted" : "new") + " \u00b7 " + agreed + " agreed" + (disagreed > 0 ? ", " + disagreed + " refuted" : "");
  }

  // ---- connection state ----
  function setConnected(ok, error) {
    var banner = el("banner"), badge = el("badge");
    if (ok) {
      state.failures = 0;
      banner.hidden = true;
      document.body.classList.remove("stale");
      var complete = state.status && state.status.complete === true;
      badge.className = "badge " + (complete ? "done" : "live");
      badge.textContent = complete ? "complete" : "live";
    } else {
      state.failures += 1;
      if (!state.status) setText("model", "no answer from " + (API || window.location.origin) + " yet");
      var since = state.lastOk ? " Last update " + fmtAgo(new Date(state.lastOk).toISOString()) + "." : "";
      banner.textContent = "Connection lost, retrying every " + POLL_MS / 1000 + " s (" + String(error && error.message || error) + ")." + since;
      banner.hidden = false;
      document.body.classList.add("stale");
      badge.className = "badge offline";
      badge.textContent = "offline";
    }
    var when = state.lastOk ? new Date(state.lastOk).toLocaleTimeString() : "never";
    setText("footer", "Polling " + (API || window.location.origin) + "/v1/status every " + POLL_MS / 1000 + " s · last update " + when);
  }

  // A private job (auth.public_read: false) needs the viewer's token: asked once, kept
  // for this tab only (sessionStorage), sent as a bearer token.
  var TOKEN_KEY = "tributary.viewerToken";
  function viewerToken() { try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; } }
  el("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    try { sessionStorage.setItem(TOKEN_KEY, el("token-input").value.trim()); } catch (e) { /* private mode */ }
    el("token-form").hidden = true;
  });

  function getJSON(path) {
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = ctl ? setTimeout(function () { ctl.abort(); }, TIMEOUT_MS) : null;
    var headers = { Accept: "application/json" };
    if (viewerToken()) headers.Authorization = "Bearer " + viewerToken();
    return fetch(API + path, { cache: "no-store", headers: headers, signal: ctl ? ctl.signal : undefined })
      .finally(function () { if (timer) clearTimeout(timer); });
  }

  function pollWorkers() {
    // After a 404 (an older coordinator), ask again only every 15th poll.
    if (state.workersMissing && state.polls % 15 !== 0) return Promise.resolve();
    return getJSON("/v1/workers").then(function (r) {
      if (r.status === 404) {
        state.workersMissing = true;
        renderWorkers(null, "this coordinator does not list its workers");
        return;
      }
      if (!r.ok) { renderWorkers(null, "worker list unavailable (HTTP " + r.status + ")"); return; }
      return r.json().then(function (body) {
        state.workersMissing = false;
        state.workers = body && Array.isArray(body.workers) ? body.workers : [];
        renderWorkers(state.workers, null);
      });
    }).catch(function () { /* keep the last table; the status poll reports the connection */ });
  }

  // A U-Net job's grid of images, drawn at each validation: fetched by the script (so the
  // viewer token goes with it) when a new validation point appears, and shown from a
  // blob: URL; the card stays hidden while the route answers 404 (other models).
  var samples = { round: null, url: null };
  function pollSamples(s) {
    var val = points(s.validation_loss);
    var round = val.length ? val[val.length - 1].x : null;
    if (round === null || round === samples.round) return Promise.resolve();
    samples.round = round;
    var headers = { Accept: "image/png" };
    if (viewerToken()) headers.Authorization = "Bearer " + viewerToken();
    return fetch(API + "/v1/samples/latest.png", { cache: "no-store", headers: headers }).then(function (r) {
      if (!r.ok) { el("samples-card").hidden = true; return; }
      return r.blob().then(function (blob) {
        if (blob.type !== "image/png") return;
        var img = el("samples-img");
        if (!img) {
          img = document.createElement("img");
          img.id = "samples-img";
          img.setAttribute("data-testid", "samples");
          img.alt = "images drawn from the model at its latest validation";
          el("samples-box").appendChild(img);
        }
        if (samples.url) URL.revokeObjectURL(samples.url);
        samples.url = URL.createObjectURL(blob);
        img.src = samples.url;
        setText("samples-caption", "drawn by DDIM at round " + round + ", the same seed each time");
        el("samples-card").hidden = false;
      });
    }).catch(function () { samples.round = null; /* try again at the next poll */ });
  }

  function poll() {
    state.polls += 1;
    getJSON("/v1/status").then(function (r) {
      if (r.status === 401 || r.status === 403) {
        el("token-form").hidden = false;
        throw new Error(viewerToken() ? "the viewer token was refused" : "this job needs a viewer token");
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (s) {
      if (!s || typeof s !== "object") throw new Error("not a status report");
      state.status = s;
      state.lastOk = Date.now();
      renderStatus(s);
      setConnected(true);
      pollSamples(s);
      return pollWorkers();
    }).catch(function (e) {
      setConnected(false, e && e.name === "AbortError" ? "timed out" : e);
    }).finally(function () {
      setTimeout(poll, POLL_MS);
    });
  }

  var resizeQueued = false;
  window.addEventListener("resize", function () {
    if (resizeQueued) return;
    resizeQueued = true;
    window.requestAnimationFrame(function () { resizeQueued = false; drawChart(state.status); });
  });

  drawChart(null);
  poll();
})();
</script>
</body>
</html>
"""#
}
