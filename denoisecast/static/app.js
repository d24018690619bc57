// The DenoiseCast browser app: the frame (header, friends sidebar, notices),
// client-side navigation between the server's page URLs, and the shared
// state every page draws from, kept current by the WebSocket (no polling).

import { api, ApiError } from "./api.js";
import { h, $, emptyItem } from "./ui.js";
import { LiveSocket } from "./socket.js";
import { Broadcaster, Listening } from "./live.js";
import { PAGES } from "./pages.js";

const app = {
  me: null,
  socket: null,
  friends: new Map(),                                   // username -> presence status
  requests: { incoming: new Set(), outgoing: new Set() },
  broadcaster: null,
  listening: null,
  watchers: new Set(),
  scope: [],
};

// Pages register what to undo when the person leaves them.
app.onLeave = (fn) => app.scope.push(fn);
app.on = (type, fn) => app.onLeave(app.socket.on(type, fn));
app.watch = (fn) => { app.watchers.add(fn); app.onLeave(() => app.watchers.delete(fn)); };
app.changed = () => { for (const fn of [...app.watchers]) fn(); renderFrame(); };

// The login page, coming back here afterwards (as the server's redirects say it).
function loginUrl() {
  return "/login?next=" + encodeURIComponent(location.pathname).replace(/%2F/g, "/");
}

function readBoot(root) {
  const block = root.querySelector("#boot");
  return JSON.parse(block.textContent);
}

// Ask the server what a URL is (which page, which status), then draw it.
app.navigate = async (url, { push = true } = {}) => {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin" });
  } catch {
    location.href = url;
    return;
  }
  if (new URL(response.url).pathname === "/login" && new URL(url, location.href).pathname !== "/login") {
    location.href = response.url;  // the session ended
    return;
  }
  const html = await response.text();
  const boot = readBoot(new DOMParser().parseFromString(html, "text/html"));
  if (push) history.pushState({}, "", url);
  render(boot);
};

function render(boot) {
  for (const undo of app.scope.splice(0)) undo();
  const main = $("#main");
  main.replaceChildren();
  const page = PAGES[boot.page] || PAGES.missing;
  page(app, main, boot);
  document.body.dataset.page = boot.page;
  document.body.dataset.status = String(boot.status);
  main.focus({ preventScroll: true });
  renderFrame();
}

// -- frame ---------------------------------------------------------------

function friendOrder(a, b) {
  if (a.live !== b.live) return a.live ? -1 : 1;
  if (a.online !== b.online) return a.online ? -1 : 1;
  return a.username.localeCompare(b.username);
}

function renderFrame() {
  if (!app.me) return;
  const list = $("#friend-list");
  const friends = [...app.friends.values()].sort(friendOrder);
  list.replaceChildren(...friends.map((friend) => {
    const state = friend.live ? "LIVE" : friend.online ? "online" : "offline";
    const item = h("li", { class: `friend ${state.toLowerCase()}`, "data-user": friend.username },
      h("span", { class: "dot", "aria-hidden": "true" }),
      h("a", { href: `/u/${encodeURIComponent(friend.username)}`, "data-link": true }, friend.username),
      h("span", { class: `state ${friend.live ? "badge-live" : ""}` }, state));
    if (friend.live && !app.listening.isListening(friend.username)) {
      item.append(h("button", {
        type: "button", class: "icon", "aria-label": `Listen to ${friend.username}`,
        onclick: async () => {
          await app.navigate(`/u/${encodeURIComponent(friend.username)}`);
          app.listening.listen(friend.username).catch((error) => notice(error.message));
        },
      }, "▶"));
    }
    return item;
  }));
  if (!friends.length) list.append(emptyItem("No friends yet. Find people to add."));
  for (const username of app.listening.listens.keys()) withdraw(`live:${username}`);  // already listening
  // On a phone the list is folded behind this button: it tells who is live.
  const live = friends.filter((f) => f.live).length;
  $("#friends-toggle").textContent = live ? `Friends (${live} LIVE)` : "Friends";
  const count = app.requests.incoming.size;
  const link = $("#nav-requests");
  link.textContent = count ? `Requests (${count})` : "Requests";
  link.setAttribute("aria-label", count ? `Friend requests, ${count} waiting` : "Friend requests");
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.getAttribute("href") === location.pathname) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// A notice at the bottom of the page; one with a key goes away when what it
// told is no longer true (withdraw), not only when dismissed or timed out.
function notice(text, actions = [], key = "") {
  withdraw(key);
  const box = h("div", { class: "notice", "data-key": key }, h("span", {}, text), ...actions,
    h("button", { type: "button", class: "icon", "aria-label": "Dismiss", onclick: () => box.remove() }, "×"));
  $("#notices").append(box);
  setTimeout(() => box.remove(), 15000);
}
app.notice = notice;

function withdraw(key) {
  if (!key) return;
  for (const box of document.querySelectorAll(`#notices .notice[data-key="${CSS.escape(key)}"]`)) box.remove();
}

function wentLive(friend) {
  const listen = h("button", {
    type: "button",
    onclick: async () => {
      await app.navigate(`/u/${encodeURIComponent(friend.username)}`);
      app.listening.listen(friend.username).catch((error) => notice(error.message));
    },
  }, "Listen");
  notice(`${friend.username} is LIVE now.`, [listen], `live:${friend.username}`);
  if ("Notification" in window && Notification.permission === "granted" && document.hidden) {
    new Notification(`${friend.username} is live on DenoiseCast`, { body: "Open DenoiseCast to listen." });
  }
}

function startSocket() {
  const socket = new LiveSocket();
  app.socket = socket;
  app.broadcaster = new Broadcaster(socket);
  app.listening = new Listening(socket, app.friends, $("#players"));
  app.broadcaster.watch(app.changed);
  app.listening.watch(app.changed);
  socket.on("presence", (m) => {
    app.friends.clear();
    for (const friend of m.friends) app.friends.set(friend.username, friend);
    app.changed();
  });
  socket.on("friend", (m) => {
    const before = app.friends.get(m.friend.username);
    app.friends.set(m.friend.username, m.friend);
    if (m.friend.live && before && !before.live) wentLive(m.friend);
    if (!m.friend.live) withdraw(`live:${m.friend.username}`);
    if (!before) {
      app.requests.incoming.delete(m.friend.username);
      app.requests.outgoing.delete(m.friend.username);
    }
    app.changed();
  });
  socket.on("friend_removed", (m) => {
    app.friends.delete(m.username);
    app.changed();
  });
  socket.on("friend_request", (m) => {
    const set = app.requests[m.direction];
    if (m.state === "pending") set.add(m.username);
    else set.delete(m.username);
    if (m.state === "pending" && m.direction === "incoming") {
      notice(`${m.username} wants to be your friend.`,
        [h("a", { href: "/requests", "data-link": true }, "See requests")], `request:${m.username}`);
    } else if (m.direction === "incoming") {
      withdraw(`request:${m.username}`);  // accepted, rejected or cancelled: nothing left to see
    }
    app.changed();
  });
  const banner = $("#banner");
  socket.on("disconnected", () => {
    banner.hidden = false;
    banner.textContent = "Connection lost — reconnecting…";
  });
  socket.on("connected", () => {
    banner.hidden = true;
    banner.textContent = "";
  });
  socket.on("logged_out", () => {
    location.href = loginUrl();
  });
  socket.connect();
}

async function loadRequests() {
  const requests = await api("GET", "/api/friends/requests");
  app.requests.incoming = new Set(requests.incoming.map((r) => r.username));
  app.requests.outgoing = new Set(requests.outgoing.map((r) => r.username));
  const { friends } = await api("GET", "/api/friends");
  for (const friend of friends) {
    if (!app.friends.has(friend.username)) {
      app.friends.set(friend.username, { username: friend.username, online: false, live: false, listeners: 0 });
    }
  }
  app.changed();
}

function wireFrame() {
  $("#top").hidden = false;
  $("#sidebar").hidden = false;
  const me = $("#nav-me");
  me.textContent = app.me.username;
  me.href = `/u/${encodeURIComponent(app.me.username)}`;
  $("#logout").addEventListener("click", async () => {
    if (app.broadcaster.mine && !confirm("You are live. Log out and end the broadcast?")) return;
    if (app.broadcaster.mine) await app.broadcaster.stop().catch(() => {});
    app.socket.close();
    await api("POST", "/api/auth/logout").catch(() => {});
    location.href = "/login";
  });
  const toggle = $("#friends-toggle");
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    $("#sidebar").classList.toggle("open", open);
  });
  window.addEventListener("beforeunload", (event) => {
    if (app.broadcaster.mine) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
}

// Links inside the app change the page without reloading it.
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("a[data-link]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  if (!app.me) return;
  event.preventDefault();
  app.navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", () => {
  if (app.me) app.navigate(location.pathname + location.search, { push: false });
});

async function main() {
  const boot = readBoot(document);
  if (boot.page === "login" || boot.page === "register") {
    render(boot);
    return;
  }
  // Logged out (or the session expired): go to the login page before
  // anything else, so no WebSocket is opened for nobody.
  try {
    app.me = (await api("GET", "/api/me")).user;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      location.replace(loginUrl());
      return;
    }
    $("#main").replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
    return;
  }
  startSocket();
  wireFrame();
  render(boot);
  loadRequests().catch((error) => notice(error.message));
}

window.denoisecast = app;  // for the browser tests and the curious
main();
