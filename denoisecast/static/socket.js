// The one WebSocket (/ws, docs/live.md): requests matched to replies by id,
// server events handed to listeners, and reconnection after a drop.

export class LiveSocket {
  constructor() {
    this.ws = null;
    this.pending = new Map();
    this.nextId = 1;
    this.handlers = new Map();
    this.iceServers = [];
    this.retry = 0;
    this.stopped = false;
    this.everOpen = false;
  }

  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.handlers.get(type).delete(handler);
  }

  emit(type, message) {
    for (const handler of [...(this.handlers.get(type) || [])]) {
      try { handler(message); } catch (error) { console.error(error); }
    }
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.ws = ws;
    ws.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      const waiting = message.id !== undefined && this.pending.get(String(message.id));
      if (waiting) {
        this.pending.delete(String(message.id));
        if (message.type === "error") {
          const error = new Error(message.message);
          error.code = message.code;
          waiting.reject(error);
        } else waiting.resolve(message);
        return;
      }
      if (message.type === "hello") {
        this.iceServers = message.ice_servers;
        this.retry = 0;
        const again = this.everOpen;
        this.everOpen = true;
        this.emit("connected", { again });
      }
      this.emit(message.type, message);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      for (const waiting of this.pending.values()) {
        waiting.reject(new Error("The connection to the server was lost; try again in a moment."));
      }
      this.pending.clear();
      this.emit("disconnected", {});
      if (this.stopped) return;
      const delay = Math.min(5000, 500 * 2 ** this.retry++);
      setTimeout(() => this.reconnect(), delay);
    };
  }

  // Connect again, unless the session ended (logged out elsewhere, password
  // changed): then the page goes to the login page instead of knocking forever.
  async reconnect() {
    try {
      const response = await fetch("/api/me", { credentials: "same-origin" });
      if (response.status === 401) {
        this.stopped = true;
        this.emit("logged_out", {});
        return;
      }
    } catch { /* the server is unreachable: keep trying */ }
    this.connect();
  }

  close() {
    this.stopped = true;
    if (this.ws) this.ws.close();
  }

  request(message, timeout = 20000) {
    return new Promise((resolve, reject) => {
      if (!this.open) {
        reject(new Error("Not connected to the server yet; try again in a moment."));
        return;
      }
      const id = String(this.nextId++);
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) reject(new Error("The server did not answer in time."));
      }, timeout);
      this.pending.set(id, {
        resolve: (value) => { clearTimeout(timer); resolve(value); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      });
      this.ws.send(JSON.stringify({ v: 1, id, ...message }));
    });
  }
}

// Resolves once ICE gathering is done: the server takes no trickled candidates.
export function gathered(pc) {
  return new Promise((done) => {
    if (pc.iceGatheringState === "complete") return done();
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    pc.addEventListener("icegatheringstatechange", check);
  });
}
