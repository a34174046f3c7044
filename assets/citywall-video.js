/* citywall video wall (视频墙) and camera layer (视频点位): live cameras over WebRTC on the screens.
 *
 * The wall's `video-wall` panel holds 1, 2×2, 3×3 or 4×4 tiles, each a <video> played by
 * assets/webrtc-player.js from the streams service on the same host (port and token from the
 * screen's state: `video`). A tile's camera is picked from its list; a click on a tile enlarges it
 * (and a second click puts it back). The wall opens on 2×2 with the first cameras; the layout and the
 * picks are kept per browser. The map's `camera-layer` shows every camera; a click opens it in a
 * pop-out player (on the wall and in the console). Emergency mode (citywall-emergency.js) puts the
 * cameras nearest the incident, and the conference when one runs, on the wall and restores it after.
 * Names are set with textContent, never as HTML. */
(function () {
  "use strict";
  var cw = (window.citywall = window.citywall || {});
  function on(name, fn) { var h = (cw._hooks = cw._hooks || {}); (h[name] = h[name] || []).push(fn); }

  var LAYOUTS = [1, 4, 9, 16];
  var STORE_KEY = "citywall.videoWall";
  var V = cw.videoWall = {layout: 4, tiles: [], cameras: [], byId: {}, loaded: false, saved: null, mode: "normal",
                          popout: null};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = String(text);
    return e;
  }
  function streamsBase() {
    var v = cw.video || {};
    return window.location.protocol + "//" + window.location.hostname + ":" + (v.port || 8060);
  }
  function playOptions(extra) {
    return Object.assign({base: streamsBase(), token: (cw.video || {}).token || ""}, extra || {});
  }
  function camName(id) { var c = V.byId[id]; return c ? c.name : "#" + id; }

  // --- cameras ------------------------------------------------------------------------------------
  function loadCameras() {
    var tok = new URLSearchParams(window.location.search).get("token");
    return fetch("/wall/api/cameras" + (tok ? "?token=" + encodeURIComponent(tok) : ""),
                 {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : {cameras: []}; })
      .then(function (body) {
        V.cameras = (body.cameras || []).filter(function (c) { return c.status === "active"; });
        V.byId = {};
        V.cameras.forEach(function (c) { V.byId[c.id] = c; });
        V.loaded = true;
        renderCameraLayer();
        return V.cameras;
      }, function () { return []; });
  }
  function renderCameraLayer() {
    var features = V.cameras.map(function (c) {
      return {type: "Feature", geometry: {type: "Point", coordinates: [c.lon, c.lat]},
              properties: {id: c.id, name: c.name}};
    });
    if (cw.setProps) cw.setProps("camera-layer", {data: {type: "FeatureCollection", features: features}});
  }

  // --- tiles --------------------------------------------------------------------------------------
  function tilesNode() { return document.getElementById("video-wall-tiles"); }

  function makeTile(index) {
    var box = el("div", "vt");
    box.setAttribute("data-tile", String(index));
    var video = document.createElement("video");
    video.muted = true; video.autoplay = true; video.playsInline = true;
    video.className = "vt-video";
    var bar = el("div", "vt-bar");
    var name = el("span", "vt-name");
    var pick = el("select", "vt-pick");
    pick.title = "选择摄像头 / pick a camera";
    bar.appendChild(name); bar.appendChild(pick);
    var state = el("span", "vt-state");
    box.appendChild(video); box.appendChild(bar); box.appendChild(state);
    var tile = {index: index, box: box, video: video, name: name, pick: pick, state: state, camera: null,
                conference: null, player: null};
    video.addEventListener("click", function () { toggleBig(tile); });
    state.addEventListener("click", function () { toggleBig(tile); });
    pick.addEventListener("change", function () {
      var v = pick.value;
      assign(tile, v ? Number(v) : null);
      save();
    });
    fillPick(tile);
    return tile;
  }
  function fillPick(tile) {
    var pick = tile.pick;
    while (pick.firstChild) pick.removeChild(pick.firstChild);
    var none = el("option", null, "— 选择摄像头 —");
    none.value = "";
    pick.appendChild(none);
    V.cameras.forEach(function (c) {
      var o = el("option", null, c.name);
      o.value = String(c.id);
      pick.appendChild(o);
    });
    pick.value = tile.camera != null ? String(tile.camera) : "";
  }
  function stopTile(tile) {
    if (tile.player) { tile.player.stop(); tile.player = null; }
    tile.video.srcObject = null;
  }
  /* Play camera `cameraId` (or nothing) in `tile`. */
  function assign(tile, cameraId) {
    stopTile(tile);
    tile.camera = cameraId;
    tile.conference = null;
    tile.box.setAttribute("data-camera", cameraId != null ? String(cameraId) : "");
    tile.box.removeAttribute("data-conference");
    tile.box.classList.remove("vt-conf");
    tile.name.textContent = cameraId != null ? camName(cameraId) : "";
    if (tile.pick.value !== (cameraId != null ? String(cameraId) : "")) fillPick(tile);
    if (cameraId != null && window.CitywallVideo) {
      tile.player = window.CitywallVideo.play(tile.video, cameraId, playOptions());
    }
  }
  /* Play a conference's composed picture (会商画面, view only) in `tile`. */
  function assignConference(tile, room, title) {
    stopTile(tile);
    tile.camera = null;
    tile.conference = String(room);
    tile.box.setAttribute("data-camera", "");
    tile.box.setAttribute("data-conference", String(room));
    tile.box.classList.add("vt-conf");
    tile.name.textContent = "视频会商 · " + (title || room);
    tile.pick.value = "";
    if (window.CitywallVideo) {
      tile.player = window.CitywallVideo.play(tile.video, null, playOptions({
        offerPath: "/streams/v1/conferences/" + encodeURIComponent(String(room)) + "/view"}));
    }
  }
  function toggleBig(tile) {
    var big = !tile.box.classList.contains("vt-big");
    V.tiles.forEach(function (t) { t.box.classList.remove("vt-big"); });
    if (big) tile.box.classList.add("vt-big");
    var root = tilesNode();
    if (root) root.classList.toggle("has-big", big);
  }

  function setLayout(n, picks) {
    if (LAYOUTS.indexOf(n) < 0) n = 4;
    var root = tilesNode();
    if (!root) return;
    V.layout = n;
    root.setAttribute("data-layout", String(n));
    root.style.gridTemplateColumns = "repeat(" + Math.sqrt(n) + ", minmax(0, 1fr))";
    root.classList.remove("has-big");
    while (V.tiles.length > n) {
      var gone = V.tiles.pop();
      stopTile(gone);
      root.removeChild(gone.box);
    }
    var used = {};
    V.tiles.forEach(function (t) { if (t.camera != null) used[t.camera] = true; });
    while (V.tiles.length < n) {
      var tile = makeTile(V.tiles.length);
      V.tiles.push(tile);
      root.appendChild(tile.box);
      var want = picks && picks[tile.index] !== undefined ? picks[tile.index] : nextCamera(used);
      if (want != null && !V.byId[want]) want = nextCamera(used);
      if (want != null) used[want] = true;
      assign(tile, want);
    }
    V.tiles.forEach(function (t) { t.box.classList.remove("vt-big"); });
    var buttons = document.querySelectorAll("#video-wall .vw-layout");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].classList.toggle("on", buttons[i].getAttribute("data-layout") === String(n));
    }
  }
  function nextCamera(used) {
    for (var i = 0; i < V.cameras.length; i++) if (!used[V.cameras[i].id]) return V.cameras[i].id;
    return null;
  }
  function save() {
    if (V.mode !== "normal") return;  // emergency picks are not the screen's own
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify({layout: V.layout, cameras: V.tiles.map(function (t) {
        return t.camera; })}));
    } catch (e) { /* private mode */ }
  }
  function stored() {
    try { return JSON.parse(localStorage.getItem(STORE_KEY) || "null"); } catch (e) { return null; }
  }

  // --- emergency mode (called by citywall-emergency.js) -----------------------------------------------
  /* Show the cameras nearest an incident (nearest first) and the conference when one runs. */
  V.showIncident = function (cameraIds, conference) {
    if (!V.ready) { V.pending = [cameraIds, conference]; return; }
    if (!tilesNode()) return;
    if (V.mode === "normal") V.saved = {layout: V.layout, cameras: V.tiles.map(function (t) { return t.camera; })};
    V.mode = "emergency";
    var wanted = (cameraIds || []).filter(function (id) { return V.byId[id]; });
    var count = wanted.length + (conference ? 1 : 0);
    var n = count <= 1 ? 1 : count <= 4 ? 4 : count <= 9 ? 9 : 16;
    if (n !== V.layout) setLayout(n, []);
    var k = 0;
    V.tiles.forEach(function (t, i) {
      if (i === 0 && conference) {
        if (t.conference !== String(conference.room)) assignConference(t, conference.room, conference.title);
        return;
      }
      var id = wanted[k++];
      if (id === undefined) id = null;
      if (t.camera !== id || t.conference) assign(t, id);
    });
    var note = document.getElementById("video-wall-note");
    if (note) note.textContent = conference ? "应急 · 会商中" : "应急 · 现场周边";
  };
  V.restore = function () {
    V.pending = null;
    if (V.mode === "normal") return;
    V.mode = "normal";
    var saved = V.saved || {layout: 4, cameras: []};
    V.saved = null;
    setLayout(saved.layout, saved.cameras);
    V.tiles.forEach(function (t, i) {
      var id = saved.cameras[i] !== undefined ? saved.cameras[i] : t.camera;
      if (t.camera !== id || t.conference) assign(t, id);
    });
    var note = document.getElementById("video-wall-note");
    if (note) note.textContent = "";
  };

  // --- the pop-out player (a camera clicked on the map or in the console) ------------------------------
  function closePopout() {
    var p = V.popout;
    if (!p) return;
    if (p.player) p.player.stop();
    if (p.box.parentNode) p.box.parentNode.removeChild(p.box);
    V.popout = null;
  }
  cw.watchCamera = function (cameraId, name) {
    closePopout();
    var box = el("div", "video-popout");
    box.id = "video-popout";
    box.setAttribute("data-camera", String(cameraId));
    var head = el("div", "vp-head");
    head.appendChild(el("span", "vp-name", name || camName(cameraId)));
    var close = el("button", "vp-close", "✕");
    close.type = "button";
    close.addEventListener("click", closePopout);
    head.appendChild(close);
    var video = document.createElement("video");
    video.muted = true; video.autoplay = true; video.playsInline = true;
    box.appendChild(head); box.appendChild(video);
    document.body.appendChild(box);
    V.popout = {box: box, player: window.CitywallVideo ? window.CitywallVideo.play(video, cameraId, playOptions()) : null};
    return V.popout;
  };
  cw.closeCameraPopout = closePopout;
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") closePopout(); });
  // console: buttons rendered by Dash carry data-watch-camera
  document.addEventListener("click", function (e) {
    var t = e.target && e.target.closest ? e.target.closest("[data-watch-camera]") : null;
    if (t) cw.watchCamera(Number(t.getAttribute("data-watch-camera")), t.getAttribute("data-camera-name") || null);
  });

  // --- start --------------------------------------------------------------------------------------
  var started = false;
  on("state", function () {
    if (started) return;
    started = true;
    loadCameras().then(function () {
      var root = tilesNode();
      if (!root) return;
      var buttons = document.querySelectorAll("#video-wall .vw-layout");
      for (var i = 0; i < buttons.length; i++) {
        buttons[i].addEventListener("click", function (ev) {
          setLayout(Number(ev.currentTarget.getAttribute("data-layout")));
          save();
        });
      }
      var keep = stored() || {};
      var params = new URLSearchParams(window.location.search);
      var layout = Number(params.get("video") || keep.layout || 4);
      setLayout(layout, keep.cameras || []);
      V.ready = true;
      if (V.pending) { var p = V.pending; V.pending = null; V.showIncident(p[0], p[1]); }
      if (cw.fire) cw.fire("video-ready", V);
    });
  });
  V.setLayout = setLayout;
  V.assign = function (index, cameraId) { if (V.tiles[index]) { assign(V.tiles[index], cameraId); save(); } };
})();
