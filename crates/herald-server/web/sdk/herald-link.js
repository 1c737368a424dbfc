// What every Herald live connection in the browser needs: a user token that can be fetched
// again, reconnect delays, and the connection that stays up with them (`Link`). Shared by
// /sdk/herald.js (the user's feed) and /sdk/herald-channel.js (a realtime channel).

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 15000;

/** A user token given as a string, or a function that fetches a fresh one when asked. */
export class TokenSource {
  #source;
  #token = null;

  constructor(source) {
    this.#source = source;
  }

  /** Whether a refused token can be replaced (the source is a function). */
  get refreshable() { return typeof this.#source === 'function'; }

  /** The token to send; fetched once, then kept until `forget`. */
  async current() {
    if (this.#token) return this.#token;
    this.#token = this.refreshable ? await this.#source() : this.#source;
    if (!this.#token) throw new Error('the token function returned no token');
    return this.#token;
  }

  /** Drops a token the server refused, so the next `current` fetches a fresh one. */
  forget() {
    if (this.refreshable) this.#token = null;
  }
}

/** Reconnect delays: quick first, then backing off, with jitter so a restart is not a stampede. */
export class Backoff {
  #ms = RETRY_MIN_MS;

  reset() { this.#ms = RETRY_MIN_MS; }

  /** The delay before the next attempt, in milliseconds. */
  next() {
    const delay = this.#ms * (0.5 + Math.random() / 2);
    this.#ms = Math.min(this.#ms * 2, RETRY_MAX_MS);
    return delay;
  }
}

/**
 * One live connection that stays up: it fetches a token, opens the transport, and after a drop
 * reconnects with backoff (and a fresh token when the server may have refused the old one). Its
 * owner says how to build the URL and how to open the transport; `connection` events go to the
 * owner (`{state: 'connecting' | 'open' | 'closed', error?, fatal?}`).
 */
export class Link {
  #owner;
  #tokens;
  #urlFor;
  #attach;
  #source = null; // EventSource or WebSocket
  #state = 'idle';
  #wanted = false;
  #backoff = new Backoff();
  #retryTimer = null;

  /**
   * @param {EventTarget} owner
   * @param {object} how
   * @param {string | (() => string | Promise<string>)} how.token
   * @param {(token: string) => URL} how.urlFor the URL to open, with the token
   * @param {(url: URL) => EventSource | WebSocket} how.attach opens the transport; its handlers
   *   report through `opened`, `retrying` and `lost`, and ignore events when not `current`
   */
  constructor(owner, { token, urlFor, attach }) {
    this.#owner = owner;
    this.#tokens = new TokenSource(token);
    this.#urlFor = urlFor;
    this.#attach = attach;
  }

  get state() { return this.#state; }
  get tokens() { return this.#tokens; }

  start() {
    this.#wanted = true;
    this.#open();
  }

  /** Closes and stops reconnecting. */
  stop() {
    this.#wanted = false;
    clearTimeout(this.#retryTimer);
    this.#drop();
    this.#setState('closed');
  }

  /** Whether `source` is the open transport (an older one's late events are ignored). */
  current(source) { return source === this.#source; }

  opened(source) {
    if (!this.current(source)) return;
    this.#backoff.reset();
    this.#setState('open');
  }

  /** The transport reconnects by itself (EventSource does). */
  retrying(source) {
    if (this.current(source)) this.#setState('connecting');
  }

  /** The transport is gone; `maybeUnauthorized`: it may have been refused for its token. */
  lost(source, maybeUnauthorized) {
    if (!this.current(source)) return;
    this.#drop();
    if (maybeUnauthorized) this.#tokens.forget();
    if (!this.#wanted) return;
    this.#setState('connecting');
    this.#retryTimer = setTimeout(() => this.#open(), this.#backoff.next());
  }

  async #open() {
    this.#drop();
    this.#setState('connecting');
    let token;
    try {
      token = await this.#tokens.current();
    } catch (error) {
      this.#setState('closed', { error, fatal: true });
      return;
    }
    if (!this.#wanted) return;
    this.#source = this.#attach(this.#urlFor(token));
  }

  #drop() {
    const source = this.#source;
    this.#source = null;
    if (source) source.close();
  }

  #setState(state, extra = {}) {
    if (this.#state === state && !extra.error) return;
    this.#state = state;
    this.#owner.dispatchEvent(new CustomEvent('connection', { detail: { state, ...extra } }));
  }
}

/** `url` with its scheme turned into the WebSocket one. */
export function webSocketUrl(url) {
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url;
}
