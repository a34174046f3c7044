/* citywall conference page (视频会商): join with camera + microphone, play the composed picture.
 *
 * Two peer connections with the same invitation: video (camera out, composition in) via
 * POST .../join, then audio only (microphone out, mix-minus in) via POST .../audio, which the
 * server's audio worker process answers. The audio connection is reopened when it fails or when the
 * room state reports a new audio worker generation (the worker was restarted).
 * The invitation token comes from ?token=; the room id from <meta name="conference-room">.
 * window.conference.stats -> {state, audioState, framesDecoded, frameWidth, frameHeight, codec,
 *   audioPackets, audioLevel, totalAudioEnergy, audioReconnects, sending}, refreshed every second;
 *   window.conference.room is the latest room state. Leaders get controls (mute / remove / pin /
 *   layout / add camera).
 */
(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var token = params.get("token") || "";
  var room = document.querySelector('meta[name="conference-room"]').content;
  var base = location.pathname.replace(/\/conference\/join$/, "");
  var roomUrl = base + "/conferences/" + encodeURIComponent(room);
  var video = document.getElementById("conference-video");
  var audio = document.getElementById("conference-audio");
  var state = {pc: null, audioPc: null, audioGeneration: 0, serverGeneration: 0, audioTimer: null,
               audioBusy: false, local: null, left: false, removed: false, leader: false, me: null, room: null,
               stats: {state: "new", audioState: "new", framesDecoded: 0, frameWidth: 0, frameHeight: 0,
                       codec: "", audioPackets: 0, audioLevel: 0, totalAudioEnergy: 0, audioReconnects: 0,
                       sending: false, error: null, audioError: null}};
  window.conference = state;

  function setStatus(text) { document.getElementById("status").textContent = text; }

  function waitIce(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(function (resolve) {
      var timer = setTimeout(resolve, 3000);
      pc.addEventListener("icegatheringstatechange", function () {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
  }

  function preferH264(transceiver) {
    var caps = window.RTCRtpReceiver && RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities("video");
    if (!caps || !transceiver.setCodecPreferences) return;
    var h264 = caps.codecs.filter(function (c) { return c.mimeType.toLowerCase() === "video/h264"; });
    if (h264.length) transceiver.setCodecPreferences(h264);
  }

  async function localMedia() {
    try {
      return await navigator.mediaDevices.getUserMedia({
        audio: true, video: {width: {ideal: 640}, height: {ideal: 360}, frameRate: {ideal: 25}}});
    } catch (e) {
      try { return await navigator.mediaDevices.getUserMedia({audio: true}); } catch (e2) { return null; }
    }
  }

  async function join() {
    state.local = await localMedia();
    var pc = new RTCPeerConnection({iceServers: []});
    state.pc = pc;
    var vtrack = state.local && state.local.getVideoTracks()[0];
    if (vtrack) document.getElementById("self-view").srcObject = new MediaStream([vtrack]);
    state.stats.sending = !!vtrack;
    var vt = pc.addTransceiver(vtrack || "video", {direction: vtrack ? "sendrecv" : "recvonly"});
    preferH264(vt);
    pc.addEventListener("track", function (event) {
      if (event.track.kind !== "video") return;
      video.srcObject = new MediaStream([event.track]);
      video.play().catch(function () {});
    });
    pc.addEventListener("connectionstatechange", function () {
      state.stats.state = pc.connectionState;
      setStatus(pc.connectionState);
    });
    await pc.setLocalDescription(await pc.createOffer());
    await waitIce(pc);
    var response = await fetch(roomUrl + "/join", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({sdp: pc.localDescription.sdp, type: pc.localDescription.type, token: token})});
    var body = await response.json();
    if (!response.ok) throw new Error((body.error && body.error.message) || ("HTTP " + response.status));
    state.leader = body.leader;
    state.me = body.participant;
    document.getElementById("leader").hidden = !body.leader;
    await pc.setRemoteDescription({sdp: body.sdp, type: body.type});
    await joinAudio();
  }

  function audioNeeded() {
    if (state.left || state.removed || !state.me || state.audioBusy) return false;
    var pc = state.audioPc;
    if (!pc || ["failed", "closed", "disconnected"].indexOf(pc.connectionState) >= 0) return true;
    return state.audioGeneration > 0 && state.serverGeneration > 0 &&
      state.serverGeneration !== state.audioGeneration;
  }

  function scheduleAudio(ms) {
    if (state.audioTimer || state.left || state.removed) return;
    state.audioTimer = setTimeout(function () {
      state.audioTimer = null;
      if (audioNeeded()) {
        state.stats.audioReconnects += 1;
        joinAudio();
      }
    }, ms);
  }

  // The audio-only connection to the audio worker (opened after the video join; reopened as needed).
  async function joinAudio() {
    if (state.audioBusy || state.left) return;
    state.audioBusy = true;
    var retry = true;
    try {
      if (state.audioPc) {
        var old = state.audioPc;
        state.audioPc = null;
        old.close();
      }
      var atrack = state.local && state.local.getAudioTracks()[0];
      var pc = new RTCPeerConnection({iceServers: []});
      state.audioPc = pc;
      pc.addTransceiver(atrack || "audio", {direction: atrack ? "sendrecv" : "recvonly"});
      pc.addEventListener("track", function (event) {
        audio.srcObject = new MediaStream([event.track]);
        audio.play().catch(function () { document.getElementById("unmute").style.display = "inline"; });
      });
      pc.addEventListener("connectionstatechange", function () {
        if (state.audioPc !== pc) return;
        state.stats.audioState = pc.connectionState;
        if (["failed", "disconnected", "closed"].indexOf(pc.connectionState) >= 0) scheduleAudio(3000);
      });
      await pc.setLocalDescription(await pc.createOffer());
      await waitIce(pc);
      var response = await fetch(roomUrl + "/audio", {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({sdp: pc.localDescription.sdp, type: pc.localDescription.type, token: token})});
      var body = await response.json();
      if (!response.ok) {
        retry = response.status >= 500;  // 503 while the worker restarts; 401/403/404/409: no use retrying
        throw new Error((body.error && body.error.message) || ("HTTP " + response.status));
      }
      if (state.audioPc !== pc) return;
      state.audioGeneration = body.generation;
      await pc.setRemoteDescription({sdp: body.sdp, type: body.type});
      state.stats.audioError = null;
    } catch (e) {
      state.stats.audioError = String(e.message || e);
      if (state.audioPc) {
        state.audioPc.close();
        state.audioPc = null;  // audioNeeded() is true again
      }
      if (retry) scheduleAudio(2000);
    } finally {
      state.audioBusy = false;
    }
  }

  async function refreshStats() {
    if (state.pc) {
      var report = await state.pc.getStats();
      report.forEach(function (s) {
        if (s.type !== "inbound-rtp" || s.kind !== "video") return;
        state.stats.framesDecoded = s.framesDecoded || 0;
        state.stats.frameWidth = s.frameWidth || 0;
        state.stats.frameHeight = s.frameHeight || 0;
        var codec = s.codecId && report.get(s.codecId);
        if (codec) state.stats.codec = codec.mimeType;
      });
    }
    var apc = state.audioPc;
    if (apc) {
      var areport = await apc.getStats();
      areport.forEach(function (s) {
        if (s.type !== "inbound-rtp" || s.kind !== "audio" || apc !== state.audioPc) return;
        state.stats.audioPackets = s.packetsReceived || 0;
        state.stats.audioLevel = s.audioLevel || 0;
        state.stats.totalAudioEnergy = s.totalAudioEnergy || 0;
      });
    }
  }

  async function control(body) {
    var response = await fetch(roomUrl + "/control", {method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token},
      body: JSON.stringify(body)});
    if (response.ok) showRoom(await response.json());
  }

  function button(label, onclick) {
    var b = document.createElement("button");
    b.textContent = label;
    b.addEventListener("click", onclick);
    return b;
  }

  function showRoom(data) {
    state.room = data;
    var list = document.getElementById("people");
    list.textContent = "";
    data.participants.forEach(function (p) {
      var li = document.createElement("li");
      li.textContent = p.name + (p.muted ? " (静音 muted)" : "") + (p.pid === data.speaker ? " ★" : "") + " ";
      if (state.leader) {
        li.appendChild(button(p.muted ? "unmute" : "mute", function () {
          control({action: p.muted ? "unmute" : "mute", participant: p.pid}); }));
        li.appendChild(button("pin", function () { control({action: "pin", participant: p.pid}); }));
        if (p.pid !== state.me) li.appendChild(button("remove", function () {
          control({action: "remove", participant: p.pid}); }));
      }
      list.appendChild(li);
    });
    document.getElementById("layout").value = data.layout;
    if (state.me && !data.participants.some(function (p) { return p.pid === state.me; })) {
      state.removed = true;
      setStatus("已移出会商 / removed");
    }
    var worker = data.audio && data.audio.worker;
    if (worker && worker.alive) {
      state.serverGeneration = worker.generation;
      if (audioNeeded()) scheduleAudio(200);  // the audio worker was restarted
    }
  }

  async function pollRoom() {
    if (state.left) return;
    try {
      var response = await fetch(roomUrl + "?token=" + encodeURIComponent(token));
      if (response.ok) showRoom(await response.json());
    } catch (e) { /* next poll */ }
  }

  function leave() {
    if (state.left) return;
    state.left = true;
    navigator.sendBeacon(roomUrl + "/leave", JSON.stringify({token: token}));
    if (state.pc) state.pc.close();
    if (state.audioPc) state.audioPc.close();
    if (state.local) state.local.getTracks().forEach(function (t) { t.stop(); });
    setStatus("left");
  }

  document.getElementById("leave").addEventListener("click", leave);
  window.addEventListener("pagehide", leave);
  document.getElementById("mic").addEventListener("click", function () {
    var t = state.local && state.local.getAudioTracks()[0];
    if (!t) return;
    t.enabled = !t.enabled;
    this.textContent = t.enabled ? "关闭麦克风 / mute mic" : "开启麦克风 / unmute mic";
  });
  document.getElementById("unmute").addEventListener("click", function () {
    audio.play();
    this.style.display = "none";
  });
  document.getElementById("layout").addEventListener("change", function () {
    control({action: "layout", layout: this.value});
  });
  document.getElementById("unpin").addEventListener("click", function () { control({action: "unpin"}); });
  document.getElementById("add-camera").addEventListener("click", function () {
    control({action: "add_camera", camera_id: document.getElementById("camera-id").value});
  });

  join().catch(function (e) {
    state.stats.error = String(e.message || e);
    setStatus("无法加入 / cannot join: " + state.stats.error);
  });
  setInterval(function () { refreshStats().catch(function () {}); }, 1000);
  setInterval(pollRoom, 2000);
})();
