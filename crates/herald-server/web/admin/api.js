// Calls to Herald's API with the operator's key, and where that key is kept.

const KEY_ITEM = 'herald.admin.apiKey';

// sessionStorage: the key lives as long as this tab, and is never written to disk by us.
export const apiKey = {
  get: () => sessionStorage.getItem(KEY_ITEM),
  set: (key) => sessionStorage.setItem(KEY_ITEM, key),
  clear: () => sessionStorage.removeItem(KEY_ITEM),
};

export class ApiError extends Error {
  constructor(status, problem, fallback) {
    super(problem?.detail ?? fallback);
    this.status = status;
    this.problem = problem;
  }
}

/**
 * One API call. `body` is sent as JSON unless `contentType` is given (then as is: a File, say).
 * A 401/403 fires `herald-admin-unauthorized` on window so the console can ask for the key again.
 */
export async function api(method, path, { body, contentType, key = apiKey.get() } = {}) {
  const headers = { authorization: `Bearer ${key}`, accept: 'application/json' };
  let payload;
  if (body !== undefined) {
    headers['content-type'] = contentType ?? 'application/json';
    payload = contentType ? body : JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (response.status === 401 || response.status === 403) {
    window.dispatchEvent(new CustomEvent('herald-admin-unauthorized', { detail: json?.detail }));
  }
  if (!response.ok) throw new ApiError(response.status, json, `${method} ${path}: ${response.status}`);
  return json;
}

export const userPath = (user, rest) => `/v1/users/${encodeURIComponent(user)}/${rest}`;
