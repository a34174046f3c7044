/* citywall map functions (案件地图): marker, cluster and layer styles for dash-leaflet.
 * Referenced from Python as {"variable": "citywall.map.<name>"}; dash-leaflet calls each with the
 * Leaflet arguments plus the component's props (`context`, holding `hideout`).
 * Text from reports never goes through innerHTML: tooltips and popups are DOM nodes with textContent. */
(function () {
  "use strict";
  var cw = (window.citywall = window.citywall || {});

  // Status colours: 待受理/待核实/待立案 blue, 待派遣 cyan, 待签收/处置中 green, 待核查/待结案 violet, 挂账 grey.
  var STATUS_COLOUR = {
    reported: "#4aa3ff", verifying: "#4aa3ff", to_register: "#4aa3ff",
    registered: "#22d3ee", dispatched: "#34d399", handling: "#34d399",
    checking: "#a78bfa", to_close: "#a78bfa", suspended: "#94a3b8"
  };
  cw.STATUS_COLOUR = STATUS_COLOUR;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  cw.el = el;

  function slaLevel(p, now) {
    if (p.dl != null && now >= p.dl) return 2;
    if (p.wa != null && now >= p.wa) return 1;
    return 0;
  }
  cw.slaLevel = slaLevel;

  function caseClass(p, now) {
    var lvl = slaLevel(p, now || Date.now());
    var cls = "cw-case cw-st-" + (p.s || "x");
    if (p.u === "urgent") cls += " cw-urgent";
    if (lvl === 2) cls += " cw-overdue";
    else if (lvl === 1) cls += " cw-warn";
    return cls;
  }

  function caseTooltip(p) {
    var box = el("div", "cw-tip");
    box.appendChild(el("div", "cw-tip-n", p.n));
    var names = (cw.lookups && cw.lookups.classes) || {};
    var st = (cw.lookups && cw.lookups.statuses) || {};
    box.appendChild(el("div", null, (names[p.c] || p.c) + " · " + (st[p.s] || p.s)));
    if (p.dl != null) box.appendChild(el("div", "cw-tip-dl", cw.fmtRemaining ? cw.fmtRemaining(p.dl - Date.now()) : ""));
    return box;
  }

  function pointToLayer(feature, latlng, context) {
    var p = feature.properties || {};
    var size = p.u === "urgent" ? 18 : 14;
    var icon = L.divIcon({className: caseClass(p), iconSize: [size, size], html: ""});
    var marker = L.marker(latlng, {icon: icon, keyboard: false, riseOnHover: true});
    marker.bindTooltip(function () { return caseTooltip(p); }, {direction: "top", offset: [0, -8]});
    marker.on("click", function () {
      if (cw.onCaseClick) cw.onCaseClick(p.id, marker);
    });
    return marker;
  }

  // A cluster of cases (assets/citywall-cases.js): the count, and the overdue count in red.
  function clusterIcon(count, overdue, warn) {
    var cls = "cw-cluster" + (overdue ? " cw-cluster-overdue" : warn ? " cw-cluster-warn" : "");
    var size = count < 10 ? 34 : count < 100 ? 42 : count < 1000 ? 52 : 62;
    var html = '<div><span class="cw-cluster-n">' + Number(count) + "</span>" +
      (overdue ? '<span class="cw-cluster-od">' + Number(overdue) + "</span>" : "") + "</div>";
    return L.divIcon({html: html, className: cls, iconSize: [size, size]});
  }

  // Heat per unit grid (网格热力): open cases per grid from the hideout, drawn as fill opacity.
  function gridStyle(feature, context) {
    var h = (context && context.hideout) || {};
    var n = (h.counts || {})[feature.properties.grid_code] || 0;
    var max = Math.max(1, h.max || 1);
    var t = n ? 0.18 + 0.62 * Math.sqrt(n / max) : 0;
    var colour = t > 0.6 ? "#ff5a36" : t > 0.35 ? "#ff9f1c" : "#ffd166";
    return {weight: 0.5, color: "#16395c", opacity: 0.6, fillColor: n ? colour : "#0a2140", fillOpacity: n ? t * 0.6 : 0.35};
  }

  function districtStyle() { return {weight: 3, color: "#38bdf8", opacity: 0.95, fill: false, dashArray: null}; }
  function streetStyle() { return {weight: 1.8, color: "#3b9ae0", opacity: 0.85, fill: false, dashArray: "7 5"}; }
  function roadStyle(feature) {
    var major = feature.properties && (feature.properties.kind === "main" || feature.properties.level === 1);
    return {weight: major ? 3.2 : 1.8, color: major ? "#7b9cc0" : "#4f6b88", opacity: 0.9};
  }

  function componentToLayer(feature, latlng) {
    var p = feature.properties || {};
    var m = L.circleMarker(latlng, {radius: 4, weight: 1, color: "#e2e8f0", fillColor: "#64748b", fillOpacity: 0.9});
    m.bindTooltip(function () {
      var b = el("div", "cw-tip");
      b.appendChild(el("div", "cw-tip-n", p.name));
      b.appendChild(el("div", null, p.code + " · " + (p.status || "")));
      return b;
    });
    return m;
  }

  // Cameras (视频点位): a click plays the camera (assets/citywall-video.js).
  function cameraToLayer(feature, latlng) {
    var p = feature.properties || {};
    var icon = L.divIcon({className: "cw-cam", iconSize: [18, 18], html: ""});
    var m = L.marker(latlng, {icon: icon, keyboard: false, riseOnHover: true});
    m.bindTooltip(function () { return el("div", "cw-tip", p.name); }, {direction: "top", offset: [0, -8]});
    m.on("click", function () { if (cw.watchCamera) cw.watchCamera(p.id, p.name); });
    return m;
  }

  // Vehicles and field staff (车辆/人员): a glyph per type, an arrow for the heading; grey when the fix
  // is stale (over two minutes), crossed out when offline (assets/citywall-vehicles.js sets the flags).
  var TYPE_GLYPH = {"环卫车": "环", "执法车": "执", "巡查车": "巡", "渣土车": "渣", "洒水车": "洒", "抢修车": "修",
                    "person": "人", "其他": "车"};
  var TYPE_CLASS = {"环卫车": "san", "执法车": "law", "巡查车": "pat", "渣土车": "muck", "洒水车": "water", "抢修车": "fix",
                    "person": "person", "其他": "other"};
  function vehicleClass(p) {
    var cls = "cw-veh cw-veh-" + (TYPE_CLASS[p.type] || "other");
    if (p.offline) cls += " cw-veh-offline";
    else if (p.stale) cls += " cw-veh-stale";
    if (p.state === "alarm") cls += " cw-veh-alarm";
    if (p.busy) cls += " cw-veh-busy";
    if (p.followed) cls += " cw-veh-followed";
    return cls;
  }
  function vehicleToLayer(feature, latlng) {
    var p = feature.properties || {};
    var heading = Number(p.heading) || 0;
    var html = '<i class="cw-veh-dir" style="transform: rotate(' + heading.toFixed(0) + 'deg)"></i>' +
      '<b class="cw-veh-glyph">' + (TYPE_GLYPH[p.type] || "车") + "</b>";
    var icon = L.divIcon({className: vehicleClass(p), iconSize: [26, 26], html: html});
    var m = L.marker(latlng, {icon: icon, keyboard: false, riseOnHover: true, zIndexOffset: 1000});
    m.bindTooltip(function () {
      var b = el("div", "cw-tip");
      b.appendChild(el("div", "cw-tip-n", (p.plate || p.name || p.device) + " · " + (p.type === "person" ? "人员" : p.type)));
      if (p.department) b.appendChild(el("div", null, p.department));
      var age = p.t ? Math.round((Date.now() - p.t) / 1000) : null;
      b.appendChild(el("div", null, (p.speed != null ? Number(p.speed).toFixed(0) + " km/h · " : "") +
        (p.offline ? "离线" : p.stale ? "定位过时" : "在线") + (age != null ? " · " + age + " s" : "")));
      if (p.busy) b.appendChild(el("div", null, "执行任务中"));
      return b;
    }, {direction: "top", offset: [0, -12]});
    m.on("click", function () { if (cw.onVehicleClick) cw.onVehicleClick(p); });
    return m;
  }
  function trackStyle() { return {weight: 3, color: "#facc15", opacity: 0.9, dashArray: "6 4"}; }

  // Emergency mode (应急): the incident's perimeter, its point, the units sent.
  function incidentStyle(feature) {
    var k = feature.properties && feature.properties.kind;
    if (k === "perimeter" || k === "circle" || k === "polygon" || !k) {
      return {weight: 3, color: "#ef4444", opacity: 0.95, fillColor: "#ef4444", fillOpacity: 0.12, dashArray: "8 6"};
    }
    return {weight: 2, color: "#f97316"};
  }
  function incidentToLayer(feature, latlng) {
    var p = feature.properties || {};
    if (p.role === "unit") {
      var icon = L.divIcon({className: "cw-em-unit", iconSize: [22, 22], html: ""});
      var u = L.marker(latlng, {icon: icon, keyboard: false, zIndexOffset: 1200});
      u.bindTooltip(function () {
        var b = el("div", "cw-tip");
        b.appendChild(el("div", "cw-tip-n", p.name || p.device));
        if (p.eta != null) b.appendChild(el("div", null, "预计到达 " + cw.fmtRemaining(p.eta * 1000)));
        return b;
      }, {permanent: true, direction: "right", offset: [12, 0], className: "cw-em-tip"});
      return u;
    }
    var m = L.marker(latlng, {icon: L.divIcon({className: "cw-em-site", iconSize: [30, 30], html: ""}),
                              keyboard: false, zIndexOffset: 1500});
    m.bindTooltip(function () { return el("div", "cw-tip", p.title || ""); }, {direction: "top", offset: [0, -14]});
    return m;
  }

  cw.map = {
    pointToLayer: pointToLayer, clusterIcon: clusterIcon, gridStyle: gridStyle,
    districtStyle: districtStyle, streetStyle: streetStyle, roadStyle: roadStyle,
    componentToLayer: componentToLayer, cameraToLayer: cameraToLayer, vehicleToLayer: vehicleToLayer,
    trackStyle: trackStyle, incidentStyle: incidentStyle, incidentToLayer: incidentToLayer
  };
})();

/* Components (部件) are shown when zoomed in: fetched for the viewport, at most 2,000. */
(function () {
  "use strict";
  window.dash_clientside = window.dash_clientside || {};
  var lastKey = null;
  window.dash_clientside.citywall = Object.assign(window.dash_clientside.citywall || {}, {
    components: function (bounds, zoom) {
      var nu = window.dash_clientside.no_update;
      if (!bounds || zoom == null) return nu;
      if (zoom < 16) {
        if (lastKey !== "none") { lastKey = "none"; return {type: "FeatureCollection", features: []}; }
        return nu;
      }
      var bbox = [bounds[0][1], bounds[0][0], bounds[1][1], bounds[1][0]].map(function (v) { return v.toFixed(5); }).join(",");
      if (bbox === lastKey) return nu;
      lastKey = bbox;
      return fetch("/wall/api/components?bbox=" + bbox, {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : {components: []}; })
        .then(function (body) {
          return {type: "FeatureCollection", features: (body.components || []).map(function (c) {
            return {type: "Feature", geometry: {type: "Point", coordinates: [c.lon, c.lat]},
                    properties: {code: c.code, name: c.name, status: c.status}};
          })};
        });
    }
  });
})();
