/* citywall screen runtime (大屏实时桥): state, Socket.IO, and the set_props bridge to Dash components.
 *
 * A screen (the wall at "/" or the console at "/console/") loads its full state over HTTP, then
 * connects to Socket.IO on the same port and says hello with the last event id it reflects; the
 * server replays what came after, then pushes batches. Batches are applied in event order (an event
 * already reflected is skipped) and painted at most once per animation frame: the case markers
 * (citywall-cases.js, only the changed cells), the board, ticker and KPIs (plain DOM text) in the
 * same frame; the grid heat and the trend charts later, in idle time. After a disconnect
 * the screen refetches the full state and says hello again: nothing is missed.
 * Every text from a report reaches the page as a React text child or textContent, never as HTML. */
(function () {
  "use strict";
  var cw = (window.citywall = window.citywall || {});
  var I18N = {
    zh: {reported: "上报", register: "立案", dispatch: "派遣", overdue: "超期", supervise: "督办", close: "结案",
         create: "上报", online: "实时", offline: "重连中", remaining: "剩余", over: "超期", none: "暂无",
         grade: "等级", ontime: "按期处置率", today: "今日", yesterday: "昨日", top5: "今日高发小类 TOP5",
         hourly: "今日与昨日分时上报", major: "大类分布", cases: "件", alarm: "履职告警", alarm_cleared: "告警解除",
         incident: "应急启动", incident_closed: "应急结束"},
    en: {reported: "Reported", register: "Registered", dispatch: "Dispatched", overdue: "Overdue", supervise: "Urged",
         close: "Closed", create: "Reported", online: "Live", offline: "Reconnecting", remaining: "left", over: "over",
         none: "None", grade: "Grade", ontime: "On-time rate", today: "Today", yesterday: "Yesterday",
         top5: "Top 5 classes today", hourly: "Reports per hour: today vs yesterday", major: "By major class",
         cases: "", alarm: "Duty alarm", alarm_cleared: "Alarm cleared", incident: "Emergency",
         incident_closed: "Emergency over"}
  };
  var S = {
    kind: null, cases: new Map(), features: new Map(), gridCounts: new Map(), ticker: [], lastEventId: 0, loaded: false,
    lookups: {classes: {}, departments: {}, statuses: {}}, kpi: null, ranking: [], trends: null,
    dirty: {map: false, board: false, ticker: false, heat: false, summary: false}, frame: 0,
    socket: null, resyncing: null, connected: false, heatAt: 0, heatTimer: 0, firstPaint: true,
    metrics: {pushToPaint: [], batches: 0, events: 0, firstRender: null, resyncs: 0}
  };
  cw.S = S;
  cw.metrics = S.metrics;
  // The state is fetched as early as possible, in parallel with the Dash renderer's own boot.
  var STATE_URL = window.location.pathname.indexOf("/console") === 0 ? "/console/api/state" : "/wall/api/state";
  var early = window.cwEarlyState || null;  // the wall's page asks for it in its head (dashboard/wall_page.py)
  if (!early && (window.location.pathname === "/" || window.location.pathname.indexOf("/console/") === 0)) {
    var tok0 = new URLSearchParams(window.location.search).get("token");
    early = fetch(STATE_URL + (tok0 ? "?token=" + encodeURIComponent(tok0) : ""),
                  {credentials: "same-origin", cache: "no-store"}).then(function (r) { return r.ok ? r.json() : null; },
                                                                         function () { return null; });
  }

  function params() { return new URLSearchParams(window.location.search); }
  function lang() { return cw.lang || "zh"; }
  function t(key) { return (I18N[lang()] || I18N.zh)[key] || key; }
  cw.t = t;

  // --- Dash components as JSON (React escapes every text child) ------------------------------
  function h(type, props, children) {
    var p = Object.assign({}, props || {});
    if (children !== undefined) p.children = children;
    // Dash names the html components with a capital: Div, Span, I …
    return {type: type.charAt(0).toUpperCase() + type.slice(1), namespace: "dash_html_components", props: p};
  }
  // Leaflet layers: no DOM node
  var MAP_LAYERS = {"case-layer": 1, "grid-heat": 1, "component-layer": 1, "vehicle-layer": 1, "vehicle-track": 1,
                    "camera-layer": 1, "incident-layer": 1, "case-map": 1};
  function setProps(id, props) {
    if (!MAP_LAYERS[id] && !document.getElementById(id)) return false;
    if (MAP_LAYERS[id] && !document.getElementById("case-map")) return false;
    try { window.dash_clientside.set_props(id, props); return true; } catch (e) { return false; }
  }
  cw.h = h;
  cw.setProps = setProps;
  // The often-changing panels (board, ticker, ranking, KPI numbers, clock) are plain DOM written here,
  // not Dash components: each set_props makes the Dash renderer run every mounted component's store
  // selector (~50 ms a call on the wall's PC), while these nodes only need their text. Dash renders
  // their containers empty and never touches them again. Text goes in as textContent only.
  function d(tag, props, children) {
    var e = document.createElement(tag);
    for (var k in props || {}) {
      var v = props[k];
      if (k === "className") e.className = v;
      else if (k === "style") Object.assign(e.style, v);
      else if (k !== "key") e.setAttribute(k, v);
    }
    if (children != null) {
      var list = Array.isArray(children) ? children : [children];
      for (var i = 0; i < list.length; i++) {
        var c = list[i];
        if (c == null) continue;
        e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
      }
    }
    return e;
  }
  cw.dom = d;
  function fill(id, nodes) {
    var box = document.getElementById(id);
    if (!box) return false;
    box.replaceChildren.apply(box, nodes);
    return true;
  }
  cw.fill = fill;

  // --- formatting ------------------------------------------------------------------------------
  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function fmtRemaining(ms) {
    var neg = ms < 0, s = Math.floor(Math.abs(ms) / 1000);
    var d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
    var body = (d ? d + (lang() === "zh" ? "天 " : "d ") : "") + pad(hh) + ":" + pad(mm) + ":" + pad(ss);
    return neg ? "-" + body : body;
  }
  cw.fmtRemaining = fmtRemaining;
  var TZ_FMT = null;
  function fmtTime(ms, withSeconds) {
    if (ms == null) return "";
    try {
      TZ_FMT = TZ_FMT || new Intl.DateTimeFormat("zh-CN", {timeZone: "Asia/Shanghai", hour: "2-digit",
        minute: "2-digit", second: "2-digit", hour12: false});
      var s = TZ_FMT.format(new Date(ms));
      return withSeconds === false ? s.slice(0, 5) : s;
    } catch (e) { return new Date(ms).toISOString().slice(11, 19); }
  }
  cw.fmtTime = fmtTime;
  function pct(v) { return v == null ? "—" : (v * 100).toFixed(1) + "%"; }

  // --- the case store ----------------------------------------------------------------------------
  // S.cases: every open case (compact record); S.features: those with a position, i.e. on the map
  // (drawn by assets/citywall-cases.js, which is told of each change); S.gridCounts: open cases per
  // grid (网格热力), kept up to date case by case.
  function countGrid(g, d) {
    if (!g) return;
    var n = (S.gridCounts.get(g) || 0) + d;
    if (n > 0) S.gridCounts.set(g, n); else S.gridCounts.delete(g);
  }
  function putCase(rec, bulk) {
    if (!rec || rec.id == null) return;
    var old = S.cases.get(rec.id);
    if (old) countGrid(old.g, -1);
    if (rec.o === false) {
      S.cases.delete(rec.id); S.features.delete(rec.id);
    } else {
      rec.o = true;
      S.cases.set(rec.id, rec);
      countGrid(rec.g, 1);
      if (rec.lat != null && rec.lon != null) S.features.set(rec.id, rec); else S.features.delete(rec.id);
    }
    if (!bulk && cw.caseLayer) cw.caseLayer.put(rec);
  }
  function loadState(st) {
    if (window.performance && performance.mark) performance.mark("cw:state");
    S.cases.clear(); S.features.clear(); S.gridCounts.clear();
    var c = st.cases || {}, keys = Object.keys(c), n = keys.length ? c[keys[0]].length : 0;
    for (var i = 0; i < n; i++) {
      var rec = {};
      for (var k = 0; k < keys.length; k++) rec[keys[k]] = c[keys[k]][i];
      putCase(rec, true);
    }
    if (cw.caseLayer) cw.caseLayer.setAll(S.features);
    S.firstPaint = true;
    S.lookups = {classes: st.classes || {}, departments: st.departments || {}, statuses: st.statuses || {}};
    cw.lookups = S.lookups;
    S.ticker = (st.ticker || []).slice(0, 40);
    S.lastEventId = st.event_id || 0;
    if (st.kpi) S.kpi = st.kpi;
    if (st.ranking) S.ranking = st.ranking;
    if (st.trends) S.trends = st.trends;
    S.loaded = true;
    if (st.video) cw.video = st.video;
    markAll();
    fire("state", st);
  }
  // Other screen modules (video, vehicles, emergency) hook in here: cw.on("state" | "incident" |
  // "vehicles" | "connect" | "tick", fn).
  var hooks = (cw._hooks = cw._hooks || {});  // modules loaded before this one register here too
  cw.on = function (name, fn) { (hooks[name] = hooks[name] || []).push(fn); };
  function fire(name, arg) {
    var list = hooks[name] || [];
    for (var i = 0; i < list.length; i++) {
      try { list[i](arg); } catch (e) { if (window.console) console.warn("citywall hook " + name, e); }
    }
  }
  cw.fire = fire;
  cw.addTicker = function (item) {
    S.ticker.unshift(item);
    if (S.ticker.length > 40) S.ticker.length = 40;
    S.dirty.ticker = true;
    schedule();
  };
  function markAll() {
    for (var k in S.dirty) S.dirty[k] = true;
    S.lastRanking = S.lastTrends = lastBoard = lastHeat = null;
    texts = {};
    schedule();
  }

  function applyEvents(batch) {
    var evs = batch.events || [];
    var applied = 0;
    for (var i = 0; i < evs.length; i++) {
      var ev = evs[i];
      if (ev.e <= S.lastEventId) continue;   // already in the state or a replay overlap
      S.lastEventId = ev.e;
      applied++;
      if (ev.c) putCase(ev.c);
      if (ev.inc) fire("incident", ev.inc);
      if (ev.tk) {
        S.ticker.unshift(ev.tk);
        if (S.ticker.length > 40) S.ticker.length = 40;
        S.dirty.ticker = true;
      }
    }
    if (applied) {
      S.dirty.map = S.dirty.board = S.dirty.heat = true;
      S.metrics.batches++;
      S.metrics.events += applied;
      if (cw.onEvents) cw.onEvents(evs);
      schedule(batch.ts);
    }
  }

  // --- painting (at most once per frame) -----------------------------------------------------------
  var pendingTs = [];
  // The map redraws only the markers of changed cases (citywall-cases.js), so it is painted in the
  // same frame as the ticker and the board. The grid heat restyles every grid polygon: at most every
  // HEAT_INTERVAL ms, in idle time. The trend charts (Plotly) after the first paint also wait for idle time.
  var HEAT_INTERVAL = 2000;
  var idle = window.requestIdleCallback ? function (fn) { window.requestIdleCallback(fn, {timeout: 1000}); }
                                        : function (fn) { setTimeout(fn, 50); };
  function schedule(ts) {
    if (ts) pendingTs.push(ts);
    if (S.frame) return;
    S.frame = requestAnimationFrame(paint);
  }
  function heatLater() {
    if (S.heatTimer) return;
    S.heatTimer = setTimeout(function () {
      idle(function () { S.heatTimer = 0; S.dirty.heat = false; S.heatAt = Date.now(); renderHeat(); });
    }, Math.max(0, HEAT_INTERVAL - (Date.now() - S.heatAt)));
  }
  function paint() {
    S.frame = 0;
    if (!S.loaded) return;
    var first = S.firstPaint;
    S.firstPaint = false;
    if (S.dirty.map) { S.dirty.map = false; if (cw.caseLayer) cw.caseLayer.flush(); }
    if (S.dirty.heat) { if (first) { S.dirty.heat = false; S.heatAt = Date.now(); renderHeat(); } else heatLater(); }
    if (S.dirty.board) { S.dirty.board = false; renderBoard(); }
    if (S.dirty.ticker) { S.dirty.ticker = false; renderTicker(); }
    if (S.dirty.summary) { S.dirty.summary = false; renderSummary(); }
    var stamps = pendingTs; pendingTs = [];
    if (stamps.length) {
      // the frame that carries these changes is painted right after this callback: measure then
      requestAnimationFrame(function () {
        var now = Date.now();
        for (var i = 0; i < stamps.length; i++) S.metrics.pushToPaint.push(now - stamps[i]);
        if (S.metrics.pushToPaint.length > 5000) S.metrics.pushToPaint.splice(0, 1000);
      });
    }
    if (S.metrics.firstRender == null) {
      requestAnimationFrame(function () { S.metrics.firstRender = performance.now(); readyWhenDrawn(); });
    }
  }

  var lastHeat = null;
  function renderHeat() {
    var counts = {}, max = 1;
    S.gridCounts.forEach(function (n, g) { counts[g] = n; if (n > max) max = n; });
    var key = JSON.stringify(counts);
    if (key === lastHeat) return;  // restyling every grid polygon is not free: only when a count moved
    lastHeat = key;
    setProps("grid-heat", {hideout: {counts: counts, max: max}});
  }
  function byDeadline(a, b) { return a.dl - b.dl || a.id - b.id; }
  // One pass over the open cases: the board's rows (the `size` nearest deadlines, kept sorted by
  // insertion: no sort of 20,000) and the open overdue count (超期未结).
  function scanCases(now, size) {
    var since = now - 2 * 3600 * 1000, rows = [], overdue = 0;
    S.cases.forEach(function (r) {
      if (r.dl == null) return;
      if (now >= r.dl) overdue++;
      if (r.dl < since) return;
      if (rows.length === size && byDeadline(r, rows[size - 1]) >= 0) return;
      var i = rows.length;
      while (i > 0 && byDeadline(r, rows[i - 1]) < 0) i--;
      rows.splice(i, 0, r);
      if (rows.length > size) rows.pop();
    });
    return {rows: rows, overdue: overdue};
  }
  function boardRows(now) { return scanCases(now, cw.boardSize || 14).rows; }
  cw.boardRows = boardRows;
  var lastBoard = null;
  function renderBoard() {
    var now = Date.now(), scan = scanCases(now, cw.boardSize || 14);
    setText("kpi-overdue", String(scan.overdue));
    setText("kpi-open", String(S.cases.size));
    if (!document.getElementById("sla-board")) return;
    var rows = scan.rows, names = S.lookups.classes, st = S.lookups.statuses;
    var kids = rows.map(function (r) {
      var lvl = cw.slaLevel(r, now);
      var used = r.st != null && r.dl > r.st ? Math.min(1, Math.max(0, (now - r.st) / (r.dl - r.st))) : 1;
      return [r.id, lvl, r.u, r.n, names[r.c] || r.c || "", st[r.s] || r.s || "", (used * 100).toFixed(1),
              fmtRemaining(r.dl - now)];
    });
    var key = JSON.stringify(kids) + lang();
    if (key === lastBoard) return;  // the same rows and countdowns: leave the DOM alone
    lastBoard = key;
    fill("sla-board-rows", kids.length ? kids.map(function (k) {
      return d("div", {className: "sla-row lvl-" + k[1] + (k[2] === "urgent" ? " urgent" : ""),
                       "data-case": String(k[0]), "data-level": String(k[1])}, [
        d("span", {className: "sla-num"}, k[3] || ""),
        d("span", {className: "sla-cls"}, k[4]),
        d("span", {className: "sla-st"}, k[5]),
        d("span", {className: "sla-bar"}, d("i", {style: {width: k[6] + "%"}})),
        d("span", {className: "sla-cd"}, k[7])
      ]);
    }) : [d("div", {className: "sla-empty"}, t("none"))]);
  }
  // A number or a time in a Dash-rendered span: its text node is replaced only when the text changed.
  var texts = {};
  function setText(id, text) {
    if (texts[id] === text) return;
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = text;
    texts[id] = text;
  }
  cw.setText = setText;
  var ACTION_CLASS = {create: "tk-create", register: "tk-register", dispatch: "tk-dispatch", overdue: "tk-overdue",
                      supervise: "tk-supervise", close: "tk-close", alarm: "tk-alarm", alarm_cleared: "tk-alarm-clear",
                      incident: "tk-incident", incident_closed: "tk-incident"};
  function renderTicker() {
    if (!document.getElementById("event-ticker")) return;
    var kids = S.ticker.map(function (it, i) {
      var parts = [d("span", {className: "tk-time"}, fmtTime(it.at)),
                   d("span", {className: "tk-act"}, t(it.a)),
                   d("span", {className: "tk-num"}, it.n || ""),
                   d("span", {className: "tk-cls"}, it.cls || "")];
      if (it.dept) parts.push(d("span", {className: "tk-dept"}, "→ " + it.dept));
      if (it.text) parts.push(d("span", {className: "tk-text"}, it.text));
      return d("div", {className: "tk-item " + (ACTION_CLASS[it.a] || "") + (i === 0 ? " tk-new" : ""),
                       "data-event": String(it.e), "data-case": String(it.cid)}, parts);
    });
    fill("event-ticker-list", kids);
  }

  // --- the server-computed panels ------------------------------------------------------------------
  function renderSummary() {
    var k = S.kpi;
    if (k) {
      setText("kpi-reported", String(k.reported));
      setText("kpi-registered", String(k.registered));
      setText("kpi-dispatched", String(k.dispatched));
      setText("kpi-closed", String(k.closed));
      setText("kpi-ontime", pct(k.on_time_close_rate));
    }
    // ranking and trends change every few seconds at most: repaint them only when they did. The charts
    // (Plotly: the costliest script and redraw) wait for idle time, off the first frame and the push path.
    var rk = JSON.stringify(S.ranking), tr = JSON.stringify(S.trends) + window.innerHeight + lang();
    if (rk !== S.lastRanking && document.getElementById("dept-ranking")) { S.lastRanking = rk; renderRanking(); }
    if (S.trends && tr !== S.lastTrends && document.getElementById("trend-chart")) {
      S.lastTrends = tr;
      idle(renderTrends);
    }
  }
  function renderRanking() {
    var kids = (S.ranking || []).map(function (dep, i) {
      var g = dep.grade || "-";
      return d("div", {className: "rk-row grade-" + g}, [
        d("span", {className: "rk-pos"}, String(i + 1)),
        d("span", {className: "rk-name"}, dep.name),
        d("span", {className: "rk-bar"}, d("i", {style: {width: Math.max(0, Math.min(100, dep.score)) + "%"}})),
        d("span", {className: "rk-score"}, dep.score.toFixed(1)),
        d("span", {className: "rk-grade"}, g),
        d("span", {className: "rk-ontime"}, pct(dep.on_time_rate))
      ]);
    });
    fill("dept-ranking-rows", kids.length ? kids : [d("div", {className: "sla-empty"}, t("none"))]);
  }
  function fontPx(scale) { return Math.round(Math.max(11, window.innerHeight / 1080 * 15) * (scale || 1)); }
  function baseLayout(extra) {
    var f = fontPx(1);
    return Object.assign({
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: {color: "#cfe3ff", size: f},
      // the legend sits in the top margin, above the plot, not over its first bars or points
      margin: {l: f * 2.6, r: f * 0.8, t: f * 1.5, b: f * 1.8}, showlegend: true,
      legend: {orientation: "h", x: 1, xanchor: "right", y: 1, yanchor: "bottom", font: {size: f * 0.9}},
      xaxis: {gridcolor: "rgba(120,170,230,0.12)", zeroline: false, tickfont: {size: f * 0.85}},
      yaxis: {gridcolor: "rgba(120,170,230,0.12)", zeroline: false, tickfont: {size: f * 0.85}, rangemode: "tozero"}
    }, extra || {});
  }
  // The charts are mounted (dcc.Graph, which loads Plotly) on their first render, after the wall's first frame.
  var GRAPH_CONFIG = {displayModeBar: false, responsive: true, staticPlot: false};
  function setFigure(id, figure) {
    if (document.getElementById(id)) { setProps(id, {figure: figure}); return; }
    setProps(id + "-box", {children: {type: "Graph", namespace: "dash_core_components", props: {
      id: id, className: "trend-graph", config: GRAPH_CONFIG, figure: figure, style: {height: "100%", width: "100%"}}}});
    if (S.metrics.trendsDrawn == null) waitTrendsDrawn();
  }
  function waitTrendsDrawn() {
    if (document.querySelectorAll("#trend-chart .main-svg").length >= 3) {
      S.metrics.trendsDrawn = performance.now();
      document.body.setAttribute("data-ready", "1");
      return;
    }
    setTimeout(waitTrendsDrawn, 50);
  }
  // body[data-ready] says the screen is completely drawn: after its first frame, and on the wall after
  // the trend charts too (their code loads after that frame); at the latest 10 s after the first frame.
  function readyWhenDrawn() {
    if (!document.getElementById("trend-chart") || S.metrics.trendsDrawn != null) {
      document.body.setAttribute("data-ready", "1");
      return;
    }
    setTimeout(function () { document.body.setAttribute("data-ready", "1"); }, 10000);
  }
  function renderTrends() {
    var tr = S.trends, f = fontPx(1);
    if (!tr) return;
    var hours = tr.hours.map(function (x) { return x + ":00"; });
    setFigure("trend-hourly", {data: [
      {type: "scatter", mode: "lines", name: t("yesterday"), x: hours, y: tr.yesterday,
       line: {color: "#5b7a99", width: 2, dash: "dot", shape: "spline"}},
      {type: "scatter", mode: "lines+markers", name: t("today"), x: hours.slice(0, tr.today.length), y: tr.today,
       line: {color: "#38bdf8", width: 3, shape: "spline"}, marker: {size: f * 0.4}, fill: "tozeroy",
       fillcolor: "rgba(56,189,248,0.15)"}], layout: baseLayout({xaxis: {tickfont: {size: f * 0.8}, nticks: 8,
       gridcolor: "rgba(120,170,230,0.12)"}})});
    var anyMajor = (tr.major_today || []).concat(tr.major_yesterday || []).some(function (n) { return n > 0; });
    setFigure("trend-major", anyMajor ? {data: [
      {type: "bar", name: t("yesterday"), x: tr.majors, y: tr.major_yesterday, marker: {color: "#35506b"}},
      {type: "bar", name: t("today"), x: tr.majors, y: tr.major_today, marker: {color: "#22d3ee"}}],
      layout: baseLayout({barmode: "group", bargap: 0.25})} : emptyFigure());
    var top = (tr.top5 || []).slice().reverse();
    setFigure("trend-top5", top.length ? {data: [
      {type: "bar", orientation: "h", x: top.map(function (x) { return x.count; }),
       y: top.map(function (x) { return x.name; }), text: top.map(function (x) { return String(x.count); }),
       textposition: "outside", cliponaxis: false, marker: {color: ["#7dd3fc", "#38bdf8", "#0ea5e9", "#f59e0b", "#f97316"]
       .slice(5 - top.length)}}],
      layout: baseLayout({showlegend: false, margin: {l: f * 7, r: f * 2, t: f * 0.4, b: f * 1.4}})} : emptyFigure());
  }
  // a chart with nothing to show says so, like the other panels, instead of bare axes
  function emptyFigure() {
    return {data: [], layout: baseLayout({showlegend: false, xaxis: {visible: false}, yaxis: {visible: false},
      annotations: [{text: t("none"), showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5,
                     font: {size: fontPx(1), color: "#6b86a6"}}]})};
  }

  // --- ticking: countdowns, clock, overdue count ----------------------------------------------------
  var lastTick = Date.now();
  function tick() {
    var now = Date.now(), prev = lastTick;
    lastTick = now;
    setText("wall-clock", fmtTime(now));
    if (!S.loaded) return;
    fire("tick", now);
    // marker colours follow the time (80% used, overdue): redraw the markers of cases that crossed one
    var crossed = [];
    S.features.forEach(function (r) {
      if ((r.dl != null && r.dl > prev && r.dl <= now) || (r.wa != null && r.wa > prev && r.wa <= now)) crossed.push(r.id);
    });
    if (crossed.length && cw.caseLayer) { cw.caseLayer.touch(crossed); S.dirty.map = true; }
    S.dirty.board = true;
    schedule();
  }

  // --- loading and the socket -------------------------------------------------------------------------
  function withToken(url) {
    var tok = params().get("token");
    return tok ? url + (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(tok) : url;
  }
  function fetchState() {
    if (S.resyncing) return S.resyncing;
    S.metrics.resyncs++;
    var url = withToken(cw.stateUrl);
    S.resyncing = fetch(url, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      if (!r.ok) throw new Error("state " + r.status);
      return r.json();
    }).then(function (st) { loadState(st); S.resyncing = null; return st; }, function (err) {
      S.resyncing = null;
      return new Promise(function (res) { setTimeout(res, 1000); }).then(fetchState);
    });
    return S.resyncing;
  }
  function setOnline(on) {
    S.connected = on;
    var el = document.getElementById("wall-status");
    if (el) { el.className = on ? "status on" : "status off"; el.textContent = t(on ? "online" : "offline"); }
  }
  function connect() {
    if (!window.io) { setTimeout(connect, 100); return; }
    var screen = params().get("screen") || "";
    var sock = window.io({path: "/socket.io", transports: ["websocket"], reconnectionDelay: 300,
                          reconnectionDelayMax: 2000, timeout: 5000,
                          auth: {kind: S.kind, token: params().get("token") || ""}});
    S.socket = sock;
    cw.socket = sock;
    var first = true;
    sock.on("connect", function () {
      var ready = first && S.loaded ? Promise.resolve() : (first ? S.initial : fetchState());
      first = false;
      ready.then(function () {
        sock.emit("hello", {screen: screen, after: S.lastEventId}, function () { setOnline(true); });
        setOnline(true);
        fire("connect", sock);
      });
    });
    sock.on("disconnect", function () { setOnline(false); });
    sock.on("connect_error", function () { setOnline(false); });
    function onEvents(batch) {
      batch.ts = batch.ts || null;
      var recv = Date.now();
      if (S.resyncing) { S.resyncing.then(function () { applyEvents(batch); }); return; }
      applyEvents(batch);
      if (!batch.ts) pendingTs.push(recv);
    }
    function onSummary(sm) {
      if (sm.kpi) S.kpi = sm.kpi;
      if (sm.ranking) S.ranking = sm.ranking;
      if (sm.trends) S.trends = sm.trends;
      S.dirty.summary = true;
      schedule();
    }
    // the wall room gets one `tick` per interval holding what changed: events, vehicles, panels
    sock.on("tick", function (m) {
      if (m.summary) onSummary(m.summary);
      if (m.vehicles) fire("vehicles", m.vehicles);
      if (m.events) onEvents(m.events);
    });
    sock.on("events", onEvents);      // a department's console, and the replay after `hello`
    sock.on("summary", onSummary);    // the panels sent with the reply to `hello`
    sock.on("alarm", function (msg) {
      if (msg && msg.tk) cw.addTicker(msg.tk);
      fire("alarm", msg);
    });
    sock.on("resync", function () {
      fetchState().then(function () { sock.emit("hello", {screen: screen, after: S.lastEventId}); });
    });
  }

  // --- the wall's popup: a read-only summary, text set with textContent ---------------------------------
  function wallPopup(caseId, marker) {
    fetch(withToken("/wall/api/cases/" + encodeURIComponent(caseId)), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; }).then(function (c) {
        if (!c) return;
        var el = cw.el, box = el("div", "cw-pop");
        box.appendChild(el("div", "cw-pop-n", c.case_number));
        box.appendChild(el("div", "cw-pop-c", c.class_name + " · " + c.status_zh + (c.urgency === "urgent" ? " · 紧急" : "")));
        if (c.address) box.appendChild(el("div", "cw-pop-a", c.address));
        if (c.description) box.appendChild(el("div", "cw-pop-d", c.description));
        if (c.department) box.appendChild(el("div", "cw-pop-dep", "→ " + c.department));
        if (c.deadline_at) box.appendChild(el("div", "cw-pop-dl", fmtRemaining(c.deadline_at - Date.now())));
        marker.unbindPopup();
        marker.bindPopup(box, {maxWidth: 420}).openPopup();
      });
  }

  // --- language -------------------------------------------------------------------------------------
  function applyLang(l) {
    cw.lang = l === "en" ? "en" : "zh";
    try { localStorage.setItem("citywall.lang", cw.lang); } catch (e) { /* private mode */ }
    document.documentElement.lang = cw.lang === "en" ? "en" : "zh-CN";
    var nodes = document.querySelectorAll("[data-zh]");
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i];
      n.textContent = cw.lang === "en" ? (n.getAttribute("data-en") || n.getAttribute("data-zh")) : n.getAttribute("data-zh");
    }
    var sw = document.getElementById("lang-switch");
    if (sw) sw.textContent = cw.lang === "en" ? "中文" : "EN";
    setOnline(S.connected);
    if (S.loaded) markAll();
  }
  cw.applyLang = applyLang;

  // --- start when the Dash renderer has drawn the layout ----------------------------------------------
  function start() {
    var wallRoot = document.getElementById("kpi-bar"), consoleRoot = document.getElementById("console-root");
    if (!(wallRoot || consoleRoot) || !window.dash_clientside || !window.dash_clientside.set_props) {
      setTimeout(start, 30);
      return;
    }
    S.kind = wallRoot ? "wall" : "console";
    if (wallRoot && !cw.onCaseClick) cw.onCaseClick = wallPopup;
    cw.stateUrl = wallRoot ? "/wall/api/state" : "/console/api/state";
    var stored = null;
    try { stored = localStorage.getItem("citywall.lang"); } catch (e) { /* ignore */ }
    applyLang(params().get("lang") || stored || "zh");
    var sw = document.getElementById("lang-switch");
    if (sw) sw.addEventListener("click", function () { applyLang(cw.lang === "en" ? "zh" : "en"); });
    window.addEventListener("resize", function () { S.dirty.summary = true; schedule(); });
    S.initial = early ? early.then(function (st) { if (st) { loadState(st); return st; } return fetchState(); })
                      : fetchState();
    connect();
    setInterval(tick, 1000);
    tick();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
