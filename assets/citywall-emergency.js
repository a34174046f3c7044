/* citywall emergency mode (应急模式) of the wall.
 *
 * While an incident holds the wall (its plan activated, wall mode on: GET /wall/api/emergency), the
 * wall turns to it: the map fits the incident's perimeter and shows the site and the units sent, the
 * left column becomes the command board (units en route with their ETAs, tasks counting down to their
 * deadlines, the timeline), and the video wall shows the cameras nearest the site, with the conference's
 * composed picture first when a room is running. Incident events on the socket (`incident.*`) refresh
 * it; `incident.mode` off (a leader switching back), closing or cancelling restores the normal wall.
 * A screen opened with `?emergency=off` never switches. Texts are set with textContent. */
(function () {
  "use strict";
  var cw = (window.citywall = window.citywall || {});
  function on(name, fn) { var h = (cw._hooks = cw._hooks || {}); (h[name] = h[name] || []).push(fn); }

  var EM = cw.emergency = {incident: null, active: false, fetching: null, again: false, refreshes: 0};
  var params = new URLSearchParams(window.location.search);
  var OPT_OUT = params.get("emergency") === "off";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = String(text);
    return e;
  }
  function isWall() { return !!document.getElementById("emergency-panel"); }
  function withToken(url) {
    var tok = params.get("token");
    return tok ? url + (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(tok) : url;
  }

  function refresh() {
    if (!isWall() || OPT_OUT) return Promise.resolve();
    if (EM.fetching) { EM.again = true; return EM.fetching; }
    EM.refreshes++;
    EM.fetching = fetch(withToken("/wall/api/emergency"), {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.ok ? r.json() : null; }, function () { return null; })
      .then(function (view) {
        EM.fetching = null;
        if (view) apply(view);
        if (EM.again) { EM.again = false; return refresh(); }
      });
    return EM.fetching;
  }
  EM.refresh = refresh;

  function apply(view) {
    if (view.incident) enter(view.incident); else leave();
  }

  // --- the map ------------------------------------------------------------------------------------
  function eachPosition(coords, fn) {
    if (typeof coords[0] === "number") { fn(coords); return; }
    for (var i = 0; i < coords.length; i++) eachPosition(coords[i], fn);
  }
  function boundsOf(feature) {
    var s = 90, w = 180, n = -90, e = -180;
    eachPosition(feature.geometry.coordinates, function (p) {
      if (p[1] < s) s = p[1]; if (p[1] > n) n = p[1]; if (p[0] < w) w = p[0]; if (p[0] > e) e = p[0];
    });
    return [[s, w], [n, e]];
  }
  function homeBounds() {
    var node = document.getElementById("map-home");
    try { return JSON.parse(node.getAttribute("data-bounds")); } catch (e) { return null; }
  }
  function drawMap(inc, fit) {
    var perimeter = Object.assign({}, inc.perimeter, {properties: Object.assign({}, inc.perimeter.properties,
                                                                                 {kind: "perimeter"})});
    var features = [perimeter, {type: "Feature", geometry: {type: "Point", coordinates: [inc.lon, inc.lat]},
                                properties: {role: "site", title: inc.title}}];
    (inc.units || []).forEach(function (u) {
      if (u.lat == null || u.lon == null) return;
      features.push({type: "Feature", geometry: {type: "Point", coordinates: [u.lon, u.lat]},
                     properties: {role: "unit", name: u.name || u.device, device: u.device,
                                  eta: u.status === "dispatched" ? etaSeconds(u) : null}});
    });
    cw.setProps("incident-layer", {data: {type: "FeatureCollection", features: features}});
    if (fit) {
      cw.setProps("case-map", {viewport: {bounds: boundsOf(perimeter), transition: "flyToBounds",
                                          options: {padding: [60, 60], maxZoom: 17, animate: false}}});
    }
  }
  function etaSeconds(u) {
    if (u.eta_at != null) return Math.max(0, Math.round((u.eta_at - Date.now()) / 1000));
    return u.eta_remaining_s;
  }

  // --- the command board --------------------------------------------------------------------------
  function level(t, now) {
    if (t.status === "done" || t.status === "cancelled") return "done";
    if (t.deadline_at != null && now >= t.deadline_at) return "lvl-2";
    if (t.warn_at != null && now >= t.warn_at) return "lvl-1";
    return "lvl-0";
  }
  function drawBoard(inc) {
    var title = document.getElementById("emergency-title");
    if (title) title.textContent = inc.title || "";
    var body = document.getElementById("emergency-body");
    if (!body) return;
    while (body.firstChild) body.removeChild(body.firstChild);
    var now = Date.now();
    var facts = el("div", "em-facts");
    facts.appendChild(el("span", "em-level", inc.level_zh || inc.level || ""));
    facts.appendChild(el("span", "em-type", inc.type_zh || ""));
    if (inc.plan) facts.appendChild(el("span", "em-plan", inc.plan));
    if (inc.address) facts.appendChild(el("span", "em-addr", inc.address));
    if (inc.activated_at) facts.appendChild(el("span", "em-since", "启动 " + cw.fmtTime(inc.activated_at)));
    body.appendChild(facts);

    body.appendChild(el("div", "em-sub", "出动单位（" + (inc.units || []).length + "）"));
    var units = el("div", "em-list em-units");
    (inc.units || []).forEach(function (u) {
      var row = el("div", "em-row em-unit");
      row.setAttribute("data-device", String(u.device || ""));
      row.appendChild(el("span", null, (u.name || u.device) + " · " + (u.type || "")));
      row.appendChild(el("span", "em-dist", u.distance_m != null ? Math.round(u.distance_m) + " 米" : ""));
      var eta = el("span", "em-cd em-eta", "");
      if (u.status === "dispatched" && u.eta_at != null) eta.setAttribute("data-eta", String(u.eta_at));
      else eta.textContent = u.status === "arrived" ? "已到达" : (u.status || "");
      row.appendChild(eta);
      units.appendChild(row);
    });
    body.appendChild(units);

    body.appendChild(el("div", "em-sub", "任务看板"));
    var tasks = el("div", "em-list em-tasks");
    (inc.tasks || []).forEach(function (t) {
      var row = el("div", "em-row em-task " + level(t, now));
      row.setAttribute("data-task", String(t.id));
      row.appendChild(el("span", null, (t.title || t.code) + (t.department ? " · " + t.department : "")));
      row.appendChild(el("span", "em-st", t.status_zh || t.status || ""));
      var cd = el("span", "em-cd", "");
      if (t.deadline_at != null && level(t, now) !== "done") cd.setAttribute("data-deadline", String(t.deadline_at));
      row.appendChild(cd);
      tasks.appendChild(row);
    });
    body.appendChild(tasks);

    body.appendChild(el("div", "em-sub", "处置时间线"));
    var tl = el("div", "em-list em-timeline");
    (inc.timeline || []).slice(0, 12).forEach(function (e) {
      var row = el("div", "em-tl");
      row.setAttribute("data-event", String(e.e));
      row.appendChild(el("span", "tk-time", cw.fmtTime(e.at)));
      row.appendChild(el("span", "tk-act", e.zh || e.action));
      row.appendChild(el("span", "tk-dept", e.actor || ""));
      if (e.text) row.appendChild(el("span", "tk-text", e.text));
      tl.appendChild(row);
    });
    body.appendChild(tl);
    tick();
  }
  function tick() {
    if (!EM.active) return;
    var now = Date.now();
    var cds = document.querySelectorAll("#emergency-body [data-deadline]");
    for (var i = 0; i < cds.length; i++) {
      var dl = Number(cds[i].getAttribute("data-deadline"));
      cds[i].textContent = cw.fmtRemaining(dl - now);
      var row = cds[i].parentNode;
      var task = EM.incident && (EM.incident.tasks || []).filter(function (t) {
        return String(t.id) === row.getAttribute("data-task"); })[0];
      if (task) row.className = "em-row em-task " + level(task, now);
    }
    var etas = document.querySelectorAll("#emergency-body [data-eta]");
    for (var k = 0; k < etas.length; k++) {
      var left = Number(etas[k].getAttribute("data-eta")) - now;
      etas[k].textContent = left > 0 ? "预计 " + cw.fmtRemaining(left) : "应已到达";
    }
  }

  // --- entering and leaving -----------------------------------------------------------------------
  function enter(inc) {
    var first = !EM.active || !EM.incident || EM.incident.id !== inc.id;
    EM.incident = inc;
    EM.active = true;
    document.body.classList.add("em-on");
    document.body.setAttribute("data-emergency", String(inc.id));
    drawBoard(inc);
    drawMap(inc, first);
    if (cw.videoWall) cw.videoWall.showIncident((inc.cameras || []).map(function (c) { return c.id; }),
                                                inc.conference || null);
  }
  function leave() {
    if (!EM.active) return;
    EM.active = false;
    EM.incident = null;
    document.body.classList.remove("em-on");
    document.body.removeAttribute("data-emergency");
    cw.setProps("incident-layer", {data: {type: "FeatureCollection", features: []}});
    var home = homeBounds();
    if (home) cw.setProps("case-map", {viewport: {bounds: home, transition: "fitBounds", options: {animate: false}}});
    if (cw.videoWall) cw.videoWall.restore();
    window.dispatchEvent(new Event("resize"));  // the trend charts come back: let Plotly size them
  }

  var started = false;
  on("state", function () {
    if (started) { refresh(); return; }
    started = true;
    refresh();
  });
  on("incident", function () { refresh(); });
  on("tick", tick);
  var connects = 0;
  on("connect", function () { if (connects++ > 0) refresh(); });
})();
