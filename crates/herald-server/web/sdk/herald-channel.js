// Herald realtime channels in the browser: one channel's messages, whole, in order, resumed after
// every reconnect. Large messages arrive in chunks; this module puts them back together, so a
// listener only ever sees complete messages. Types: /sdk/herald-channel.d.ts.
//
//   import { HeraldChannel } from '/sdk/herald-channel.js';
//   const logs = new HeraldChannel('session:1234', { token: () => fetchTokenFromYourBackend() });
//   logs.addEventListener('message', (e) => show(e.detail.data));   // string, or Blob for bytes
//   logs.addEventListener('gap', (e) => warn(`missed ${e.detail.from}..${e.detail.to}`));
//   await logs.connect();

import { Backoff, TokenSource } from './herald-link.js';

export class HeraldChannel extends EventTarget {
  #name;
  #baseUrl;
  #tokens;
  #transport;
  #position;
  #source = null; // EventSource or WebSocket
  #state = 'idle';
  #wanted = false;
  #backoff = new Backoff();
  #retryTimer = null;
  // The chunked message being put together: its header and the parts so far.
  #partial = null;

  /**
   * @param {string} name the channel, e.g. `session:1234`
   * @param {object} options
   * @param {string | (() => string | Promise<string>)} options.token a user token whose
   *   `channels` claim allows this channel, or a function that fetches a fresh one
   * @param {string} [options.baseUrl] Herald's origin; default: the page's
   * @param {'websocket' | 'sse'} [options.transport] default 'websocket' (binary frames)
   * @param {number} [options.after] start after this position; default: only new messages
   *   (0: the whole history)
   */
  constructor(name, { token, baseUrl, transport = 'websocket', after = null } = {}) {
    super();
    if (!name) throw new TypeError('HeraldChannel needs a channel name');
    if (!token) throw new TypeError('HeraldChannel needs a user token (a string or a function returning one)');
    if (transport !== 'sse' && transport !== 'websocket') {
      throw new TypeError(`transport must be 'sse' or 'websocket', not ${transport}`);
    }
    this.#name = name;
    this.#tokens = new TokenSource(token);
    this.#baseUrl = new URL(baseUrl ?? globalThis.location?.origin ?? 'http://localhost');
    this.#transport = transport;
    this.#position = after;
  }

  get name() { return this.#name; }
  /** The position of the last whole message (or gap) handled; reconnects resume after it. */
  get lastPosition() { return this.#position; }
  /** 'idle', 'connecting', 'open' or 'closed'. */
  get connectionState() { return this.#state; }

  /** Opens the channel; resolves once the server accepted the subscription. */
  connect() {
    this.#wanted = true;
    const opened = new Promise((resolve, reject) => {
      const onChange = (e) => {
        if (e.detail.state === 'open') { this.removeEventListener('connection', onChange); resolve(); }
        if (e.detail.state === 'closed' && e.detail.fatal) {
          this.removeEventListener('connection', onChange);
          reject(e.detail.error);
        }
      };
      this.addEventListener('connection', onChange);
    });
    this.#open();
    return opened;
  }

  /** Closes the channel and stops reconnecting. */
  close() {
    this.#wanted = false;
    clearTimeout(this.#retryTimer);
    this.#drop();
    this.#setState('closed');
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
    const path = `/v1/channels/${encodeURIComponent(this.#name)}/${this.#transport === 'sse' ? 'stream' : 'ws'}`;
    const url = new URL(path, this.#baseUrl);
    url.searchParams.set('token', token);
    if (this.#position !== null) url.searchParams.set('after', String(this.#position));
    if (this.#transport === 'sse') this.#openSse(url);
    else this.#openWebSocket(url);
  }

  #openSse(url) {
    const source = new EventSource(url);
    this.#source = source;
    const on = (name, handle) => source.addEventListener(name, (e) => {
      if (source === this.#source) handle(JSON.parse(e.data));
    });
    on('message', (m) => this.#whole(m, m.encoding === 'base64' ? blobOf([bytesOf(m.data)], m.content_type) : m.data));
    on('chunk', (c) => this.#chunk(c, bytesOf(c.data)));
    on('gap', (g) => this.#gap(g));
    // The server closes after `cutoff`; EventSource then reconnects by itself with
    // Last-Event-ID, the last whole message.
    on('cutoff', () => { this.#partial = null; });
    source.onopen = () => { if (source === this.#source) this.#connected(); };
    source.onerror = () => {
      if (source !== this.#source) return;
      this.#partial = null;
      // Closed for good (403, an expired token): reconnect ourselves, with a fresh token.
      if (source.readyState === EventSource.CLOSED) this.#lost(true);
      else this.#setState('connecting');
    };
  }

  #openWebSocket(url) {
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(url);
    socket.binaryType = 'arraybuffer';
    this.#source = socket;
    let opened = false;
    socket.onopen = () => { opened = true; if (socket === this.#source) this.#connected(); };
    socket.onmessage = (e) => {
      if (socket !== this.#source) return;
      if (typeof e.data !== 'string') {
        this.#chunk(null, new Uint8Array(e.data));
        return;
      }
      const frame = JSON.parse(e.data);
      if (frame.type === 'gap') this.#gap(frame);
      else if (frame.type === 'message' && 'data' in frame) this.#whole(frame, frame.data);
      else if (frame.type === 'message' && frame.chunks === 0) this.#whole(frame, blobOf([], frame.content_type));
      else if (frame.type === 'message') this.#partial = { header: frame, parts: [] };
    };
    // 4008: cut off for reading too slowly; any close: resume after the last whole message.
    socket.onclose = () => { if (socket === this.#source) this.#lost(!opened); };
  }

  /** A chunk: SSE names its message and index; WebSocket frames follow their header in order. */
  #chunk(info, bytes) {
    if (info && (!this.#partial || this.#partial.header.position !== info.position)) {
      this.#partial = info.index === 0 ? { header: info, parts: [] } : null;
    }
    const partial = this.#partial;
    if (!partial) return; // the tail of a message whose start this connection never saw
    partial.parts.push(bytes);
    if (partial.parts.length === partial.header.chunks) {
      this.#partial = null;
      this.#whole(partial.header, blobOf(partial.parts, partial.header.content_type));
    }
  }

  #whole(header, data) {
    this.#position = header.position;
    this.dispatchEvent(new CustomEvent('message', {
      detail: {
        position: header.position,
        contentType: header.content_type,
        bytes: header.bytes,
        publishedAt: header.published_at,
        data,
      },
    }));
  }

  #gap(gap) {
    // A message cut out of history while it was being sent: drop what arrived of it.
    if (this.#partial && this.#partial.header.position >= gap.from) this.#partial = null;
    this.#position = gap.reset ? 0 : gap.to;
    this.dispatchEvent(new CustomEvent('gap', { detail: { from: gap.from, to: gap.to, reset: !!gap.reset } }));
  }

  #connected() {
    this.#backoff.reset();
    this.#setState('open');
  }

  #lost(maybeUnauthorized) {
    this.#drop();
    if (maybeUnauthorized) this.#tokens.forget();
    if (!this.#wanted) return;
    this.#setState('connecting');
    this.#retryTimer = setTimeout(() => this.#open(), this.#backoff.next());
  }

  #drop() {
    const source = this.#source;
    this.#source = null;
    this.#partial = null;
    if (source) source.close();
  }

  #setState(state, extra = {}) {
    if (this.#state === state && !extra.error) return;
    this.#state = state;
    this.dispatchEvent(new CustomEvent('connection', { detail: { state, ...extra } }));
  }

}

function bytesOf(base64) {
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

/** Parts kept as they are: a Blob joins them without copying into one big array first. */
function blobOf(parts, contentType) {
  return new Blob(parts, { type: contentType });
}
