// Herald browser SDK: a user's notification center and live feed, as one EventTarget.
// Plain ES module, no dependencies, no build step. Types: /sdk/herald.d.ts.
//
//   import { Herald } from '/sdk/herald.js';
//   const herald = new Herald({ token: () => fetchTokenFromYourBackend() });
//   herald.addEventListener('notification', (e) => console.log(e.detail.notification));
//   herald.addEventListener('unread', (e) => badge.textContent = e.detail.unread);
//   await herald.connect();

import { Link, webSocketUrl } from './herald-link.js';

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
  #link;
  #transport;
  #position = null;
  #unread = null;

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
    this.#link = new Link(this, {
      token,
      urlFor: (t) => this.#feedUrl(t),
      attach: (url) => (this.#transport === 'sse' ? this.#openSse(url) : this.#openWebSocket(url)),
    });
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
  get connectionState() { return this.#link.state; }
  get transport() { return this.#transport; }

  // ---- live feed -------------------------------------------------------------------------

  /** Opens the live feed; resolves once the server sent `ready` (or `refetch`). */
  connect() {
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
    this.#link.start();
    return opened;
  }

  /** Closes the live feed and stops reconnecting. */
  disconnect() {
    this.#link.stop();
  }

  #feedUrl(token) {
    const url = this.#url(this.#transport === 'sse' ? '/v1/me/stream' : '/v1/me/ws');
    url.searchParams.set('token', token);
    if (this.#position) url.searchParams.set('last_event_id', this.#position);
    return url;
  }

  #openSse(url) {
    const link = this.#link;
    const source = new EventSource(url);
    for (const name of FEED_EVENTS) {
      source.addEventListener(name, (e) => {
        if (link.current(source)) this.#onFeedEvent(name, e.lastEventId, JSON.parse(e.data));
      });
    }
    source.onopen = () => link.opened(source);
    // EventSource retries by itself (with Last-Event-ID) unless the answer was not a stream
    // (401 for an expired token, say): then it closes, and we reconnect with a fresh token.
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) link.lost(source, true);
      else link.retrying(source);
    };
    return source;
  }

  #openWebSocket(url) {
    const link = this.#link;
    const socket = new WebSocket(webSocketUrl(url));
    let opened = false;
    socket.onopen = () => { opened = true; link.opened(socket); };
    socket.onmessage = (e) => {
      if (!link.current(socket)) return;
      const message = JSON.parse(e.data);
      if (FEED_EVENTS.includes(message.type)) this.#onFeedEvent(message.type, message.position, message);
    };
    // A refused upgrade (bad token) never opens: ask for a fresh token before trying again.
    socket.onclose = () => link.lost(socket, !opened);
    return socket;
  }

  #onFeedEvent(name, position, data) {
    if (position) this.#position = position;
    this.dispatchEvent(new CustomEvent(name, { detail: data }));
    if (typeof data.unread === 'number') this.#setUnread(data.unread);
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
      const token = await this.#link.tokens.current().catch((e) => { throw new HeraldError(401, { detail: e.message }); });
      headers.authorization = `Bearer ${token}`;
    }
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(this.#url(path), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    // An expired token: fetch a fresh one once, if we know how.
    if (response.status === 401 && auth && !retried && this.#link.tokens.refreshable) {
      this.#link.tokens.forget();
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
