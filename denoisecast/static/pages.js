// The pages, one function each: (app, main, boot) draws the page into main.

import { api, enc } from "./api.js";
import { h, clock, when, action, errorLine, emptyItem } from "./ui.js";
import { recordingList, recordingPage } from "./recordings.js";
import { tokenSection } from "./tokens.js";

const TITLE = "DenoiseCast";

function title(text) {
  document.title = text ? `${text} · ${TITLE}` : TITLE;
}

// -- login and register ----------------------------------------------------

function credentials(app, main, mode) {
  const registering = mode === "register";
  title(registering ? "Create an account" : "Log in");
  const [error, report] = errorLine("error");
  const next = new URLSearchParams(location.search).get("next");
  const target = next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
  const form = h("form", { class: "card narrow", novalidate: true },
    h("label", { for: "username" }, "Username"),
    h("input", { id: "username", name: "username", autocomplete: "username", required: true,
      ...(registering ? { "aria-describedby": "username-help" } : {}) }),
    registering ? h("p", { id: "username-help", class: "muted" }, "3 to 32 lowercase letters, digits, _ . or -") : null,
    h("label", { for: "password" }, "Password"),
    h("input", { id: "password", name: "password", type: "password", required: true,
      autocomplete: registering ? "new-password" : "current-password",
      ...(registering ? { "aria-describedby": "password-help" } : {}) }),
    registering ? h("p", { id: "password-help", class: "muted" }, "At least 8 characters.") : null,
    h("button", { type: "submit", class: "primary" }, registering ? "Create account" : "Log in"),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const username = String(data.get("username")).trim(), password = String(data.get("password"));
    if (!username || !password) { report(new Error("Enter a username and a password.")); return; }
    try {
      report(null);
      await api("POST", registering ? "/api/auth/register" : "/api/auth/login", { username, password });
      location.href = target;
    } catch (e) { report(e); }
  });
  main.append(
    h("h1", {}, registering ? "Create your DenoiseCast account" : "Log in to DenoiseCast"),
    h("p", { class: "lead" }, "Go live to your friends with the background noise taken out."),
    form,
    registering
      ? h("p", {}, "Have an account? ", h("a", { href: "/login" }, "Log in"))
      : h("p", {}, "No account yet? ", h("a", { href: "/register" }, "Create one")));
}

// -- home ------------------------------------------------------------------------

function home(app, main) {
  title("Home");
  const liveList = h("ul", { id: "live-now", class: "cards" });
  const drawLive = () => {
    const live = [...app.friends.values()].filter((f) => f.live).sort((a, b) => a.username.localeCompare(b.username));
    liveList.replaceChildren(...live.map((friend) => h("li", { class: "live-friend" },
      h("span", { class: "badge-live" }, "LIVE"),
      h("a", { href: `/u/${enc(friend.username)}`, "data-link": true }, friend.username),
      h("span", { class: "muted" }, `${friend.listeners} listening`),
      app.listening.isListening(friend.username)
        ? h("span", {}, "You are listening")
        : action(`Listen to ${friend.username}`, async () => {
          await app.navigate(`/u/${enc(friend.username)}`);
          await app.listening.listen(friend.username);
        }, app.notice))));
    if (!live.length) liveList.append(emptyItem("None of your friends is live right now."));
  };
  app.watch(drawLive);
  drawLive();
  const mine = h("p", { id: "my-status" });
  const drawMine = () => {
    const b = app.broadcaster;
    mine.replaceChildren(b.live
      ? h("span", {}, h("span", { class: "badge-live" }, "● LIVE"), " You are live. ",
        h("a", { href: `/u/${enc(app.me.username)}`, "data-link": true }, "Your broadcast"))
      : h("a", { class: "button primary", href: `/u/${enc(app.me.username)}`, "data-link": true }, "Go live"));
  };
  app.watch(drawMine);
  drawMine();
  main.append(
    h("h1", {}, `Hello, ${app.me.username}`),
    mine,
    h("section", { "aria-labelledby": "live-title" }, h("h2", { id: "live-title" }, "Live now"), liveList),
    h("section", { "aria-labelledby": "rec-title" }, h("h2", { id: "rec-title" }, "Recent recordings"),
      recordingList(app, { owner: null })));
}

// -- a user's page: yours, a friend's ------------------------------------------------

function meterValue(db) {
  return db === null || db === undefined ? 0 : Math.max(0, Math.min(1, (db + 60) / 60));
}

function levelDb(rms) {
  return rms === null ? null : rms > 0 ? 20 * Math.log10(rms) : -100;
}

function broadcastPanel(app) {
  const b = app.broadcaster;
  const [error, report] = errorLine("broadcast-error");
  const badge = h("span", { id: "live-badge", class: "badge-live" }, "● LIVE");
  const timer = h("span", { id: "live-timer", role: "timer", "aria-label": "Time live" }, "00:00");
  const count = h("span", { id: "listener-count" });
  const where = h("span", { id: "live-elsewhere", class: "muted" });
  const status = h("p", { class: "live-line" }, badge, " ", timer, " ", count, " ", where);
  const notice = h("p", { id: "broadcast-notice", class: "muted", role: "status" });
  const goLive = action("Go live", () => b.goLive(), report, { id: "go-live", class: "primary" });
  const stop = action("Stop", () => b.stop(), report, { id: "stop-live", class: "danger" });
  const test = action("Test microphone", () => b.microphone(), report, { id: "test-mic" });
  const choose = h("select", { id: "microphone" });
  const fillMicrophones = async () => {
    const devices = await b.microphones();
    choose.replaceChildren(...devices.map((d, i) => h("option", { value: d.deviceId, selected: d.deviceId === b.deviceId },
      d.label || `Microphone ${i + 1}`)));
    if (!devices.length) choose.append(h("option", { value: "" }, "No microphone found"));
  };
  choose.addEventListener("change", () => { report(null); b.chooseMicrophone(choose.value).catch(report); });
  fillMicrophones().catch(() => {});
  let hadStream = false;
  const denoise = h("input", { type: "checkbox", id: "denoise", role: "switch" });
  denoise.addEventListener("change", () => {
    report(null);
    b.setDenoise({ enabled: denoise.checked }).catch(report);
  });
  const slider = h("input", { type: "range", id: "strength", min: "0", max: "100", step: "1",
    "aria-describedby": "strength-text" });
  const number = h("input", { type: "number", id: "strength-number", min: "0", max: "100", step: "1",
    inputmode: "numeric", placeholder: "full", "aria-describedby": "strength-text" });
  const strengthText = h("span", { id: "strength-text", class: "muted" });
  const sendStrength = (value) => {
    report(null);
    const limit = String(value).trim() === "" ? null : Number(value);
    b.setDenoise({ atten_lim_db: limit }).catch((error) => {
      report(error);
      const full = b.attenLimDb >= 100;  // back to what the server has
      slider.value = full ? "100" : String(b.attenLimDb);
      number.value = full ? "" : String(b.attenLimDb);
    });
  };
  slider.addEventListener("change", () => sendStrength(slider.value));
  slider.addEventListener("input", () => { number.value = slider.value; });
  number.addEventListener("change", () => sendStrength(number.value));
  const mic = h("meter", { id: "mic-meter", min: "0", max: "1", value: "0", low: "0.6", high: "0.9", optimum: "0.5" });
  const heard = h("meter", { id: "heard-meter", min: "0", max: "1", value: "0", low: "0.6", high: "0.9", optimum: "0.5" });
  const panel = h("section", { class: "card", id: "broadcast", "aria-labelledby": "broadcast-title" },
    h("h2", { id: "broadcast-title" }, "Your broadcast"),
    status, h("p", { class: "buttons" }, goLive, stop, test,
      h("label", { for: "microphone" }, "Microphone"), choose), notice,
    h("div", { class: "controls" },
      h("label", { class: "switch", for: "denoise" }, denoise, " Noise removal"),
      h("div", { class: "strength" },
        h("label", { for: "strength" }, "Strength"), slider,
        h("label", { for: "strength-number", class: "visually-hidden" }, "Strength in dB"), number,
        strengthText)),
    h("div", { class: "meters" },
      h("label", { for: "mic-meter" }, "Microphone level"), mic,
      h("label", { for: "heard-meter" }, "What friends hear"), heard),
    error);

  const draw = () => {
    const live = b.live;
    status.hidden = !live;
    badge.hidden = !live;
    timer.hidden = !live;
    count.hidden = !live;
    count.textContent = live ? `${b.listeners} listening` : "";
    where.textContent = live && live.detached ? "Reconnecting your microphone…"
      : live && !b.mine ? "(from another tab or device)" : "";
    goLive.hidden = Boolean(live) || b.starting;
    stop.hidden = !live;
    test.hidden = Boolean(b.stream);
    if (Boolean(b.stream) !== hadStream) {
      hadStream = Boolean(b.stream);
      fillMicrophones().catch(() => {});  // names appear once the browser allowed one
    }
    notice.textContent = b.starting ? "Starting…" : b.notice;
    denoise.checked = b.denoise;
    const limit = b.attenLimDb;
    const full = limit === null || limit >= 100;
    if (document.activeElement !== slider) slider.value = full ? "100" : String(limit);
    if (document.activeElement !== number) number.value = full ? "" : String(limit);
    strengthText.textContent = !b.denoise ? "off: friends hear your microphone as it is"
      : full ? "full: all the noise it finds is removed" : `at most ${limit} dB of noise removed`;
  };
  app.watch(draw);
  draw();
  const tick = setInterval(() => {
    if (b.live) timer.textContent = clock((Date.now() - Date.parse(b.live.live_since)) / 1000);
    mic.value = meterValue(levelDb(b.micLevel()));
    heard.value = b.live ? meterValue(b.heardDb) : 0;
  }, 100);
  app.onLeave(() => clearInterval(tick));
  return panel;
}

function listenPanel(app, username) {
  const l = app.listening;
  const [error, report] = errorLine("listen-error");
  const badge = h("span", { id: "friend-live", class: "badge-live" }, "● LIVE");
  const since = h("span", { id: "friend-since", class: "muted" });
  const timer = h("span", { id: "listen-timer", role: "timer", "aria-label": "Time live" }, "00:00");
  const count = h("span", { id: "friend-listeners", class: "muted" });
  const off = h("span", { id: "friend-offline" });
  const listen = action("▶ Listen", () => l.listen(username, signalChoice()), report, { id: "listen", class: "primary" });
  const stop = action("Stop listening", () => l.stop(username), report, { id: "stop-listening" });
  const volume = h("input", { type: "range", id: "volume", min: "0", max: "1", step: "0.05", value: "1" });
  volume.addEventListener("input", () => l.setVolume(username, Number(volume.value)));
  const radios = ["denoised", "raw"].map((signal) => h("label", {},
    h("input", { type: "radio", name: "hear", value: signal, checked: signal === "denoised" }),
    signal === "denoised" ? " noise removed" : " original"));
  const signalChoice = () => (radios.map((r) => r.querySelector("input")).find((i) => i.checked) || {}).value || "denoised";
  for (const radio of radios) {
    radio.querySelector("input").addEventListener("change", () => {
      if (l.isListening(username)) l.switchSignal(username, signalChoice()).catch(report);
    });
  }
  const notice = h("p", { id: "listen-notice", role: "status" });
  const level = h("meter", { id: "listen-meter", min: "0", max: "1", value: "0" });
  const panel = h("section", { class: "card", id: "listen-panel", "aria-labelledby": "listen-title" },
    h("h2", { id: "listen-title" }, `${username}'s broadcast`),
    h("p", { class: "live-line" }, badge, " ", since, " ", timer, " ", count, off),
    h("p", { class: "buttons" }, listen, stop),
    h("div", { class: "controls", id: "listen-controls" },
      h("label", { for: "volume" }, "Volume"), volume,
      h("fieldset", {}, h("legend", {}, "Hear"), ...radios),
      h("label", { for: "listen-meter" }, "Level"), level),
    notice, error);
  const draw = () => {
    const friend = app.friends.get(username) || { live: false, online: false };
    const listening = l.isListening(username);
    badge.hidden = since.hidden = timer.hidden = count.hidden = !friend.live;
    off.textContent = friend.live ? "" : friend.online ? `${username} is online, not live.` : `${username} is offline.`;
    if (friend.live) {
      since.textContent = `since ${new Date(friend.live_since).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}`;
      count.textContent = `${friend.listeners} listening · noise removal ${friend.denoise ? "on" : "off"}`;
    }
    listen.hidden = listening || !friend.live;
    panel.querySelector("#listen-controls").hidden = !friend.live && !listening;
    stop.hidden = !listening;
    const entry = l.listens.get(username);
    if (entry) for (const r of radios) r.querySelector("input").checked = r.querySelector("input").value === entry.signal;
    notice.textContent = l.notices.get(username) || "";
  };
  app.watch(draw);
  draw();
  const tick = setInterval(() => {
    const friend = app.friends.get(username);
    if (friend && friend.live) timer.textContent = clock((Date.now() - Date.parse(friend.live_since)) / 1000);
    const rms = l.level(username);
    level.value = rms === null ? 0 : meterValue(levelDb(rms));
  }, 200);
  app.onLeave(() => clearInterval(tick));
  return panel;
}

function userPage(app, main, boot) {
  const username = boot.username;
  title(username);
  const own = boot.relationship === "self";
  main.append(h("h1", {}, own ? "Your page" : username));
  if (own) {
    main.append(broadcastPanel(app));
  } else {
    const [error, report] = errorLine("friend-error");
    main.append(listenPanel(app, username), h("p", {},
      action(`Unfriend ${username}`, async () => {
        if (!confirm(`Stop being friends with ${username}? You will no longer hear each other's broadcasts or see each other's recordings.`)) return;
        await api("DELETE", `/api/friends/${enc(username)}`);
      }, report, { id: "unfriend", class: "danger subtle" })), error);
    app.on("friend_removed", (m) => {
      if (m.username === username) app.navigate(location.pathname, { push: false });
    });
  }
  main.append(h("section", { "aria-labelledby": "rec-title" },
    h("h2", { id: "rec-title" }, own ? "Your recordings" : `${username}'s recordings`),
    recordingList(app, { owner: username })));
}

function noAccess(app, main, boot) {
  const username = boot.username;
  title(username);
  const [error, report] = errorLine("error");
  const box = h("div", { id: "relationship" });
  const draw = () => {
    if (app.requests.outgoing.has(username)) {
      box.replaceChildren(h("p", {}, `You asked ${username} to be friends. Once they accept, you can listen and see their recordings.`),
        action("Cancel request", () => api("DELETE", `/api/friends/requests/${enc(username)}`), report));
    } else if (app.requests.incoming.has(username)) {
      box.replaceChildren(h("p", {}, `${username} asked to be your friend.`),
        action("Accept", () => api("POST", `/api/friends/requests/${enc(username)}/accept`), report, { class: "primary" }));
    } else {
      box.replaceChildren(h("p", {}, `You and ${username} are not friends yet. Only friends can listen to each other and play each other's recordings.`),
        action("Send friend request", () => api("POST", "/api/friends/requests", { username }), report,
          { class: "primary", id: "send-request" }));
    }
  };
  app.watch(draw);
  draw();
  app.on("friend", (m) => {
    if (m.friend.username === username) app.navigate(location.pathname, { push: false });
  });
  main.append(h("h1", {}, username), h("p", { class: "lead" }, "No access"), box, error);
}

function missing(app, main, boot) {
  title("Not found");
  main.append(h("h1", {}, "Not found"),
    h("p", { class: "lead" }, boot.username
      ? `There is nobody called ${boot.username} on this server.`
      : "There is no page at this address."),
    h("p", {}, app.me ? h("a", { href: "/search", "data-link": true }, "Find people") : h("a", { href: "/login" }, "Log in"),
      " · ", h("a", { href: "/", "data-link": Boolean(app.me) }, "Home")));
}

// -- search and requests ------------------------------------------------------------

function search(app, main) {
  title("Find people");
  const [error, report] = errorLine("error");
  const query = new URLSearchParams(location.search).get("q") || "";
  const input = h("input", { id: "q", name: "q", type: "search", value: query, autocomplete: "off",
    placeholder: "Name starts with…" });
  const results = h("ul", { id: "results", class: "cards" });
  const more = h("button", { type: "button", hidden: true }, "More");
  let cursor = null;
  const relationshipButton = (user) => {
    const act = (label, run) => action(label, async () => { await run(); await load(false); }, report);
    if (user.relationship === "friends") return h("span", { class: "muted" }, "Friends");
    if (user.relationship === "outgoing") return h("span", { class: "muted" }, "Request sent");
    if (user.relationship === "incoming") {
      return act("Accept", () => api("POST", `/api/friends/requests/${enc(user.username)}/accept`));
    }
    return act("Add friend", () => api("POST", "/api/friends/requests", { username: user.username }));
  };
  async function load(append) {
    const params = new URLSearchParams({ q: input.value.trim(), limit: "20" });
    if (append && cursor) params.set("after", cursor);
    const page = await api("GET", `/api/users?${params}`);
    const items = page.users.map((user) => h("li", { "data-user": user.username },
      h("a", { href: `/u/${enc(user.username)}`, "data-link": true }, user.username), relationshipButton(user)));
    if (append) results.append(...items);
    else {
      results.replaceChildren(...items);
      if (!items.length) results.append(emptyItem("Nobody found with that name."));
    }
    cursor = page.next;
    more.hidden = !page.next;
  }
  more.addEventListener("click", () => load(true).catch(report));
  const form = h("form", { role: "search", class: "inline" },
    h("label", { for: "q" }, "Name"), input, h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    history.replaceState({}, "", `/search?q=${enc(input.value.trim())}`);
    report(null);
    load(false).catch(report);
  });
  main.append(h("h1", {}, "Find people"), form, error, results, more);
  if (query) load(false).catch(report);
}

function requests(app, main) {
  title("Friend requests");
  const [error, report] = errorLine("error");
  const incoming = h("ul", { id: "incoming", class: "cards" });
  const outgoing = h("ul", { id: "outgoing", class: "cards" });
  const person = (username) => h("a", { href: `/u/${enc(username)}`, "data-link": true }, username);
  const draw = () => {
    incoming.replaceChildren(...[...app.requests.incoming].sort().map((username) => h("li", { "data-user": username },
      person(username),
      action("Accept", () => api("POST", `/api/friends/requests/${enc(username)}/accept`), report, { class: "primary" }),
      action("Reject", () => api("POST", `/api/friends/requests/${enc(username)}/reject`), report))));
    if (!app.requests.incoming.size) incoming.append(emptyItem("Nobody is waiting for an answer from you."));
    outgoing.replaceChildren(...[...app.requests.outgoing].sort().map((username) => h("li", { "data-user": username },
      person(username), h("span", { class: "muted" }, "waiting"),
      action("Cancel", () => api("DELETE", `/api/friends/requests/${enc(username)}`), report))));
    if (!app.requests.outgoing.size) outgoing.append(emptyItem("You are not waiting for anyone."));
  };
  app.watch(draw);
  draw();
  main.append(h("h1", {}, "Friend requests"), error,
    h("h2", {}, "Asking you"), incoming, h("h2", {}, "You asked"), outgoing,
    h("p", {}, h("a", { href: "/search", "data-link": true }, "Find people to add")));
}

// -- settings --------------------------------------------------------------------------

function settings(app, main) {
  title("Settings");
  const b = app.broadcaster;
  const [pwError, pwReport] = errorLine("password-error");
  const done = h("p", { id: "password-done", role: "status" });
  const password = h("form", { class: "card narrow", novalidate: true },
    h("h2", {}, "Change password"),
    h("label", { for: "current" }, "Current password"),
    h("input", { id: "current", type: "password", autocomplete: "current-password", required: true }),
    h("label", { for: "new" }, "New password"),
    h("input", { id: "new", type: "password", autocomplete: "new-password", required: true, minlength: "8" }),
    h("label", { for: "again" }, "New password again"),
    h("input", { id: "again", type: "password", autocomplete: "new-password", required: true }),
    h("button", { type: "submit" }, "Change password"), pwError, done);
  password.addEventListener("submit", async (event) => {
    event.preventDefault();
    done.textContent = "";
    const value = (id) => password.querySelector(`#${id}`).value;
    if (value("new") !== value("again")) { pwReport(new Error("The two new passwords are not the same.")); return; }
    try {
      pwReport(null);
      await api("POST", "/api/auth/password", { current_password: value("current"), new_password: value("new") });
      password.reset();
      done.textContent = "Your password is changed.";
    } catch (e) { pwReport(e); }
  });
  const [dnError, dnReport] = errorLine("denoise-error");
  const enabled = h("input", { type: "checkbox", id: "default-denoise", role: "switch" });
  const strength = h("input", { type: "number", id: "default-strength", min: "0", max: "100", step: "1",
    "aria-describedby": "default-strength-help" });
  enabled.addEventListener("change", () => { dnReport(null); b.setDenoise({ enabled: enabled.checked }).catch(dnReport); });
  strength.addEventListener("change", () => {
    dnReport(null);
    const text = strength.value.trim();
    b.setDenoise({ atten_lim_db: text === "" ? null : Number(text) }).catch(dnReport);
  });
  const draw = () => {
    enabled.checked = b.denoise;
    if (document.activeElement !== strength) strength.value = b.attenLimDb >= 100 ? "" : String(b.attenLimDb);
  };
  app.watch(draw);
  draw();
  const notifyState = h("p", { id: "notify-state", role: "status" });
  const [notifyError, notifyReport] = errorLine("notify-error");
  const showNotifyState = () => {
    notifyState.textContent = Notification.permission === "granted"
      ? "Notifications are on: when a friend goes live while DenoiseCast is in a background tab, the browser tells you."
      : "";
  };
  const notifications = "Notification" in window
    ? action("Notify me when a friend goes live", async () => {
      const answer = await Notification.requestPermission();
      showNotifyState();
      if (answer !== "granted") throw new Error("The browser will not show notifications; you still see a notice on the page.");
    }, notifyReport, { id: "notify" })
    : null;
  if (notifications) showNotifyState();
  main.append(h("h1", {}, "Settings"), password,
    h("section", { class: "card narrow", "aria-labelledby": "denoise-title" },
      h("h2", { id: "denoise-title" }, "Noise removal"),
      h("p", { class: "muted" }, "What your broadcasts start with; you can change it while live."),
      h("label", { class: "switch", for: "default-denoise" }, enabled, " Remove background noise"),
      h("label", { for: "default-strength" }, "Strength (dB of noise removed at most)"), strength,
      h("p", { id: "default-strength-help", class: "muted" }, "0 to 100; empty for no limit."),
      dnError),
    notifications ? h("section", { class: "card narrow" }, h("h2", {}, "Notifications"), notifications, notifyState, notifyError) : null,
    tokenSection(app));
}

export const PAGES = {
  login: (app, main) => credentials(app, main, "login"),
  register: (app, main) => credentials(app, main, "register"),
  home,
  user: userPage,
  "no-access": noAccess,
  missing,
  search,
  requests,
  settings,
  recording: recordingPage,
};

export { when };
