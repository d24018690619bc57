// The JSON API (docs/api.md), with the CSRF header the server asks for.

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)dc_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const options = { method, headers: { "X-CSRF-Token": csrfToken() }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError("The server cannot be reached. Check your connection and try again.", 0, "offline");
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = data && data.error;
    throw new ApiError(error ? error.message : `The server answered ${response.status}.`, response.status, error && error.code);
  }
  return data;
}

export const enc = encodeURIComponent;
