/* citywall case layer (案件图层): the open cases as clustered markers on the Leaflet map, kept up to date
 * case by case instead of re-clustering every case on every change.
 *
 * Cases are grouped in square cells of RADIUS screen pixels at the map's whole zoom level (grid
 * clustering); a cell of one case is that case's marker, a bigger cell a cluster marker at the cell's
 * centroid with the count and the overdue count. A changed case marks only its old and new cells
 * dirty and `flush()` redraws just those markers, so a batch of events costs a few markers, not
 * 20,000. Only cells inside the (padded) viewport have a marker. The whole grid is rebuilt when the
 * whole zoom level changes (a few milliseconds for 20,000 cases).
 *
 * The Leaflet map is the one dash-leaflet creates for `case-map`: a Leaflet init hook hands it over. */
(function () {
  "use strict";
  var cw = (window.citywall = window.citywall || {});
  var RADIUS = 56;          // cell size in screen pixels
  var MAX_CLUSTER_ZOOM = 16; // above it every case is its own marker
  var PAD = 0.3;            // cells this far (share of the viewport) outside it get markers too
  var MAP_ID = "case-map";

  function project(lat, lon) {
    // Web Mercator, normalised to [0, 1]: x = 256·2^z·px / 256 at zoom z
    var s = Math.sin(lat * Math.PI / 180);
    s = Math.max(-0.9999, Math.min(0.9999, s));
    return [lon / 360 + 0.5, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
  }
  function unproject(x, y) {
    var n = Math.PI - 2 * Math.PI * y;
    return [180 / Math.PI * Math.atan(0.5 * (Math.exp(n) - Math.exp(-n))), (x - 0.5) * 360];
  }

  function CaseLayer() {
    this.map = null;
    this.group = null;
    this.points = new Map();   // case id → {rec, x, y, key}
    this.cells = new Map();    // cell key → {key, ids: Set, sx, sy, marker, visible}
    this.dirty = new Set();    // cell keys to redraw
    this.zoom = null;          // the whole zoom level the cells are built for
    this.view = null;          // padded viewport in normalised coordinates
    this.stats = {rebuilds: 0, flushes: 0, markers: 0};
  }
  var P = CaseLayer.prototype;

  P.cellKey = function (pt, id) {
    if (this.zoom == null) return 0;
    if (this.zoom > MAX_CLUSTER_ZOOM) return -id;  // no clustering: one cell per case
    var scale = 256 * Math.pow(2, this.zoom) / RADIUS;
    return Math.floor(pt.x * scale) * 4194304 + Math.floor(pt.y * scale);
  };

  P.addToCell = function (id, pt) {
    var key = this.cellKey(pt, id), cell = this.cells.get(key);
    if (!cell) { cell = {key: key, ids: new Set(), sx: 0, sy: 0, marker: null}; this.cells.set(key, cell); }
    cell.ids.add(id); cell.sx += pt.x; cell.sy += pt.y;
    pt.key = key;
    this.dirty.add(key);
  };
  P.removeFromCell = function (id, pt) {
    var cell = this.cells.get(pt.key);
    if (!cell) return;
    cell.ids.delete(id); cell.sx -= pt.x; cell.sy -= pt.y;
    this.dirty.add(pt.key);
  };

  /** Replace every case (the full state was loaded). */
  P.setAll = function (recs) {
    this.points.clear();
    var self = this;
    recs.forEach(function (rec) {
      if (rec.lat == null || rec.lon == null) return;
      var xy = project(rec.lat, rec.lon);
      self.points.set(rec.id, {rec: rec, x: xy[0], y: xy[1], key: null});
    });
    this.rebuild();
  };

  /** One case changed, appeared (rec) or left the map (rec.o === false / no position). */
  P.put = function (rec) {
    var pt = this.points.get(rec.id);
    var gone = rec.o === false || rec.lat == null || rec.lon == null;
    if (pt && (gone || pt.rec.lat !== rec.lat || pt.rec.lon !== rec.lon)) {
      this.removeFromCell(rec.id, pt);
      this.points.delete(rec.id);
      pt = null;
    }
    if (gone) return;
    if (pt) { pt.rec = rec; this.dirty.add(pt.key); return; }
    var xy = project(rec.lat, rec.lon);
    pt = {rec: rec, x: xy[0], y: xy[1], key: null};
    this.points.set(rec.id, pt);
    this.addToCell(rec.id, pt);
  };

  /** These cases' colours changed with time (80% used, overdue): redraw their cells. */
  P.touch = function (ids) {
    for (var i = 0; i < ids.length; i++) {
      var pt = this.points.get(ids[i]);
      if (pt) this.dirty.add(pt.key);
    }
  };

  P.rebuild = function () {
    if (this.group) this.group.clearLayers();
    this.stats.markers = 0;
    this.cells.clear();
    this.dirty.clear();
    this.stats.rebuilds++;
    var self = this;
    this.points.forEach(function (pt, id) { self.addToCell(id, pt); });
    this.dirty.clear();
    this.updateView();
    this.cells.forEach(function (cell) { self.draw(cell); });
  };

  P.inView = function (cell) {
    var v = this.view, n = cell.ids.size;
    if (!v || !n) return false;
    var x = cell.sx / n, y = cell.sy / n;
    return x >= v[0] && x <= v[2] && y >= v[1] && y <= v[3];
  };

  P.updateView = function () {
    if (!this.map || !this.map._loaded) { this.view = null; return; }
    var b = this.map.getBounds(), sw = project(b.getSouth(), b.getWest()), ne = project(b.getNorth(), b.getEast());
    var dx = (ne[0] - sw[0]) * PAD, dy = (sw[1] - ne[1]) * PAD;
    this.view = [sw[0] - dx, ne[1] - dy, ne[0] + dx, sw[1] + dy];
  };

  /** Redraw one cell's marker (or drop it when the cell is empty or out of view). */
  P.draw = function (cell) {
    if (cell.marker) { this.group.removeLayer(cell.marker); cell.marker = null; this.stats.markers--; }
    if (!cell.ids.size) { this.cells.delete(cell.key); return; }
    if (!this.group || !this.inView(cell)) return;
    cell.marker = cell.ids.size === 1 ? this.caseMarker(cell) : this.clusterMarker(cell);
    this.group.addLayer(cell.marker);
    this.stats.markers++;
  };

  P.caseMarker = function (cell) {
    var id = cell.ids.values().next().value, rec = this.points.get(id).rec;
    var feature = {type: "Feature", geometry: {type: "Point", coordinates: [rec.lon, rec.lat]}, properties: rec};
    return cw.map.pointToLayer(feature, L.latLng(rec.lat, rec.lon));
  };

  P.clusterMarker = function (cell) {
    var now = Date.now(), overdue = 0, warn = 0, self = this;
    var west = Infinity, east = -Infinity, south = Infinity, north = -Infinity;
    cell.ids.forEach(function (id) {
      var r = self.points.get(id).rec, lvl = cw.slaLevel(r, now);
      if (lvl === 2) overdue++; else if (lvl === 1) warn++;
      if (r.lon < west) west = r.lon; if (r.lon > east) east = r.lon;  // eslint-disable-line curly
      if (r.lat < south) south = r.lat; if (r.lat > north) north = r.lat;  // eslint-disable-line curly
    });
    var c = unproject(cell.sx / cell.ids.size, cell.sy / cell.ids.size);
    var marker = L.marker(L.latLng(c[0], c[1]), {icon: cw.map.clusterIcon(cell.ids.size, overdue, warn),
                                                 keyboard: false});
    var map = this.map;
    marker.on("click", function () {  // zoom to the cluster's cases
      if (west === east && south === north) map.setView([south, west], Math.min(map.getMaxZoom(), map.getZoom() + 2));
      else map.fitBounds([[south, west], [north, east]], {padding: [24, 24]});
    });
    return marker;
  };

  /** Whether the case is drawn on the map now (its own marker or the cluster holding it). */
  P.shown = function (id) {
    var pt = this.points.get(id), cell = pt && this.cells.get(pt.key);
    var icon = cell && cell.marker && cell.marker._icon;
    return !!(icon && icon.isConnected && !this.dirty.has(pt.key));
  };

  /** Redraw the dirty cells: called once per animation frame by the screen runtime. */
  P.flush = function () {
    if (!this.dirty.size) return 0;
    var n = this.dirty.size, self = this;
    this.stats.flushes++;
    this.dirty.forEach(function (key) { var cell = self.cells.get(key); if (cell) self.draw(cell); });
    this.dirty.clear();
    return n;
  };

  /** After a pan or zoom: rebuild on a new whole zoom level, else add/drop markers entering/leaving the view. */
  P.moved = function () {
    var z = Math.floor(this.map.getZoom());
    if (z !== this.zoom) { this.zoom = z; this.rebuild(); return; }
    this.updateView();
    var self = this;
    this.cells.forEach(function (cell) {
      var want = self.inView(cell);
      if (want && !cell.marker) self.draw(cell);
      else if (!want && cell.marker) { self.group.removeLayer(cell.marker); cell.marker = null; self.stats.markers--; }
    });
  };

  P.attach = function (map) {
    if (this.map === map) return;
    this.map = map;
    cw.leafletMap = map;
    var waiting = mapWaiters.splice(0);
    for (var i = 0; i < waiting.length; i++) waiting[i](map);
    this.group = L.layerGroup().addTo(map);
    var self = this;
    map.on("moveend zoomend viewreset", function () { self.moved(); });
    map.whenReady(function () { self.zoom = Math.floor(map.getZoom()); self.rebuild(); });
  };

  // Other layers drawn straight on the map (vehicles) wait for it here.
  var mapWaiters = [];
  cw.onMap = function (fn) { if (cw.leafletMap) fn(cw.leafletMap); else mapWaiters.push(fn); };

  cw.caseLayer = new CaseLayer();
  cw.CaseLayer = CaseLayer;

  // dash-leaflet creates the map: take it as it is made (Leaflet is loaded before this file).
  function hook() {
    if (!window.L || !L.Map) { setTimeout(hook, 20); return; }
    if (L.Map.__citywallHook) return;
    L.Map.__citywallHook = true;
    L.Map.addInitHook(function () {
      var el = this.getContainer && this.getContainer();
      if (el && el.id === MAP_ID) cw.caseLayer.attach(this);
    });
  }
  hook();
})();
