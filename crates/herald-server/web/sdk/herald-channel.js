// Herald realtime channels in the browser: one channel's messages, whole, in order, resumed after
// every reconnect. Large messages arrive in chunks; this module puts them back together, so a
// listener only ever sees complete messages. Types: /sdk/herald-channel.d.ts.
//
//   import { HeraldChannel } from '/sdk/herald-channel.js';
//   const logs = new HeraldChannel('session:1234', { token: () => fetchTokenFromYourBackend() });
//   logs.addEventListener('message', (e) => show(e.detail.data));   // string, or Blob for bytes
//   logs.addEventListener('gap', (e) => warn(`missed ${e.detail.from}..${e.detail.to}`));
//   await logs.connect();

import { Link, webSocketUrl } from './herald-link.js';

export class HeraldChannel extends EventTarget {
  #name;
  #baseUrl;
  #link;
  #transport;
  #position;
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
    this.#link = new Link(this, {
      token,
      urlFor: (t) => this.#channelUrl(t),
      attach: (url) => {
        this.#partial = null; // what a dropped connection held of a message is not resent whole
        return this.#transport === 'sse' ? this.#openSse(url) : this.#openWebSocket(url);
      },
    });
    this.#baseUrl = new URL(baseUrl ?? globalThis.location?.origin ?? 'http://localhost');
    this.#transport = transport;
    this.#position = after;
  }

  get name() { return this.#name; }
  /** The position of the last whole message (or gap) handled; reconnects resume after it. */
  get lastPosition() { return this.#position; }
  /** 'idle', 'connecting', 'open' or 'closed'. */
  get connectionState() { return this.#link.state; }

  /** Opens the channel; resolves once the server accepted the subscription. */
  connect() {
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
    this.#link.start();
    return opened;
  }

  /** Closes the channel and stops reconnecting. */
  close() {
    this.#link.stop();
  }

  #channelUrl(token) {
    const path = `/v1/channels/${encodeURIComponent(this.#name)}/${this.#transport === 'sse' ? 'stream' : 'ws'}`;
    const url = new URL(path, this.#baseUrl);
    url.searchParams.set('token', token);
    if (this.#position !== null) url.searchParams.set('after', String(this.#position));
    return url;
  }

  #openSse(url) {
    const link = this.#link;
    const source = new EventSource(url);
    const on = (name, handle) => source.addEventListener(name, (e) => {
      if (link.current(source)) handle(JSON.parse(e.data));
    });
    on('message', (m) => this.#whole(m, m.encoding === 'base64' ? blobOf([bytesOf(m.data)], m.content_type) : m.data));
    on('chunk', (c) => this.#chunk(c, bytesOf(c.data)));
    on('gap', (g) => this.#gap(g));
    // The server closes after `cutoff`; EventSource then reconnects by itself with
    // Last-Event-ID, the last whole message.
    on('cutoff', () => { this.#partial = null; });
    source.onopen = () => link.opened(source);
    source.onerror = () => {
      if (!link.current(source)) return;
      this.#partial = null;
      // Closed for good (403, an expired token): reconnect ourselves, with a fresh token.
      if (source.readyState === EventSource.CLOSED) link.lost(source, true);
      else link.retrying(source);
    };
    return source;
  }

  #openWebSocket(url) {
    const link = this.#link;
    const socket = new WebSocket(webSocketUrl(url));
    socket.binaryType = 'arraybuffer';
    let opened = false;
    socket.onopen = () => { opened = true; link.opened(socket); };
    socket.onmessage = (e) => {
      if (!link.current(socket)) return;
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
    socket.onclose = () => link.lost(socket, !opened);
    return socket;
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
}

function bytesOf(base64) {
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

/** Parts kept as they are: a Blob joins them without copying into one big array first. */
function blobOf(parts, contentType) {
  return new Blob(parts, { type: contentType });
}
