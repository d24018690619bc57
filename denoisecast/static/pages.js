// The server-served pages: a thin layer over the JSON API.
"use strict";

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)dc_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function api(method, path, body) {
  const options = { method, headers: { "X-CSRF-Token": csrfToken() }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    const error = new Error(data && data.error ? data.error.message : response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

function showError(error) {
  document.getElementById("error").textContent = error ? error.message : "";
}

function item(text, actions) {
  const li = document.createElement("li");
  const label = document.createElement("span");
  label.textContent = text;
  li.appendChild(label);
  for (const [title, handler] of actions) {
    const button = document.createElement("button");
    button.textContent = title;
    button.addEventListener("click", async () => {
      try { showError(null); await handler(); await refresh(); } catch (e) { showError(e); }
    });
    li.appendChild(button);
  }
  return li;
}

function fill(id, items, empty) {
  const list = document.getElementById(id);
  list.replaceChildren(...items);
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = empty;
    list.appendChild(li);
  }
}

const enc = encodeURIComponent;

async function refresh() {
  const [{ friends }, requests] = await Promise.all([
    api("GET", "/api/friends"), api("GET", "/api/friends/requests"),
  ]);
  fill("friends", friends.map(f => item(f.username, [
    ["Unfriend", () => api("DELETE", `/api/friends/${enc(f.username)}`)],
  ])), "No friends yet.");
  fill("incoming", requests.incoming.map(r => item(r.username, [
    ["Accept", () => api("POST", `/api/friends/requests/${enc(r.username)}/accept`)],
    ["Reject", () => api("POST", `/api/friends/requests/${enc(r.username)}/reject`)],
  ])), "None.");
  fill("outgoing", requests.outgoing.map(r => item(r.username, [
    ["Cancel", () => api("DELETE", `/api/friends/requests/${enc(r.username)}`)],
  ])), "None.");
}

let recordingsCursor = null;
let me = null;

function formatDuration(seconds) {
  const whole = Math.round(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function recordingItem(r) {
  const li = document.createElement("li");
  li.className = "recording";
  const label = document.createElement("span");
  const when = new Date(r.started_at).toLocaleString();
  label.textContent = `${r.owner} · ${when} · ${formatDuration(r.duration_seconds)}` +
    (r.status === "complete" ? "" : ` · ${r.status}`);
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.preload = "none";
  const source = (track) => `/api/recordings/${enc(r.id)}/audio?track=${track}`;
  audio.src = source("denoised");
  const track = document.createElement("select");
  for (const name of ["denoised", "raw"]) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    track.appendChild(option);
  }
  track.addEventListener("change", () => {
    const at = audio.currentTime, playing = !audio.paused;
    audio.src = source(track.value);
    audio.currentTime = at;
    if (playing) audio.play();
  });
  li.append(label, audio, track);
  if (me && r.owner === me.username) {
    const remove = document.createElement("button");
    remove.textContent = "Delete";
    remove.addEventListener("click", async () => {
      try { showError(null); await api("DELETE", `/api/recordings/${enc(r.id)}`); li.remove(); } catch (e) { showError(e); }
    });
    li.appendChild(remove);
  }
  return li;
}

async function loadRecordings(append) {
  const params = new URLSearchParams({ limit: "20" });
  if (append && recordingsCursor) params.set("cursor", recordingsCursor);
  const page = await api("GET", `/api/recordings?${params}`);
  const items = page.recordings.map(recordingItem);
  if (append) items.forEach(i => document.getElementById("recordings").appendChild(i));
  else fill("recordings", items, "No recordings yet.");
  recordingsCursor = page.next;
  document.getElementById("more-recordings").hidden = !page.next;
}

let searchCursor = null;
let searchQuery = "";

async function search(append) {
  const params = new URLSearchParams({ q: searchQuery, limit: "20" });
  if (append && searchCursor) params.set("after", searchCursor);
  const page = await api("GET", `/api/users?${params}`);
  const items = page.users.map(u => item(`${u.username} (${u.relationship})`,
    u.relationship === "none" || u.relationship === "incoming"
      ? [["Add friend", async () => { await api("POST", "/api/friends/requests", { username: u.username }); await search(false); }]]
      : []));
  const list = document.getElementById("results");
  if (append) items.forEach(i => list.appendChild(i)); else fill("results", items, "Nobody found.");
  searchCursor = page.next;
  document.getElementById("more").hidden = !page.next;
}

async function home() {
  try {
    const { user } = await api("GET", "/api/me");
    me = user;
    document.getElementById("me").textContent = user.username;
  } catch (e) {
    if (e.status === 401) { location.href = "/login"; return; }
    throw e;
  }
  document.getElementById("logout").addEventListener("click", async () => {
    await api("POST", "/api/auth/logout");
    location.href = "/login";
  });
  document.getElementById("search-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    searchQuery = new FormData(event.target).get("q");
    try { showError(null); await search(false); } catch (e) { showError(e); }
  });
  document.getElementById("more").addEventListener("click", () => search(true).catch(showError));
  document.getElementById("more-recordings").addEventListener("click", () => loadRecordings(true).catch(showError));
  await Promise.all([refresh(), loadRecordings(false)]);
}

function credentialsForm(id, path) {
  document.getElementById(id).addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    try {
      showError(null);
      await api("POST", path, { username: form.get("username"), password: form.get("password") });
      location.href = "/";
    } catch (e) { showError(e); }
  });
}

const page = document.body.dataset.page;
if (page === "login") credentialsForm("login-form", "/api/auth/login");
if (page === "register") credentialsForm("register-form", "/api/auth/register");
if (page === "home") home().catch(showError);
