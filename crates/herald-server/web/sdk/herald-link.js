// What every Herald live connection in the browser needs: a user token that can be fetched
// again, and reconnect delays. Shared by /sdk/herald.js and /sdk/herald-channel.js.

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
