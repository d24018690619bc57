// Going live and listening over WebRTC, signalled on the WebSocket.
//
// The page always shows the server's state: the denoise switch and strength
// come from the server's replies and its `me` events, never from what was
// clicked.  A tab that was publishing remembers it (sessionStorage), so a
// reload within the server's grace period (--reconnect-grace, 10 s by
// default) publishes again and re-attaches to the running broadcast.

import { gathered } from "./socket.js";

const PUBLISHING = "dc-publishing";

class Observable {
  constructor() { this.watchers = new Set(); }
  watch(fn) { this.watchers.add(fn); return () => this.watchers.delete(fn); }
  changed() { for (const fn of [...this.watchers]) fn(); }
}

export function micError(error) {
  if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) {
    return new Error("The browser did not allow the microphone. Allow it for this site (the icon in the address bar) and try again.");
  }
  if (error && (error.name === "NotFoundError" || error.name === "OverconstrainedError")) {
    return new Error("No microphone was found. Plug one in and try again.");
  }
  if (error && error.name === "NotReadableError") {
    return new Error("The microphone is busy in another program.");
  }
  if (!navigator.mediaDevices) {
    return new Error("This page is not secure (https), so the browser offers no microphone.");
  }
  return error;
}

export class Broadcaster extends Observable {
  constructor(socket) {
    super();
    this.socket = socket;
    this.live = null;          // the server's status of my broadcast, or null
    this.denoise = true;
    this.attenLimDb = 100;
    this.listeners = 0;
    this.heardDb = null;       // level of what listeners hear (server, dBFS)
    this.pc = null;
    this.stream = null;
    this.analyser = null;
    this.starting = false;
    this.notice = "";
    this.deviceId = localStorage.getItem("dc-microphone") || "";
    socket.on("me", (m) => this.fromServer(m));
    socket.on("listeners", (m) => { this.listeners = m.count; this.changed(); });
    socket.on("level", (m) => { this.heardDb = m.denoised_db; });
    socket.on("recording", (m) => {
      if (m.recording === false) {
        this.notice = m.reason === "quota"
          ? "Your recording space is full: this broadcast is not being recorded."
          : "This broadcast is no longer being recorded.";
        this.changed();
      }
    });
    socket.on("ended", (m) => {
      if (m.role !== "publish") return;
      this.release();
      sessionStorage.removeItem(PUBLISHING);
      this.live = null;
      this.notice = m.reason === "silence"
        ? "Your broadcast ended: no sound reached the server for a while."
        : m.reason === "stopped" ? "" : "Your broadcast ended.";
      this.changed();
    });
  }

  get mine() { return this.pc !== null; }

  fromServer(message) {
    this.denoise = message.denoise;
    this.attenLimDb = message.atten_lim_db;
    const live = message.live;
    if (live) this.listeners = live.listeners;
    if (!live && this.live && this.mine) this.release();
    if (!live) sessionStorage.removeItem(PUBLISHING);
    this.live = live;
    if (live && live.detached && sessionStorage.getItem(PUBLISHING) && !this.starting) {
      // This tab was publishing (reloaded, or the connection dropped): go on.
      this.goLive().catch((error) => { this.notice = error.message; this.changed(); });
    }
    this.changed();
  }

  async microphone() {
    if (this.stream) return this.stream;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw micError(null);
    try {
      // The server denoises; the browser's own processing would only get in its way.
      const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
      if (this.deviceId) audio.deviceId = { ideal: this.deviceId };
      this.stream = await navigator.mediaDevices.getUserMedia({ audio });
    } catch (error) {
      throw micError(error);
    }
    const context = new AudioContext();
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 2048;
    context.createMediaStreamSource(this.stream).connect(this.analyser);
    this.context = context;
    this.changed();
    return this.stream;
  }

  // The microphones the browser offers (names only once it was allowed one).
  async microphones() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return [];
    const devices = await navigator.mediaDevices.enumerateDevices();
    return devices.filter((d) => d.kind === "audioinput");
  }

  // Switch microphones; while live, the new one replaces the old on the same connection.
  async chooseMicrophone(deviceId) {
    this.deviceId = deviceId;
    localStorage.setItem("dc-microphone", deviceId);
    if (!this.stream) return;
    const old = this.stream;
    this.stream = null;
    if (this.context) this.context.close().catch(() => {});
    const stream = await this.microphone();
    if (this.pc) {
      const sender = this.pc.getSenders().find((s) => s.track && s.track.kind === "audio");
      if (sender) await sender.replaceTrack(stream.getAudioTracks()[0]);
    }
    old.getTracks().forEach((track) => track.stop());
  }

  // The microphone's level now, 0..1 (RMS), or null when it is not open.
  micLevel() {
    if (!this.analyser) return null;
    const samples = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const x of samples) sum += x * x;
    return Math.sqrt(sum / samples.length);
  }

  async goLive() {
    if (this.starting) return;
    this.starting = true;
    this.notice = "";
    this.changed();
    let pc = null;
    try {
      const stream = await this.microphone();
      pc = new RTCPeerConnection({ iceServers: this.socket.iceServers });
      stream.getAudioTracks().forEach((track) => pc.addTrack(track, stream));
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const reply = await this.socket.request({ type: "publish", sdp: pc.localDescription.sdp });
      await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
      if (this.pc) this.pc.close();
      this.pc = pc;
      pc.addEventListener("connectionstatechange", () => {
        if (pc === this.pc && pc.connectionState === "failed" && this.live) {
          this.goLive().catch(() => {});  // the server waits: publish again
        }
      });
      sessionStorage.setItem(PUBLISHING, "1");
      this.live = { ...reply.stream, detached: false };
      this.listeners = reply.stream.listeners;
      this.denoise = reply.stream.denoise;
      this.attenLimDb = reply.stream.atten_lim_db;
    } catch (error) {
      if (pc) pc.close();
      if (!this.pc) this.releaseMicrophone();
      throw error;
    } finally {
      this.starting = false;
      this.changed();
    }
  }

  async stop() {
    try {
      await this.socket.request({ type: "stop" });
    } finally {
      sessionStorage.removeItem(PUBLISHING);
      this.release();
      this.live = null;
      this.changed();
    }
  }

  async setDenoise(change) {
    try {
      const reply = await this.socket.request({ type: "denoise", ...change });
      this.denoise = reply.enabled;
      this.attenLimDb = reply.atten_lim_db;
    } finally {
      this.changed();  // on an error too: the controls go back to the server's state
    }
  }

  release() {
    if (this.pc) this.pc.close();
    this.pc = null;
    this.releaseMicrophone();
  }

  releaseMicrophone() {
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    if (this.context) this.context.close().catch(() => {});
    this.stream = null;
    this.analyser = null;
    this.context = null;
  }
}

export class Listening extends Observable {
  constructor(socket, friends, players) {
    super();
    this.socket = socket;
    this.friends = friends;       // username -> presence status (shared with the app)
    this.players = players;       // where the <audio> elements live (across pages)
    this.listens = new Map();     // username -> {pc, audio, signal, analyser}
    this.wanted = new Map();      // username -> signal: what the person asked to hear
    this.volume = new Map();
    this.notices = new Map();     // username -> sentence (ended, went offline, reconnecting)
    socket.on("ended", (m) => {
      if (m.role !== "listen") return;
      this.drop(m.user);
      if (m.reason === "ended" || m.reason === "offline" || m.reason === "unfriended") {
        this.wanted.delete(m.user);
        this.notices.set(m.user, m.reason === "ended"
          ? `${m.user} ended the broadcast. It is in the recordings below.`
          : m.reason === "offline"
            ? `${m.user} went offline while you listened. The broadcast is in the recordings below.`
            : `You and ${m.user} are no longer friends.`);
      } else if (m.reason !== "replaced") {
        this.reconnect(m.user);
      }
      this.changed();
    });
    socket.on("connected", ({ again }) => {
      if (!again) return;
      for (const username of this.wanted.keys()) this.reconnect(username);
    });
    socket.on("disconnected", () => {
      for (const username of [...this.listens.keys()]) this.drop(username);
      this.changed();
    });
  }

  isListening(username) { return this.listens.has(username); }

  async listen(username, signal = "denoised") {
    this.notices.delete(username);
    this.wanted.set(username, signal);
    const pc = new RTCPeerConnection({ iceServers: this.socket.iceServers });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const audio = document.createElement("audio");
    audio.autoplay = true;
    audio.dataset.user = username;
    audio.volume = this.volume.has(username) ? this.volume.get(username) : 1;
    this.players.appendChild(audio);
    const entry = { pc, audio, signal, since: Date.now(), analyser: null };
    pc.addEventListener("track", (event) => {
      const stream = new MediaStream([event.track]);
      audio.srcObject = stream;
      audio.play().catch(() => {});
      try {
        const context = new AudioContext();
        entry.analyser = context.createAnalyser();
        entry.analyser.fftSize = 2048;
        context.createMediaStreamSource(stream).connect(entry.analyser);
        entry.context = context;
      } catch { /* level display only */ }
    });
    pc.addEventListener("connectionstatechange", () => {
      if (this.listens.get(username) === entry && pc.connectionState === "failed") {
        this.drop(username);
        this.reconnect(username);
        this.changed();
      }
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const reply = await this.socket.request({ type: "listen", user: username, sdp: pc.localDescription.sdp, signal });
      await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
      entry.signal = reply.signal;
      const old = this.listens.get(username);
      if (old) this.close(old);
      this.listens.set(username, entry);
    } catch (error) {
      this.close(entry);
      if (error.code === "not_live" || error.code === "not_friends") this.wanted.delete(username);
      throw error;
    } finally {
      this.changed();
    }
  }

  // Listen again after a short drop, if the friend is still live.
  reconnect(username) {
    if (!this.wanted.has(username)) return;
    this.notices.set(username, `Reconnecting to ${username}…`);
    setTimeout(() => {
      const friend = this.friends.get(username);
      if (!this.wanted.has(username) || this.listens.has(username)) return;
      if (!friend || !friend.live || !this.socket.open) {
        if (friend && !friend.live) {
          this.wanted.delete(username);
          this.notices.set(username, `${username} went offline.`);
          this.changed();
        } else this.reconnect(username);
        return;
      }
      this.listen(username, this.wanted.get(username))
        .then(() => { this.notices.delete(username); this.changed(); })
        .catch(() => this.reconnect(username));
    }, 1000);
  }

  async stop(username) {
    this.wanted.delete(username);
    try {
      if (this.listens.has(username)) await this.socket.request({ type: "unlisten", user: username });
    } finally {
      this.drop(username);
      this.changed();
    }
  }

  async switchSignal(username, signal) {
    this.wanted.set(username, signal);
    const reply = await this.socket.request({ type: "signal", user: username, signal });
    const entry = this.listens.get(username);
    if (entry) entry.signal = reply.signal;
    this.changed();
  }

  setVolume(username, value) {
    this.volume.set(username, value);
    const entry = this.listens.get(username);
    if (entry) entry.audio.volume = value;
  }

  level(username) {
    const entry = this.listens.get(username);
    if (!entry || !entry.analyser) return null;
    const samples = new Float32Array(entry.analyser.fftSize);
    entry.analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const x of samples) sum += x * x;
    return Math.sqrt(sum / samples.length);
  }

  drop(username) {
    const entry = this.listens.get(username);
    if (!entry) return;
    this.listens.delete(username);
    this.close(entry);
  }

  close(entry) {
    entry.pc.close();
    entry.audio.srcObject = null;
    entry.audio.remove();
    if (entry.context) entry.context.close().catch(() => {});
  }
}
