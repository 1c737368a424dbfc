// Types for /sdk/herald-channel.js: one realtime channel, messages whole and in order.

export interface ChannelMessage {
  /** The message's place in its channel, from 1. */
  position: number;
  contentType: string;
  /** Payload length in bytes. */
  bytes: number;
  /** RFC 3339, milliseconds. */
  publishedAt: string;
  /** Text payloads (text/*, JSON) as a string; anything else, or any chunked message, as a Blob. */
  data: string | Blob;
}

export interface ChannelGap {
  /** Positions `from..=to` are no longer in the channel's history. */
  from: number;
  to: number;
  /** The channel was forgotten while idle and started over at position 1. */
  reset: boolean;
}

export interface ChannelOptions {
  /** A user token whose `channels` claim allows this channel, or a function fetching a fresh one. */
  token: string | (() => string | Promise<string>);
  /** Herald's origin; default: the page's. */
  baseUrl?: string;
  /** Default 'websocket' (binary frames); 'sse' sends chunks as base64. */
  transport?: 'websocket' | 'sse';
  /** Start after this position; default: only new messages; 0: the whole history. */
  after?: number | null;
}

export interface ChannelEventMap {
  message: CustomEvent<ChannelMessage>;
  gap: CustomEvent<ChannelGap>;
  connection: CustomEvent<{ state: 'idle' | 'connecting' | 'open' | 'closed'; error?: unknown; fatal?: boolean }>;
}

export declare class HeraldChannel extends EventTarget {
  constructor(name: string, options: ChannelOptions);
  readonly name: string;
  /** The last whole message (or gap) handled; reconnects resume after it. */
  readonly lastPosition: number | null;
  readonly connectionState: 'idle' | 'connecting' | 'open' | 'closed';
  /** Resolves once the server accepted the subscription (a 403 rejects it). */
  connect(): Promise<void>;
  /** Closes and stops reconnecting. */
  close(): void;
  addEventListener<K extends keyof ChannelEventMap>(
    type: K,
    listener: (event: ChannelEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}
