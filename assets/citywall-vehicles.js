/* citywall vehicle layer (车辆与人员实时位置) on the case map, on the wall and in the console.
 *
 * The initial state comes from /wall/api/vehicles (plate, type, department, latest fix); then the
 * screen's socket brings `vehicles` messages (the GPS summary, coalesced by the server to about one a
 * second) with the devices that moved. A fix older than two minutes is drawn grey (定位过时), a device
 * not heard from for five minutes is marked offline. A click on a vehicle draws its last hour
 * (轨迹) and selects it; the selected vehicle can be followed (the map keeps it in the centre).
 * The controls filter by department and type. Texts are set with textContent. */
(function () {
  "use strict";
  var cw = (window.citywall = window.citywall || {});
  function on(name, fn) { var h = (cw._hooks = cw._hooks || {}); (h[name] = h[name] || []).push(fn); }

  var VH = cw.vehicles = {byDevice: {}, staleMs: 120000, offlineMs: 300000, departments: {},
                          filter: {dept: "", type: ""}, selected: null, follow: false, loaded: false,
                          frame: 0, lastFlags: "", reloadAt: 0, updates: 0};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = String(text);
    return e;
  }
  function withToken(url) {
    var tok = new URLSearchParams(window.location.search).get("token");
    return tok ? url + (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(tok) : url;
  }

  function merge(rec, now) {
    var cur = VH.byDevice[rec.device];
    if (!cur) cur = VH.byDevice[rec.device] = {device: rec.device, name: rec.device, type: "其他", heard: 0};
    for (var k in rec) if (rec[k] !== undefined && rec[k] !== null) cur[k] = rec[k];
    return cur;
  }
  function load() {
    VH.reloadAt = Date.now();
    return fetch(withToken("/wall/api/vehicles"), {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { return r.ok ? r.json() : null; }, function () { return null; })
      .then(function (body) {
        if (!body) return;
        var now = Date.now();
        VH.staleMs = body.stale_after_ms || VH.staleMs;
        VH.offlineMs = body.offline_after_ms || VH.offlineMs;
        VH.departments = body.departments || {};
        (body.vehicles || []).forEach(function (v) {
          var known = VH.byDevice[v.device];
          if (known && known.t && v.t && known.t > v.t) { v = Object.assign({}, v, {lat: known.lat, lon: known.lon,
            t: known.t, heading: known.heading, speed: known.speed}); }
          var cur = merge(v, now);
          if (v.online && !cur.heard) cur.heard = now;
        });
        VH.loaded = true;
        buildControls();
        render();
      });
  }

  function flags(rec, now) {
    rec.stale = rec.t == null || now - rec.t > VH.staleMs;
    rec.offline = rec.online === false || (rec.heard ? now - rec.heard > VH.offlineMs : rec.online !== true);
  }
  function visible(rec) {
    if (VH.filter.dept && String(rec.department_id) !== VH.filter.dept) return false;
    if (VH.filter.type && rec.type !== VH.filter.type) return false;
    return rec.lat != null && rec.lon != null;
  }
  function schedule() {
    if (VH.frame) return;
    VH.frame = requestAnimationFrame(function () { VH.frame = 0; render(); });
  }
  // The markers live straight on the Leaflet map, one per device, and are updated in place: a moved
  // device is moved (setLatLng), its icon is rebuilt only when its look changed (type, flags, heading).
  // Rebuilding a GeoJSON layer of every device each second cost the wall most of its main thread.
  var markers = {}, group = null;
  function look(p) {
    return [p.type, p.offline, p.stale, p.state, p.busy, p.followed, Math.round(Number(p.heading) || 0)].join("|");
  }
  function render() {
    var now = Date.now(), sig = [], seen = {};
    if (!group && cw.leafletMap) {
      group = L.layerGroup().addTo(cw.leafletMap);
      cw.leafletMap.on("moveend", schedule);  // devices entering the view get their marker
    }
    // only devices in (or near) the view get a marker: a fleet outside the district costs nothing
    var view = group && cw.leafletMap._loaded ? cw.leafletMap.getBounds().pad(0.3) : null;
    Object.keys(VH.byDevice).forEach(function (key) {
      var rec = VH.byDevice[key];
      flags(rec, now);
      sig.push(key + (rec.stale ? "s" : "") + (rec.offline ? "o" : ""));
      if (!group || !visible(rec)) return;
      var latlng = L.latLng(rec.lat, rec.lon);
      if (view && !view.contains(latlng) && !(VH.follow && VH.selected === key)) return;
      seen[key] = true;
      var props = Object.assign({}, rec, {followed: VH.follow && VH.selected === key});
      var m = markers[key];
      if (m && m.__look !== look(props)) { group.removeLayer(m); m = null; }
      if (m) {
        Object.assign(m.__props, props);  // the tooltip and the click read this object
        if (!m.getLatLng().equals(latlng)) m.setLatLng(latlng);
        return;
      }
      var feature = {type: "Feature", geometry: {type: "Point", coordinates: [rec.lon, rec.lat]}, properties: props};
      m = cw.map.vehicleToLayer(feature, latlng);
      m.__props = props;
      m.__look = look(props);
      markers[key] = m;
      group.addLayer(m);
    });
    Object.keys(markers).forEach(function (key) {
      if (!seen[key]) { group.removeLayer(markers[key]); delete markers[key]; }
    });
    VH.lastFlags = sig.join(",");
    var sel = VH.selected && VH.byDevice[VH.selected];
    if (sel && VH.follow && cw.setProps) {
      cw.setProps("case-map", {viewport: {center: [sel.lat, sel.lon], transition: "panTo"}});
    }
  }
  VH.render = render;

  // --- live positions from the socket ------------------------------------------------------------
  on("vehicles", function (msg) {
    var now = Date.now(), unknown = false;
    (msg && msg.devices || []).forEach(function (d) {
      if (!VH.byDevice[d.device]) unknown = true;
      var cur = merge(d, now);
      cur.online = true;
      cur.heard = now;
    });
    VH.updates++;
    if (unknown) reloadSoon();  // a new device: fetch its details
    schedule();
  });
  var reloadTimer = 0;
  function reloadSoon() {  // at most one details fetch every 2 s
    if (reloadTimer) return;
    var wait = Math.max(0, 2000 - (Date.now() - VH.reloadAt));
    reloadTimer = setTimeout(function () { reloadTimer = 0; load(); }, wait);
  }
  // stale and offline follow the time: repaint when a flag flips
  on("tick", function () {
    if (!VH.loaded) return;
    var now = Date.now(), sig = [];
    Object.keys(VH.byDevice).forEach(function (key) {
      var rec = VH.byDevice[key];
      flags(rec, now);
      sig.push(key + (rec.stale ? "s" : "") + (rec.offline ? "o" : ""));
    });
    if (sig.join(",") !== VH.lastFlags) schedule();
  });

  // --- selection, track, follow -------------------------------------------------------------------
  function clearTrack() {
    if (cw.setProps) cw.setProps("vehicle-track", {data: {type: "FeatureCollection", features: []}});
  }
  function select(device) {
    VH.selected = device;
    VH.track = null;
    VH.follow = false;
    clearTrack();
    buildControls();
    render();
    var rec = device && VH.byDevice[device];
    if (!rec || rec.id == null) return;
    fetch(withToken("/wall/api/vehicles/" + encodeURIComponent(rec.id) + "/track"), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; }, function () { return null; })
      .then(function (body) {
        if (!body || VH.selected !== device) return;
        VH.track = body;
        if (cw.setProps) cw.setProps("vehicle-track", {data: {type: "FeatureCollection", features: [body.track]}});
        buildControls();
      });
  }
  VH.select = select;
  cw.onVehicleClick = function (p) { select(VH.selected === p.device ? null : p.device); };

  function option(value, text, current) {
    var o = el("option", null, text);
    o.value = value;
    if (value === current) o.selected = true;
    return o;
  }
  function buildControls() {
    var box = document.getElementById("vehicle-controls");
    if (!box) return;
    while (box.firstChild) box.removeChild(box.firstChild);
    var recs = Object.keys(VH.byDevice).map(function (k) { return VH.byDevice[k]; });
    if (!recs.length) return;
    var depts = {}, types = {};
    recs.forEach(function (r) {
      if (r.department_id != null) depts[r.department_id] = r.department || VH.departments[r.department_id] || r.department_id;
      if (r.type) types[r.type] = true;
    });
    box.appendChild(el("span", "veh-count", recs.length + " 台/人"));
    var ds = el("select", "veh-dept");
    ds.appendChild(option("", "全部部门", VH.filter.dept));
    Object.keys(depts).forEach(function (id) { ds.appendChild(option(String(id), depts[id], VH.filter.dept)); });
    ds.addEventListener("change", function () { VH.filter.dept = ds.value; render(); });
    var ts = el("select", "veh-type");
    ts.appendChild(option("", "全部类型", VH.filter.type));
    Object.keys(types).sort().forEach(function (t) { ts.appendChild(option(t, t === "person" ? "人员" : t, VH.filter.type)); });
    ts.addEventListener("change", function () { VH.filter.type = ts.value; render(); });
    box.appendChild(ds); box.appendChild(ts);
    var sel = VH.selected && VH.byDevice[VH.selected];
    if (sel) {
      var name = el("span", "veh-selected", (sel.plate || sel.name || sel.device) +
        (VH.track ? " · 轨迹 " + VH.track.count + " 点" : ""));
      var follow = el("button", "veh-follow-btn" + (VH.follow ? " veh-follow" : ""), VH.follow ? "跟随中" : "跟随");
      follow.type = "button";
      follow.addEventListener("click", function () { VH.follow = !VH.follow; buildControls(); render(); });
      var close = el("button", "veh-clear", "✕");
      close.type = "button";
      close.addEventListener("click", function () { select(null); });
      box.appendChild(name); box.appendChild(follow); box.appendChild(close);
    }
  }

  var started = false;
  on("state", function () {
    if (started) return;
    started = true;
    load();
    if (cw.onMap) cw.onMap(function () { if (VH.loaded) render(); });
  });
  // after a reconnect positions may have been missed: refetch them
  var connects = 0;
  on("connect", function () { if (connects++ > 0) load(); });
})();
