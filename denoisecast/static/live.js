// Live audio on the home page, over the /ws WebSocket (docs/live.md):
// presence of friends who are live, going live with the microphone, the
// denoise setting, and listening to friends.
"use strict";

const live = {
  ws: null,
  pending: new Map(),
  nextId: 1,
  iceServers: [],
  friends: new Map(),
  publish: null,
  listens: new Map(),
};

function liveError(error) {
  document.getElementById("error").textContent = error ? error.message : "";
}

function liveRequest(message) {
  return new Promise((resolve, reject) => {
    if (!live.ws || live.ws.readyState !== WebSocket.OPEN) {
      reject(new Error("Not connected to the server; reload the page."));
      return;
    }
    const id = String(live.nextId++);
    live.pending.set(id, { resolve, reject });
    live.ws.send(JSON.stringify({ v: 1, id, ...message }));
  });
}

function liveConnect() {
  return new Promise((resolve, reject) => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    live.ws = ws;
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      const waiting = message.id !== undefined && live.pending.get(String(message.id));
      if (waiting) {
        live.pending.delete(String(message.id));
        if (message.type === "error") waiting.reject(new Error(message.message));
        else waiting.resolve(message);
        return;
      }
      liveHandle(message);
      if (message.type === "hello") resolve();
    };
    ws.onerror = () => reject(new Error("The live connection failed."));
    ws.onclose = () => {
      for (const waiting of live.pending.values()) waiting.reject(new Error("The live connection closed."));
      live.pending.clear();
      endPublish();
      for (const username of [...live.listens.keys()]) endListen(username);
      document.getElementById("live-status").textContent = "Disconnected; reload the page.";
    };
  });
}

function liveHandle(message) {
  if (message.type === "hello") live.iceServers = message.ice_servers;
  else if (message.type === "presence") {
    live.friends = new Map(message.friends.map((f) => [f.username, f]));
  } else if (message.type === "friend") live.friends.set(message.friend.username, message.friend);
  else if (message.type === "friend_removed") {
    live.friends.delete(message.username);
    endListen(message.username);
  } else if (message.type === "listeners") {
    if (live.publish) live.publish.listeners = message.count;
  } else if (message.type === "ended") {
    if (message.role === "publish") endPublish();
    else endListen(message.user);
  }
  renderLive();
}

function gathered(pc) {
  return new Promise((done) => {
    if (pc.iceGatheringState === "complete") return done();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") done();
    });
  });
}

async function goLive() {
  // The server denoises; the browser's own processing would only get in its way.
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const pc = new RTCPeerConnection({ iceServers: live.iceServers });
  stream.getTracks().forEach((track) => pc.addTrack(track, stream));
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const reply = await liveRequest({ type: "publish", sdp: pc.localDescription.sdp });
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    live.publish = { pc, stream, listeners: reply.stream.listeners };
    document.getElementById("denoise").checked = reply.stream.denoise;
    const limit = reply.stream.atten_lim_db;
    // 100 dB and more is the engine's "no limit", shown like null: empty.
    document.getElementById("atten-lim").value = limit === null || limit >= 100 ? "" : limit;
  } catch (error) {
    pc.close();
    stream.getTracks().forEach((track) => track.stop());
    throw error;
  }
}

function endPublish() {
  if (!live.publish) return;
  live.publish.pc.close();
  live.publish.stream.getTracks().forEach((track) => track.stop());
  live.publish = null;
}

async function stopLive() {
  try { await liveRequest({ type: "stop" }); } finally { endPublish(); }
}

async function setDenoise() {
  const text = document.getElementById("atten-lim").value.trim();
  const reply = await liveRequest({
    type: "denoise",
    enabled: document.getElementById("denoise").checked,
    atten_lim_db: text === "" ? null : Number(text),
  });
  document.getElementById("denoise").checked = reply.denoise;
}

async function listen(username, signal) {
  const pc = new RTCPeerConnection({ iceServers: live.iceServers });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const audio = document.createElement("audio");
  audio.autoplay = true;
  audio.dataset.user = username;
  document.getElementById("players").appendChild(audio);
  pc.addEventListener("track", (event) => {
    audio.srcObject = new MediaStream([event.track]);
    audio.play().catch(() => {});
  });
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const reply = await liveRequest({ type: "listen", user: username, sdp: pc.localDescription.sdp, signal });
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    live.listens.set(username, { pc, audio, signal: reply.signal });
  } catch (error) {
    pc.close();
    audio.remove();
    throw error;
  }
}

function endListen(username) {
  const listening = live.listens.get(username);
  if (!listening) return;
  listening.pc.close();
  listening.audio.remove();
  live.listens.delete(username);
}

async function unlisten(username) {
  try { await liveRequest({ type: "unlisten", user: username }); } finally { endListen(username); }
}

async function switchSignal(username, signal) {
  const reply = await liveRequest({ type: "signal", user: username, signal });
  live.listens.get(username).signal = reply.signal;
}

function liveButton(title, action) {
  const button = document.createElement("button");
  button.textContent = title;
  button.addEventListener("click", async () => {
    try { liveError(null); await action(); } catch (error) { liveError(error); }
    renderLive();
  });
  return button;
}

function renderLive() {
  const publishing = live.publish !== null;
  document.getElementById("go-live").hidden = publishing;
  document.getElementById("stop-live").hidden = !publishing;
  if (live.ws && live.ws.readyState === WebSocket.OPEN) {
    const count = publishing ? live.publish.listeners : 0;
    document.getElementById("live-status").textContent = publishing
      ? `Live: ${count} listener${count === 1 ? "" : "s"}`
      : "Not live";
  }
  const items = [];
  for (const friend of live.friends.values()) {
    if (!friend.live) continue;
    const li = document.createElement("li");
    const label = document.createElement("span");
    const listening = live.listens.get(friend.username);
    label.textContent = `${friend.username} (live, ${friend.listeners} listening, denoise ${friend.denoise ? "on" : "off"})`;
    li.appendChild(label);
    if (listening) {
      const other = listening.signal === "raw" ? "denoised" : "raw";
      li.appendChild(liveButton(`Hear ${other}`, () => switchSignal(friend.username, other)));
      li.appendChild(liveButton("Stop listening", () => unlisten(friend.username)));
    } else {
      li.appendChild(liveButton("Listen", () => listen(friend.username, "denoised")));
    }
    items.push(li);
  }
  const list = document.getElementById("live-friends");
  list.replaceChildren(...items);
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "None of your friends is live.";
    list.appendChild(li);
  }
}

async function startLive() {
  const act = (id, action) => document.getElementById(id).addEventListener("click", async () => {
    try { liveError(null); await action(); } catch (error) { liveError(error); }
    renderLive();
  });
  act("go-live", goLive);
  act("stop-live", stopLive);
  for (const id of ["denoise", "atten-lim"]) {
    document.getElementById(id).addEventListener("change", () => setDenoise().catch(liveError));
  }
  await liveConnect();
  renderLive();
}

if (document.body.dataset.page === "home") startLive().catch(liveError);
