// Recordings: the list (on home and users' pages) and a recording's own page.
// Lists change by themselves: a finished recording appears for everyone
// allowed to hear it, a deleted one disappears, and so do a former friend's.

import { api, enc } from "./api.js";
import { h, clock, when, action, errorLine, emptyItem } from "./ui.js";

const audioUrl = (id, track, download) =>
  `/api/recordings/${enc(id)}/audio?track=${track}${download ? "&download=1" : ""}`;

function drawWaveform(canvas, points, timeline, duration) {
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const band = timeline ? 8 : 0;
  if (timeline && duration > 0) {
    // The denoise timeline under the waveform: teal while noise was removed.
    timeline.forEach((entry, i) => {
      const end = i + 1 < timeline.length ? timeline[i + 1].t : duration;
      context.fillStyle = entry.denoise ? "#0b7a75" : "#b0b7c3";
      context.fillRect((entry.t / duration) * width, height - band, ((end - entry.t) / duration) * width, band);
    });
  }
  context.fillStyle = "#264b8c";
  const middle = (height - band) / 2;
  const step = width / Math.max(1, points.length);
  points.forEach((peak, i) => {
    const bar = Math.max(1, peak * middle);
    context.fillRect(i * step, middle - bar, Math.max(1, step - 0.5), bar * 2);
  });
}

async function waveform(id, canvas, timeline, duration) {
  try {
    const { points } = await api("GET", `/api/recordings/${enc(id)}/waveform`);
    drawWaveform(canvas, points, timeline, duration);
  } catch { /* the picture is a nicety; the player still works */ }
}

function denoiseBadge(recording) {
  const switched = recording.timeline && recording.timeline.some((t) => t.denoise !== recording.denoise);
  const text = switched ? "noise removal switched" : recording.denoise ? "noise removed" : "original sound";
  return h("span", { class: `badge ${recording.denoise ? "on" : "off"}` }, text);
}

function player(recording, label) {
  const audio = h("audio", { controls: true, preload: "metadata", src: audioUrl(recording.id, "denoised"),
    "aria-label": label });
  const choice = h("select", { "aria-label": "Version" },
    h("option", { value: "denoised" }, "noise removed"), h("option", { value: "raw" }, "original"));
  choice.addEventListener("change", () => {
    // The other version at the same position, still playing if it was.
    const at = audio.currentTime, playing = !audio.paused;
    audio.src = audioUrl(recording.id, choice.value);
    audio.addEventListener("loadedmetadata", () => {
      audio.currentTime = at;
      if (playing) audio.play().catch(() => {});
    }, { once: true });
  });
  return [audio, choice];
}

function item(app, recording, showOwner, report) {
  const own = recording.owner === app.me.username;
  const canvas = h("canvas", { class: "wave", width: "240", height: "40", "aria-hidden": "true" });
  const slot = h("span", { class: "slot" });
  const li = h("li", { class: "recording", "data-id": recording.id, "data-owner": recording.owner },
    h("a", { href: `/r/${enc(recording.id)}`, "data-link": true, class: "when" },
      (showOwner ? `${recording.owner}, ` : "") + when(recording.started_at)),
    h("span", { class: "duration", "aria-label": `length ${clock(recording.duration_seconds)}` }, clock(recording.duration_seconds)),
    denoiseBadge(recording),
    recording.status === "complete" ? null : h("span", { class: "badge off" }, recording.status),
    canvas,
    slot,
    h("span", { class: "buttons" },
      action("▶ Play", async () => {
        if (!slot.childNodes.length) slot.append(...player(recording, `Recording of ${when(recording.started_at)}`));
        await slot.querySelector("audio").play();
      }, report, { class: "play", "aria-label": `Play the recording of ${when(recording.started_at)}` }),
      h("a", { class: "button", href: audioUrl(recording.id, "denoised", true), download: "",
        "aria-label": `Download the recording of ${when(recording.started_at)}` }, "⤓ Download"),
      own ? action("Delete", async () => {
        if (!confirm(`Delete the recording of ${when(recording.started_at)}? This cannot be undone.`)) return;
        await api("DELETE", `/api/recordings/${enc(recording.id)}`);
        li.remove();
      }, report, { class: "danger subtle delete", "aria-label": `Delete the recording of ${when(recording.started_at)}` }) : null));
  waveform(recording.id, canvas, null, recording.duration_seconds);
  return li;
}

export function recordingList(app, { owner }) {
  const [error, report] = errorLine("recordings-error");
  const list = h("ul", { class: "recordings", id: "recordings" });
  const more = h("button", { type: "button", hidden: true }, "Older recordings");
  let cursor = null;
  const showOwner = owner === null;
  const empty = () => {
    const has = list.querySelector("li.recording");
    const placeholder = list.querySelector("li.empty");
    if (!has && !placeholder) list.append(emptyItem("No recordings yet. Every broadcast is recorded."));
    if (has && placeholder) placeholder.remove();
  };
  async function load(append) {
    const params = new URLSearchParams({ limit: "20" });
    if (owner) params.set("owner", owner);
    if (append && cursor) params.set("cursor", cursor);
    const page = await api("GET", `/api/recordings?${params}`);
    // A broadcast still being recorded appears once it is finished (recording_ready).
    const items = page.recordings.filter((r) => r.status !== "recording").map((r) => item(app, r, showOwner, report));
    if (append) list.append(...items); else list.replaceChildren(...items);
    cursor = page.next;
    more.hidden = !page.next;
    empty();
  }
  more.addEventListener("click", () => load(true).catch(report));
  load(false).catch(report);
  app.on("recording_ready", ({ recording }) => {
    if (owner && recording.owner !== owner) return;
    // Listed while it was still being recorded: the final one takes its place.
    const fresh = item(app, recording, showOwner, report);
    const listed = list.querySelector(`li[data-id="${CSS.escape(recording.id)}"]`);
    if (listed) listed.replaceWith(fresh); else list.prepend(fresh);
    empty();
  });
  app.on("recording_removed", ({ id }) => {
    const li = list.querySelector(`li[data-id="${CSS.escape(id)}"]`);
    if (li) li.remove();
    empty();
  });
  app.on("friend_removed", ({ username }) => {
    for (const li of list.querySelectorAll(`li[data-owner="${CSS.escape(username)}"]`)) li.remove();
    empty();
  });
  return h("div", {}, error, list, more);
}

export function recordingPage(app, main, boot) {
  const [error, report] = errorLine("error");
  main.append(h("h1", {}, "Recording"), error);
  api("GET", `/api/recordings/${enc(boot.recording)}`).then(({ recording }) => {
    document.title = `${recording.owner}, ${when(recording.started_at)} · DenoiseCast`;
    const canvas = h("canvas", { class: "wave big", width: "960", height: "140", role: "img",
      "aria-label": "Waveform; the band under it shows where noise removal was on (teal) or off (grey)" });
    const [audio, choice] = player(recording, "Recording");
    const own = recording.owner === app.me.username;
    const timeline = h("ol", { class: "timeline" }, ...recording.timeline.map((t) => h("li", {},
      `${clock(t.t)}: `, t.denoise
        ? `noise removal on${t.atten_lim_db < 100 ? `, at most ${t.atten_lim_db} dB` : ""}`
        : "noise removal off")));
    main.replaceChildren(
      h("h1", {}, `${recording.owner}, ${when(recording.started_at)}`),
      h("p", {}, h("span", { class: "duration" }, clock(recording.duration_seconds)), " ", denoiseBadge(recording),
        recording.status === "complete" ? "" : ` (${recording.status})`),
      canvas,
      h("p", { class: "player" }, audio, h("label", {}, "Version ", choice)),
      h("h2", {}, "Noise removal"), timeline,
      h("p", { class: "buttons" },
        h("a", { class: "button", href: audioUrl(recording.id, "denoised", true), download: "" }, "⤓ Download (noise removed)"),
        h("a", { class: "button", href: audioUrl(recording.id, "raw", true), download: "" }, "⤓ Download (original)"),
        own ? action("Delete", async () => {
          if (!confirm("Delete this recording? This cannot be undone.")) return;
          await api("DELETE", `/api/recordings/${enc(recording.id)}`);
          app.navigate(`/u/${enc(recording.owner)}`);
        }, report, { class: "danger subtle delete" }) : null,
        h("a", { href: `/u/${enc(recording.owner)}`, "data-link": true }, `All of ${own ? "your" : `${recording.owner}'s`} recordings`)),
      error);
    waveform(recording.id, canvas, recording.timeline, recording.duration_seconds);
    app.on("recording_removed", ({ id }) => { if (id === recording.id) app.navigate(location.pathname, { push: false }); });
    app.on("friend_removed", ({ username }) => { if (username === recording.owner) app.navigate(location.pathname, { push: false }); });
  }).catch(report);
}
