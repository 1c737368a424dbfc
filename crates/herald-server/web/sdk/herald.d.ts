// Types of the Herald browser SDK (/sdk/herald.js). Hand-written; keep in step with the module.

/** A notification as the inbox and the live feed show it. */
export interface HeraldNotification {
  id: string;
  title: string;
  body: string;
  category: string | null;
  data: Record<string, unknown>;
  priority: 'high' | 'normal' | 'low';
  /** RFC 3339, UTC. */
  created_at: string;
  read: boolean;
}

export interface InboxPage {
  items: HeraldNotification[];
  /** Unread notifications in the whole inbox. */
  unread: number;
  /** Pass as `before` for the next (older) page; null on the last page. */
  next: string | null;
}

export interface Device {
  id: string;
  user: string;
  platform: 'fcm' | 'apns' | 'webpush';
  address: string;
  registered_at: number;
}

export type TokenSource = string | (() => string | Promise<string>);
export type Transport = 'sse' | 'websocket';
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'closed';

export interface HeraldOptions {
  /** A user token, or a function fetching a fresh one (called again when one expires). */
  token: TokenSource;
  /** Herald's origin; default: the page's. */
  baseUrl?: string;
  /** Default 'sse'. */
  transport?: Transport;
  /** Resume the live feed after this position (see `lastPosition`). */
  lastPosition?: string | null;
}

/** `detail` of each event the client dispatches. */
export interface HeraldEventMap {
  /** Connected (first event of every connection): the position and unread count. */
  ready: CustomEvent<{ position: string; unread: number }>;
  /** Missed events are no longer kept: reload the inbox. */
  refetch: CustomEvent<{ position: string; unread: number; reason: string }>;
  notification: CustomEvent<{ notification: HeraldNotification; unread: number }>;
  read: CustomEvent<{ id: string; unread: number }>;
  read_all: CustomEvent<{ unread: number }>;
  archived: CustomEvent<{ id: string; unread: number }>;
  /** The unread count changed (from the live feed or from an answer). */
  unread: CustomEvent<{ unread: number }>;
  connection: CustomEvent<{ state: ConnectionState; error?: unknown; fatal?: boolean }>;
}

export class HeraldError extends Error {
  /** HTTP status; 0 when the browser refused before any request. */
  readonly status: number;
  /** The server's problem+json body, if any. */
  readonly problem: { type?: string; title?: string; status?: number; detail?: string; errors?: unknown[] } | null;
}

export class Herald extends EventTarget {
  constructor(options: HeraldOptions);

  readonly lastPosition: string | null;
  readonly unread: number | null;
  readonly connectionState: ConnectionState;
  readonly transport: Transport;

  /** Opens the live feed (reconnecting and resuming by itself); resolves on `ready`. */
  connect(): Promise<void>;
  disconnect(): void;

  list(options?: { limit?: number; before?: string | null }): Promise<InboxPage>;
  pages(options?: { limit?: number }): AsyncGenerator<InboxPage, void, void>;
  fetchUnread(): Promise<number>;
  /** Each resolves to the new unread count. */
  markRead(id: string): Promise<number>;
  markAllRead(): Promise<number>;
  archive(id: string): Promise<number>;

  /** Asks permission, subscribes to Web Push and registers the device (call from a click). */
  registerWebPush(options?: { serviceWorkerUrl?: string; scope?: string }): Promise<Device>;
  unregisterWebPush(options?: { scope?: string }): Promise<boolean>;

  addEventListener<K extends keyof HeraldEventMap>(
    type: K, listener: (event: HeraldEventMap[K]) => void, options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof HeraldEventMap>(
    type: K, listener: (event: HeraldEventMap[K]) => void, options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions): void;
}
