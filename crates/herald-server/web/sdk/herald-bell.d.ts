// Types of the <herald-bell> web component (/sdk/herald-bell.js).
import type { Herald, HeraldNotification } from './herald.js';

/**
 * `<herald-bell token="..." base-url="..." transport="sse|websocket" page-size="20"
 *   label="Notifications" locale="en">`
 *
 * Events: `herald-select` (an item was clicked; detail: the notification), `herald-notification`
 * (one arrived live), `herald-open`, `herald-close`. The host carries `data-unread` (the count)
 * and `data-connected` (while the live feed is open).
 */
export class HeraldBell extends HTMLElement {
  /** The SDK client in use; assign one to share it with the page (the bell then does not own it). */
  client: Herald | null;
  readonly open: boolean;
  readonly unread: number;
  show(): void;
  hide(options?: { returnFocus?: boolean }): void;
  toggle(): void;
  markAllRead(): Promise<void>;
}

/** "3 minutes ago", "yesterday", "now". */
export function relativeTime(date: Date, now?: number, locale?: string): string;

declare global {
  interface HTMLElementTagNameMap {
    'herald-bell': HeraldBell;
  }
  interface HTMLElementEventMap {
    'herald-select': CustomEvent<HeraldNotification>;
    'herald-notification': CustomEvent<HeraldNotification>;
  }
}
