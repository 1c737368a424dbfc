// Herald browser SDK: a user's notification center and live feed, as one EventTarget.
// Plain ES module, no dependencies, no build step. Types: /sdk/herald.d.ts.
//
//   import { Herald } from '/sdk/herald.js';
//   const herald = new Herald({ token: () => fetchTokenFromYourBackend() });
//   herald.addEventListener('notification', (e) => console.log(e.detail.notification));
//   herald.addEventListener('unread', (e) => badge.textContent = e.detail.unread);
//   await herald.connect();

import { Backoff, TokenSource } from './herald-link.js';

/** Live event names the server sends (SSE `event:`, WebSocket `type`). */
const FEED_EVENTS = ['ready', 'notification', 'read', 'read_all', 'archived', 'refetch'];


export class HeraldError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `Herald answered ${status}`);
    this.name = 'HeraldError';
    this.status = status;
    this.problem = problem ?? null;
  }
}

export class Herald extends EventTarget {
  #baseUrl;
  #tokens;
  #transport;
  #position = null;
  #unread = null;
  #state = 'idle';
  #source = null; // EventSource or WebSocket
  #backoff = new Backoff();
  #retryTimer = null;
  #wanted = false;

  /**
   * @param {object} options
   * @param {string | (() => string | Promise<string>)} options.token a user token, or a function
   *   that fetches a fresh one (called again when the server says the token expired)
   * @param {string} [options.baseUrl] Herald's origin; default: the page's
   * @param {'sse' | 'websocket'} [options.transport] default 'sse'
   * @param {string} [options.lastPosition] resume after this position (e.g. kept across pages)
   */
  constructor({ token, baseUrl, transport = 'sse', lastPosition = null } = {}) {
    super();
    if (!token) throw new TypeError('Herald needs a user token (a string or a function returning one)');
    this.#tokens = new TokenSource(token);
    this.#baseUrl = new URL(baseUrl ?? globalThis.location?.origin ?? 'http://localhost');
    if (transport !== 'sse' && transport !== 'websocket') {
      throw new TypeError(`transport must be 'sse' or 'websocket', not ${transport}`);
    }
    this.#transport = transport;
    this.#position = lastPosition;
  }

  /** The position of the last live event seen: reconnects resume after it. */
  get lastPosition() { return this.#position; }
  /** The unread count as last heard from the server (null before the first answer). */
  get unread() { return this.#unread; }
  /** 'idle', 'connecting', 'open' or 'closed'. */
  get connectionState() { return this.#state; }
  get transport() { return this.#transport; }

  // ---- live feed -------------------------------------------------------------------------

  /** Opens the live feed; resolves once the server sent `ready` (or `refetch`). */
  connect() {
    this.#wanted = true;
    const opened = new Promise((resolve, reject) => {
      const onReady = () => { cleanup(); resolve(); };
      const onClosed = (e) => {
        if (e.detail.state === 'closed' && e.detail.fatal) { cleanup(); reject(e.detail.error); }
      };
      const cleanup = () => {
        this.removeEventListener('ready', onReady);
        this.removeEventListener('refetch', onReady);
        this.removeEventListener('connection', onClosed);
      };
      this.addEventListener('ready', onReady);
      this.addEventListener('refetch', onReady);
      this.addEventListener('connection', onClosed);
    });
    this.#open();
    return opened;
  }

  /** Closes the live feed and stops reconnecting. */
  disconnect() {
    this.#wanted = false;
    clearTimeout(this.#retryTimer);
    this.#close();
    this.#setState('closed');
  }

  async #open() {
    this.#close();
    this.#setState('connecting');
    let token;
    try {
      token = await this.#tokens.current();
    } catch (error) {
      this.#setState('closed', { error, fatal: true });
      return;
    }
    if (!this.#wanted) return;
    const url = this.#url(this.#transport === 'sse' ? '/v1/me/stream' : '/v1/me/ws');
    url.searchParams.set('token', token);
    if (this.#position) url.searchParams.set('last_event_id', this.#position);
    if (this.#transport === 'sse') this.#openSse(url);
    else this.#openWebSocket(url);
  }

  #openSse(url) {
    const source = new EventSource(url);
    this.#source = source;
    for (const name of FEED_EVENTS) {
      source.addEventListener(name, (e) => {
        if (source !== this.#source) return;
        this.#onFeedEvent(name, e.lastEventId, JSON.parse(e.data));
      });
    }
    source.onopen = () => { if (source === this.#source) this.#connected(); };
    source.onerror = () => {
      if (source !== this.#source) return;
      // EventSource retries by itself (with Last-Event-ID) unless the answer was not a stream
      // (401 for an expired token, say): then it closes, and we reconnect with a fresh token.
      if (source.readyState === EventSource.CLOSED) this.#lost(true);
      else this.#setState('connecting');
    };
  }

  #openWebSocket(url) {
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(url);
    this.#source = socket;
    let opened = false;
    socket.onopen = () => { opened = true; if (socket === this.#source) this.#connected(); };
    socket.onmessage = (e) => {
      if (socket !== this.#source) return;
      const message = JSON.parse(e.data);
      if (FEED_EVENTS.includes(message.type)) this.#onFeedEvent(message.type, message.position, message);
    };
    // A refused upgrade (bad token) never opens: ask for a fresh token before trying again.
    socket.onclose = () => { if (socket === this.#source) this.#lost(!opened); };
  }

  #connected() {
    this.#backoff.reset();
    this.#setState('open');
  }

  #lost(maybeUnauthorized) {
    this.#close();
    if (maybeUnauthorized) this.#tokens.forget();
    if (!this.#wanted) return;
    this.#setState('connecting');
    this.#retryTimer = setTimeout(() => this.#open(), this.#backoff.next());
  }

  #close() {
    const source = this.#source;
    this.#source = null;
    if (source) source.close();
  }

  #onFeedEvent(name, position, data) {
    if (position) this.#position = position;
    this.dispatchEvent(new CustomEvent(name, { detail: data }));
    if (typeof data.unread === 'number') this.#setUnread(data.unread);
  }

  #setState(state, extra = {}) {
    if (this.#state === state && !extra.error) return;
    this.#state = state;
    this.dispatchEvent(new CustomEvent('connection', { detail: { state, ...extra } }));
  }

  #setUnread(unread) {
    if (unread === this.#unread) return;
    this.#unread = unread;
    this.dispatchEvent(new CustomEvent('unread', { detail: { unread } }));
  }

  // ---- notification center ---------------------------------------------------------------

  /** One page of the inbox, newest first. Pass the previous page's `next` as `before`. */
  async list({ limit = 20, before } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before) query.set('before', before);
    const page = await this.#request('GET', `/v1/me/notifications?${query}`);
    this.#setUnread(page.unread);
    return page;
  }

  /** Iterates over the whole inbox page by page (`for await (const page of herald.pages())`). */
  async *pages({ limit = 20 } = {}) {
    let before;
    do {
      const page = await this.list({ limit, before });
      yield page;
      before = page.next;
    } while (before);
  }

  /** The unread count (the badge), fetched now. */
  async fetchUnread() {
    const { unread } = await this.#request('GET', '/v1/me/unread');
    this.#setUnread(unread);
    return unread;
  }

  /** Marks one notification read; resolves to the new unread count. */
  markRead(id) {
    return this.#change('POST', `/v1/me/notifications/${encodeURIComponent(id)}/read`);
  }

  markAllRead() {
    return this.#change('POST', '/v1/me/notifications/read-all');
  }

  /** Archives a notification: it leaves the inbox. */
  archive(id) {
    return this.#change('DELETE', `/v1/me/notifications/${encodeURIComponent(id)}`);
  }

  async #change(method, path) {
    const { unread } = await this.#request(method, path);
    this.#setUnread(unread);
    return unread;
  }

  // ---- Web Push ----------------------------------------------------------------------------

  /**
   * Subscribes this browser to Web Push and registers it as the user's device. Asks the user
   * for permission (call it from a click). Resolves to the registered device.
   */
  async registerWebPush({ serviceWorkerUrl = '/sdk/herald-sw.js', scope = '/' } = {}) {
    if (!('serviceWorker' in navigator) || !('PushManager' in globalThis)) {
      throw new HeraldError(0, { detail: 'this browser does not support Web Push' });
    }
    const permission = await Notification.requestPermission();
    if (permission !== 'granted') {
      throw new HeraldError(0, { detail: `notifications are ${permission} for this site` });
    }
    const { public_key: key } = await this.#request('GET', '/v1/webpush/vapid-public-key', { auth: false });
    const registration = await navigator.serviceWorker.register(new URL(serviceWorkerUrl, this.#baseUrl), {
      scope, type: 'classic',
    });
    await navigator.serviceWorker.ready;
    const subscription = (await registration.pushManager.getSubscription())
      ?? await registration.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: base64UrlToBytes(key),
      });
    const { endpoint, keys } = subscription.toJSON();
    return this.#request('POST', '/v1/me/devices', {
      body: {
        platform: 'webpush', endpoint, keys,
        locale: navigator.language,
        timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      },
    });
  }

  /** Unsubscribes this browser from Web Push and removes the device. */
  async unregisterWebPush({ scope = '/' } = {}) {
    const registration = await navigator.serviceWorker?.getRegistration(scope);
    const subscription = await registration?.pushManager.getSubscription();
    if (!subscription) return false;
    const { devices } = await this.#request('GET', '/v1/me/devices');
    const device = devices.find((d) => d.address === subscription.endpoint);
    await subscription.unsubscribe();
    if (device) await this.#request('DELETE', `/v1/me/devices/${encodeURIComponent(device.id)}`);
    return true;
  }

  // ---- plumbing ------------------------------------------------------------------------------

  #url(path) {
    return new URL(path, this.#baseUrl);
  }

  async #request(method, path, { body, auth = true, retried = false } = {}) {
    const headers = { accept: 'application/json' };
    if (auth) {
      const token = await this.#tokens.current().catch((e) => { throw new HeraldError(401, { detail: e.message }); });
      headers.authorization = `Bearer ${token}`;
    }
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(this.#url(path), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    // An expired token: fetch a fresh one once, if we know how.
    if (response.status === 401 && auth && !retried && this.#tokens.refreshable) {
      this.#tokens.forget();
      return this.#request(method, path, { body, auth, retried: true });
    }
    const text = await response.text();
    const json = text ? JSON.parse(text) : null;
    if (!response.ok) throw new HeraldError(response.status, json);
    return json;
  }
}

function base64UrlToBytes(value) {
  const base64 = value.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(value.length / 4) * 4, '=');
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}
