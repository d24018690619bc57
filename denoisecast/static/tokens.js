// The settings page's tokens section: publish tokens (OBS, ffmpeg, GStreamer
// over WHIP) and listen tokens (players), made, listed and revoked here.
// A new token is shown once, in a read-only field with a copy button.

import { api, enc } from "./api.js";
import { h, when, action, errorLine, emptyItem } from "./ui.js";

const SCOPE_TEXT = {
  publish: "Publish: go live from OBS, ffmpeg or GStreamer",
  listen: "Listen: hear your friends in a player (VLC, a phone)",
};

// The field that shows a new token once, with its copy button and what to do with it.
function shownOnce(app, made, secret) {
  const field = h("input", { id: "new-token", readonly: true, value: secret, spellcheck: "false",
    autocomplete: "off", "aria-describedby": "new-token-help", class: "token-secret" });
  const copied = h("p", { id: "new-token-copied", role: "status" });
  const copy = h("button", { type: "button", id: "copy-token" }, "Copy token");
  copy.addEventListener("click", async () => {
    field.select();
    try {
      await navigator.clipboard.writeText(secret);
      copied.textContent = "Copied to the clipboard.";
    } catch {
      copied.textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy it.";
    }
  });
  const whip = `${location.origin}/whip/${enc(app.me.username)}`;
  const use = made.scope === "publish"
    ? h("p", { class: "muted" }, "In OBS (Settings, Stream): service WHIP, server ",
      h("code", {}, whip), ", bearer token: this token.")
    : h("p", { class: "muted" }, "Give it to your player with a friend's listen address (see the user guide).");
  return h("div", { class: "token-new", role: "group", "aria-labelledby": "new-token-label" },
    h("label", { id: "new-token-label", for: "new-token" }, `Your new token "${made.name}"`),
    h("div", { class: "buttons" }, field, copy),
    h("p", { id: "new-token-help", class: "muted" },
      "Copy it now: it is shown only this once. Anyone who has it can use it as you, so keep it private."),
    use, copied);
}

export function tokenSection(app) {
  const [error, report] = errorLine("tokens-error");
  const list = h("ul", { id: "token-list", class: "cards" });
  const fresh = h("div", { id: "token-fresh" });
  const name = h("input", { id: "token-name", maxlength: "64", required: true, autocomplete: "off",
    "aria-describedby": "token-name-help" });
  const scope = h("select", { id: "token-scope" },
    ...Object.entries(SCOPE_TEXT).map(([value, text]) => h("option", { value }, text)));
  const form = h("form", { class: "token-form", novalidate: true, "aria-labelledby": "tokens-title" },
    h("label", { for: "token-name" }, "Name"), name,
    h("p", { id: "token-name-help", class: "muted" }, "The device or program it is for, e.g. \"OBS on the laptop\"."),
    h("label", { for: "token-scope" }, "Lets it"), scope,
    h("button", { type: "submit", class: "primary" }, "Make token"));
  const draw = async () => {
    const { tokens } = await api("GET", "/api/tokens");
    list.replaceChildren(...tokens.map((token) => h("li", { class: "token" },
      h("span", { class: "token-name" }, token.name),
      h("span", { class: "badge" }, token.scope),
      h("span", { class: "muted" }, `made ${when(token.created_at)}`,
        token.last_used_at ? `, last used ${when(token.last_used_at)}` : ", never used"),
      action("Revoke", async () => {
        if (!confirm(`Revoke "${token.name}"? Whatever uses it stops working at once.`)) return;
        await api("DELETE", `/api/tokens/${enc(token.id)}`);
        fresh.replaceChildren();
        await draw();
      }, report, { class: "danger subtle", "aria-label": `Revoke ${token.name}` }))));
    if (!tokens.length) list.append(emptyItem("You have no tokens."));
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (!name.value.trim()) { report(new Error("Give the token a name.")); name.focus(); return; }
    button.disabled = true;
    try {
      report(null);
      const { token, secret } = await api("POST", "/api/tokens", { name: name.value, scope: scope.value });
      form.reset();
      fresh.replaceChildren(shownOnce(app, token, secret));
      fresh.querySelector("#new-token").focus();
      await draw();
    } catch (e) { report(e); } finally { button.disabled = false; }
  });
  draw().catch(report);
  return h("section", { class: "card", id: "tokens", "aria-labelledby": "tokens-title" },
    h("h2", { id: "tokens-title" }, "Tokens for other programs"),
    h("p", { class: "muted" },
      "A publish token lets a streaming program go live as you; a listen token lets a player hear any of your friends. ",
      "Revoke one when you no longer use it."),
    fresh, form, error, h("h3", {}, "Your tokens"), list);
}
