/* citywall WebRTC camera player (视频播放): plain JS, no build step, no CDN.
 *
 *   var handle = CitywallVideo.play(videoElement, cameraId, {base: "http://host:8060", token: "..."});
 *   handle.stats   -> {state, attempts, framesDecoded, frameWidth, frameHeight, fps, codec,
 *                      connectedMs, firstFrameMs, framesPainted, lastError}, refreshed every second
 *   handle.stop()  -> closes the connection and stops retrying
 *   CitywallVideo.play(video, null, {base, token, offerPath: "/streams/v1/conferences/7/view"})
 *                  -> the same player on another offer endpoint (a conference's composed picture)
 *
 * The player posts one offer per connection to the streams service (no trickle ICE: it waits for
 * ICE gathering to complete), forces H.264, retries with backoff when the connection fails, and
 * closes every connection on `pagehide` so the server releases the viewer at once.
 * Option `measureLatency: true` reads the timestamp barcode of synthetic cameras on every frame
 * and keeps glass-to-glass samples (ms) in handle.latency.
 */
(function (global) {
  "use strict";

  var BARCODE_BITS = 48;
  var TS_MOD = Math.pow(2, 40);
  var players = [];

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  function waitIceComplete(pc, timeoutMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(function (resolve) {
      var timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
      function check() { if (pc.iceGatheringState === "complete") done(); }
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  function preferH264(transceiver) {
    if (!transceiver.setCodecPreferences || !global.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) return;
    var caps = RTCRtpReceiver.getCapabilities("video");
    if (!caps) return;
    var h264 = caps.codecs.filter(function (c) { return c.mimeType.toLowerCase() === "video/h264"; });
    if (h264.length) transceiver.setCodecPreferences(h264);
  }

  /* Read the timestamp barcode (epoch ms modulo 2^40) from the top-left corner of a frame. */
  function readBarcode(video, canvas) {
    var width = video.videoWidth;
    if (!width) return null;
    var cell = Math.max(4, Math.floor(width / 96));
    var w = cell * (BARCODE_BITS + 2), h = cell * 3;
    canvas.width = w;
    canvas.height = h;
    var ctx = canvas.getContext("2d", {willReadFrequently: true});
    ctx.drawImage(video, 0, 0, w, h, 0, 0, w, h);
    var px = ctx.getImageData(0, 0, w, h).data;
    var ts = 0, checksum = 0;
    for (var i = 0; i < BARCODE_BITS; i++) {
      var x = cell * (i + 1) + Math.floor(cell / 2), y = cell + Math.floor(cell / 2);
      var o = (y * w + x) * 4;
      var bit = (px[o] + px[o + 1] + px[o + 2]) / 3 > 127 ? 1 : 0;
      if (i < 40) ts = ts * 2 + bit; else checksum = checksum * 2 + bit;
    }
    var sum = 0, rest = ts;
    for (var b = 0; b < 5; b++) { sum += rest % 256; rest = Math.floor(rest / 256); }
    return (sum % 256) === checksum ? ts : null;
  }

  function Player(video, cameraId, options) {
    this.video = video;
    this.cameraId = cameraId;
    this.base = (options.base || "").replace(/\/$/, "");
    this.token = options.token || "";
    this.offerPath = options.offerPath || null;
    this.maxBackoffMs = options.maxBackoffMs || 15000;
    this.measureLatency = !!options.measureLatency;
    this.pc = null;
    this.stopped = false;
    this.latency = [];
    this.startedAt = performance.now();
    this.stats = {state: "new", attempts: 0, framesDecoded: 0, frameWidth: 0, frameHeight: 0, fps: 0,
                  codec: "", connectedMs: null, firstFrameMs: null, lastError: null, framesPainted: 0};
    this._canvas = null;
    this._statsTimer = setInterval(this._refreshStats.bind(this), 1000);
    video.muted = true;
    video.playsInline = true;
    video.autoplay = true;
    this._watchFrames();
    this._loop();
  }

  Player.prototype._watchFrames = function () {
    var self = this, video = this.video;
    if (!video.requestVideoFrameCallback) return;
    function onFrame(now, meta) {
      if (self.stopped) return;
      self.stats.framesPainted += 1;
      if (self.stats.firstFrameMs === null) self.stats.firstFrameMs = Math.round(performance.now() - self.startedAt);
      if (self.measureLatency) {
        self._canvas = self._canvas || document.createElement("canvas");
        var ts = readBarcode(video, self._canvas);
        if (ts !== null) {
          var shown = (performance.timeOrigin + (meta.expectedDisplayTime || now)) % TS_MOD;
          var ms = (shown - ts + TS_MOD) % TS_MOD;
          if (ms < 60000) {
            self.latency.push(Math.round(ms * 10) / 10);
            if (self.latency.length > 5000) self.latency.shift();
          }
        }
      }
      video.requestVideoFrameCallback(onFrame);
    }
    video.requestVideoFrameCallback(onFrame);
  };

  Player.prototype._connect = async function () {
    var self = this;
    var pc = new RTCPeerConnection({iceServers: []});
    this.pc = pc;
    pc.addEventListener("connectionstatechange", function () {
      if (pc.connectionState === "connected" && self.stats.connectedMs === null) {
        self.stats.connectedMs = Math.round(performance.now() - self.startedAt);
      }
    });
    var transceiver = pc.addTransceiver("video", {direction: "recvonly"});
    preferH264(transceiver);
    pc.addEventListener("track", function (event) {
      var stream = event.streams && event.streams[0] ? event.streams[0] : new MediaStream([event.track]);
      self.video.srcObject = stream;
      var playing = self.video.play();
      if (playing && playing.catch) playing.catch(function () { /* autoplay is muted: ignore */ });
    });
    await pc.setLocalDescription(await pc.createOffer());
    await waitIceComplete(pc, 3000);
    var headers = {"Content-Type": "application/json"};
    if (this.token) headers.Authorization = "Bearer " + this.token;
    var url = this.base + (this.offerPath ||
      "/streams/v1/cameras/" + encodeURIComponent(this.cameraId) + "/offer");
    var response = await fetch(url, {method: "POST", headers: headers,
      body: JSON.stringify({sdp: pc.localDescription.sdp, type: pc.localDescription.type})});
    if (!response.ok) {
      var message = "HTTP " + response.status;
      try { message = (await response.json()).error.message || message; } catch (e) { /* not JSON */ }
      var err = new Error(message);
      err.status = response.status;
      throw err;
    }
    await pc.setRemoteDescription(await response.json());
    return pc;
  };

  /* Wait until the connection fails or closes (or the player stops). */
  Player.prototype._untilBroken = function (pc) {
    var self = this;
    return new Promise(function (resolve) {
      var disconnectedAt = null;
      var timer = setInterval(function () {
        var s = pc.connectionState;
        if (self.stopped || s === "failed" || s === "closed") { clearInterval(timer); resolve(s); return; }
        if (s === "disconnected") {
          disconnectedAt = disconnectedAt || Date.now();
          if (Date.now() - disconnectedAt > 5000) { clearInterval(timer); resolve(s); }
        } else {
          disconnectedAt = null;
        }
      }, 500);
    });
  };

  Player.prototype._loop = async function () {
    var backoff = 1000;
    while (!this.stopped) {
      this.stats.attempts += 1;
      this.stats.state = "connecting";
      var pc = null;
      try {
        pc = await this._connect();
        this.stats.state = "connected";
        this.stats.lastError = null;
        var connectedAt = Date.now();
        var how = await this._untilBroken(pc);
        if (Date.now() - connectedAt > 10000) backoff = 1000;
        this.stats.lastError = "connection " + how;
      } catch (e) {
        this.stats.lastError = String(e && e.message || e);
        if (e && e.status === 401) this.stats.state = "unauthorized";
      }
      if (pc) pc.close();
      if (this.stopped) break;
      this.stats.state = "retrying";
      await sleep(backoff);
      backoff = Math.min(backoff * 2, this.maxBackoffMs);
    }
    this.stats.state = "stopped";
  };

  Player.prototype._refreshStats = async function () {
    var pc = this.pc;
    if (!pc || this.stopped) return;
    try {
      var report = await pc.getStats();
      var self = this;
      report.forEach(function (s) {
        if (s.type === "inbound-rtp" && s.kind === "video") {
          var prev = self.stats.framesDecoded;
          self.stats.framesDecoded = s.framesDecoded || 0;
          self.stats.frameWidth = s.frameWidth || 0;
          self.stats.frameHeight = s.frameHeight || 0;
          self.stats.fps = s.framesPerSecond || Math.max(0, self.stats.framesDecoded - prev);
          if (s.codecId && report.get(s.codecId)) self.stats.codec = report.get(s.codecId).mimeType;
        }
      });
    } catch (e) { /* the connection went away between two polls */ }
  };

  Player.prototype.stop = function () {
    this.stopped = true;
    var at = players.indexOf(this);
    if (at >= 0) players.splice(at, 1);
    clearInterval(this._statsTimer);
    if (this.pc) this.pc.close();
    this.stats.state = "stopped";
  };

  var CitywallVideo = {
    play: function (video, cameraId, options) {
      var player = new Player(video, cameraId, options || {});
      players.push(player);
      return player;
    },
    players: players,
    readBarcode: readBarcode,
    stopAll: function () { players.forEach(function (p) { p.stop(); }); }
  };

  global.addEventListener("pagehide", function () { CitywallVideo.stopAll(); });
  global.CitywallVideo = CitywallVideo;
})(window);
