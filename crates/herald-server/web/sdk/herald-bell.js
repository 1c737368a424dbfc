// <herald-bell>: a notification bell with an unread badge and a dropdown inbox.
//
//   <script type="module" src="/sdk/herald-bell.js"></script>
//   <herald-bell token="USER_TOKEN"></herald-bell>
//
// Attributes: token, base-url, transport ("sse" | "websocket"), page-size, label, locale.
// Or set `bell.client = new Herald({...})` to share a client. Themed with --herald-* CSS
// variables (see STYLE below); parts: button, badge, panel, item. Types: /sdk/herald-bell.d.ts.

import { Herald } from './herald.js';

const STYLE = `
:host {
  --herald-accent: #2563eb;
  --herald-bg: #ffffff;
  --herald-fg: #111827;
  --herald-muted: #6b7280;
  --herald-border: #e5e7eb;
  --herald-unread-bg: #eff6ff;
  --herald-hover-bg: #f3f4f6;
  --herald-badge-bg: #dc2626;
  --herald-badge-fg: #ffffff;
  --herald-focus: #2563eb;
  --herald-radius: 10px;
  --herald-font: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  --herald-panel-width: 360px;
  --herald-panel-max-height: 420px;
  --herald-shadow: 0 10px 30px rgba(0, 0, 0, 0.15);
  --herald-icon-size: 24px;
  position: relative;
  display: inline-block;
  font-family: var(--herald-font);
  color: var(--herald-fg);
}
button { font: inherit; color: inherit; }
:focus-visible { outline: 2px solid var(--herald-focus); outline-offset: 2px; }
.bell {
  position: relative; display: grid; place-items: center;
  width: calc(var(--herald-icon-size) + 16px); height: calc(var(--herald-icon-size) + 16px);
  border: 0; border-radius: 50%; background: transparent; cursor: pointer;
}
.bell:hover { background: var(--herald-hover-bg); }
.bell svg { width: var(--herald-icon-size); height: var(--herald-icon-size); }
.badge {
  position: absolute; top: 2px; right: 0; min-width: 18px; height: 18px; padding: 0 5px;
  box-sizing: border-box; border-radius: 9px; background: var(--herald-badge-bg);
  color: var(--herald-badge-fg); font-size: 11px; font-weight: 700; line-height: 18px;
  text-align: center;
}
.badge[hidden] { display: none; }
.panel {
  position: absolute; right: 0; top: calc(100% + 6px); z-index: 1000;
  width: var(--herald-panel-width); max-width: 90vw; background: var(--herald-bg);
  border: 1px solid var(--herald-border); border-radius: var(--herald-radius);
  box-shadow: var(--herald-shadow); overflow: hidden;
}
.panel[hidden] { display: none; }
header {
  display: flex; align-items: center; justify-content: space-between;
  padding: 10px 14px; border-bottom: 1px solid var(--herald-border);
}
h2 { margin: 0; font-size: 15px; }
.mark-all {
  border: 0; background: none; color: var(--herald-accent); cursor: pointer; font-size: 13px;
  padding: 4px 6px; border-radius: 6px;
}
.mark-all:disabled { color: var(--herald-muted); cursor: default; }
.scroller { max-height: var(--herald-panel-max-height); overflow-y: auto; }
ul { list-style: none; margin: 0; padding: 0; }
li + li { border-top: 1px solid var(--herald-border); }
.item {
  display: grid; grid-template-columns: 10px 1fr; gap: 2px 10px; width: 100%;
  padding: 10px 14px; border: 0; background: var(--herald-bg); text-align: left; cursor: pointer;
}
.item:hover { background: var(--herald-hover-bg); }
.item.unread { background: var(--herald-unread-bg); }
.dot { grid-row: span 3; width: 8px; height: 8px; margin-top: 6px; border-radius: 50%; }
.unread .dot { background: var(--herald-accent); }
.title { font-weight: 600; font-size: 14px; }
.body { font-size: 13px; color: var(--herald-fg); opacity: 0.85; overflow-wrap: anywhere; }
time { font-size: 12px; color: var(--herald-muted); }
.status { padding: 14px; text-align: center; color: var(--herald-muted); font-size: 13px; }
.status:empty { display: none; }
.sentinel { height: 1px; }
.sr-only {
  position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap;
}
`;

const BELL_ICON = `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2"
  stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">
  <path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9"/><path d="M13.73 21a2 2 0 0 1-3.46 0"/></svg>`;

const TEMPLATE = `
<button class="bell" part="button" type="button" aria-haspopup="dialog" aria-expanded="false"
  aria-controls="panel">${BELL_ICON}<span class="badge" part="badge" aria-hidden="true" hidden></span></button>
<div class="panel" id="panel" part="panel" role="dialog" aria-labelledby="heading" hidden>
  <header>
    <h2 id="heading"></h2>
    <button class="mark-all" type="button">Mark all read</button>
  </header>
  <div class="scroller">
    <ul class="list" aria-labelledby="heading"></ul>
    <p class="status" role="status"></p>
    <div class="sentinel"></div>
  </div>
</div>
<div class="sr-only announcer" aria-live="polite"></div>
`;

// One sheet for every bell on the page. A constructed stylesheet is not inline style, so pages
// with a strict Content-Security-Policy (style-src 'self') can host the bell.
let sheet = null;
function styleSheet() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLE);
  }
  return sheet;
}

const RELATIVE_UNITS = [
  ['year', 365 * 24 * 3600], ['month', 30 * 24 * 3600], ['week', 7 * 24 * 3600],
  ['day', 24 * 3600], ['hour', 3600], ['minute', 60], ['second', 1],
];

/** "3 minutes ago", "yesterday", "now". */
export function relativeTime(date, now = Date.now(), locale = undefined) {
  const format = new Intl.RelativeTimeFormat(locale, { numeric: 'auto' });
  const seconds = Math.round((date.getTime() - now) / 1000);
  if (Math.abs(seconds) < 45) return format.format(0, 'second');
  for (const [unit, size] of RELATIVE_UNITS) {
    if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
  }
  return format.format(0, 'second');
}

export class HeraldBell extends HTMLElement {
  static observedAttributes = ['token', 'base-url', 'transport', 'label'];

  #client = null;
  #ownsClient = false;
  #items = new Map(); // id -> notification, in display order
  #next = null; // cursor of the next page; null when every page is shown
  #loaded = false;
  #loading = null;
  #observer = null;
  #clock = null;
  #ui;
  #listeners = [];

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open', delegatesFocus: false });
    root.adoptedStyleSheets = [styleSheet()];
    root.innerHTML = TEMPLATE;
    const $ = (selector) => root.querySelector(selector);
    this.#ui = {
      button: $('.bell'), badge: $('.badge'), panel: $('.panel'), heading: $('#heading'),
      markAll: $('.mark-all'), list: $('.list'), status: $('.status'), scroller: $('.scroller'),
      sentinel: $('.sentinel'), announcer: $('.announcer'),
    };
    this.#ui.button.addEventListener('click', () => this.toggle());
    this.#ui.markAll.addEventListener('click', () => this.markAllRead());
    this.#ui.list.addEventListener('click', (e) => this.#onItemClick(e));
    this.#ui.panel.addEventListener('keydown', (e) => this.#onPanelKey(e));
    this.#ui.button.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowDown' && !this.open) { e.preventDefault(); this.show(); }
    });
  }

  connectedCallback() {
    this.#applyLabel();
    this.#render();
    if (!this.#client) this.#connectFromAttributes();
    document.addEventListener('pointerdown', this.#onOutside);
    document.addEventListener('keydown', this.#onEscape);
  }

  disconnectedCallback() {
    document.removeEventListener('pointerdown', this.#onOutside);
    document.removeEventListener('keydown', this.#onEscape);
    this.#observer?.disconnect();
    clearInterval(this.#clock);
    if (this.#ownsClient) this.#client?.disconnect();
  }

  attributeChangedCallback(name, previous, value) {
    if (previous === value) return;
    if (name === 'label') this.#applyLabel();
    else if (this.isConnected && (!this.#client || this.#ownsClient)) this.#connectFromAttributes();
  }

  /** The SDK client the bell uses; set it to share one with the rest of the page. */
  get client() { return this.#client; }
  set client(client) { this.#use(client, false); }

  get open() { return !this.#ui.panel.hidden; }
  get unread() { return this.#client?.unread ?? 0; }

  show() {
    if (this.open) return;
    this.#ui.panel.hidden = false;
    this.#ui.button.setAttribute('aria-expanded', 'true');
    this.#observeEnd();
    this.#clock = setInterval(() => this.#refreshTimes(), 30_000);
    this.#refreshTimes();
    const ready = this.#loaded ? Promise.resolve() : this.#loadMore();
    ready.then(() => (this.#firstItem() ?? this.#ui.markAll).focus({ preventScroll: true }));
    this.dispatchEvent(new CustomEvent('herald-open'));
  }

  /** Closes the list; focus goes back to the bell unless `returnFocus` is false. */
  hide({ returnFocus = true } = {}) {
    if (!this.open) return;
    this.#ui.panel.hidden = true;
    this.#ui.button.setAttribute('aria-expanded', 'false');
    this.#observer?.disconnect();
    clearInterval(this.#clock);
    if (returnFocus) this.#ui.button.focus();
    this.dispatchEvent(new CustomEvent('herald-close'));
  }

  toggle() { if (this.open) this.hide(); else this.show(); }

  async markAllRead() {
    if (!this.#client) return;
    await this.#client.markAllRead();
    for (const n of this.#items.values()) n.read = true;
    this.#renderItems();
  }

  // ---- wiring ------------------------------------------------------------------------------

  #connectFromAttributes() {
    const token = this.getAttribute('token');
    if (!token) { this.#use(null, true); return; }
    const client = new Herald({
      token,
      baseUrl: this.getAttribute('base-url') ?? undefined,
      transport: this.getAttribute('transport') ?? 'sse',
    });
    this.#use(client, true);
  }

  #use(client, owned) {
    if (this.#ownsClient && this.#client && this.#client !== client) this.#client.disconnect();
    for (const [event, handler] of this.#listeners) this.#client?.removeEventListener(event, handler);
    this.#listeners = [];
    this.#client = client;
    this.#ownsClient = owned;
    this.#items.clear();
    this.#next = null;
    this.#loaded = false;
    this.#render();
    if (!client) return;
    const on = (event, handler) => {
      client.addEventListener(event, handler);
      this.#listeners.push([event, handler]);
    };
    on('unread', () => this.#renderBadge());
    on('notification', (e) => this.#onNotification(e.detail.notification));
    on('read', (e) => this.#setRead(e.detail.id));
    on('read_all', () => { for (const n of this.#items.values()) n.read = true; this.#renderItems(); });
    on('archived', (e) => { this.#items.delete(e.detail.id); this.#renderItems(); });
    on('refetch', () => this.#reload());
    on('connection', (e) => this.toggleAttribute('data-connected', e.detail.state === 'open'));
    if (owned) client.connect().catch((error) => this.#showStatus(`Cannot connect: ${error.message}`));
    client.fetchUnread().catch(() => {});
    if (this.open) this.#loadMore();
  }

  #onNotification(notification) {
    if (this.#loaded && !this.#items.has(notification.id)) {
      this.#items = new Map([[notification.id, notification], ...this.#items]);
      this.#renderItems();
    }
    this.#ui.announcer.textContent = `New notification: ${notification.title}`;
    this.dispatchEvent(new CustomEvent('herald-notification', { detail: notification }));
  }

  #setRead(id) {
    const n = this.#items.get(id);
    if (n && !n.read) { n.read = true; this.#renderItems(); }
  }

  async #reload() {
    this.#items.clear();
    this.#next = null;
    this.#loaded = false;
    this.#renderItems();
    if (this.open) await this.#loadMore();
  }

  /** Loads the next page (the first one when nothing is loaded yet). */
  #loadMore() {
    if (this.#loading || !this.#client || (this.#loaded && !this.#next)) return this.#loading ?? Promise.resolve();
    const size = Number(this.getAttribute('page-size')) || 20;
    this.#showStatus('Loading…');
    this.#loading = this.#client.list({ limit: size, before: this.#next ?? undefined })
      .then((page) => {
        for (const n of page.items) if (!this.#items.has(n.id)) this.#items.set(n.id, n);
        this.#next = page.next;
        this.#loaded = true;
        this.#renderItems();
      })
      .catch((error) => this.#showStatus(`Cannot load notifications: ${error.message}`))
      .finally(() => {
        this.#loading = null;
        // A short page may leave the end in view: the observer will not fire again by itself.
        if (this.open && this.#next && this.#endVisible()) this.#loadMore();
      });
    return this.#loading;
  }

  #observeEnd() {
    this.#observer?.disconnect();
    this.#observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && this.#loaded) this.#loadMore();
    }, { root: this.#ui.scroller, rootMargin: '0px 0px 80px 0px' });
    this.#observer.observe(this.#ui.sentinel);
  }

  #endVisible() {
    const scroller = this.#ui.scroller;
    return scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 80;
  }

  async #onItemClick(event) {
    const button = event.target.closest('.item');
    if (!button) return;
    const notification = this.#items.get(button.dataset.id);
    if (!notification) return;
    this.dispatchEvent(new CustomEvent('herald-select', { detail: notification }));
    if (!notification.read) {
      notification.read = true;
      this.#renderItems();
      try {
        await this.#client.markRead(notification.id);
      } catch (error) {
        notification.read = false;
        this.#renderItems();
        this.#showStatus(`Cannot mark it read: ${error.message}`);
      }
    }
  }

  #onPanelKey(event) {
    const items = [...this.#ui.list.querySelectorAll('.item')];
    const index = items.indexOf(this.shadowRoot.activeElement);
    const focus = (i) => items[Math.max(0, Math.min(items.length - 1, i))]?.focus();
    switch (event.key) {
      case 'ArrowDown': event.preventDefault(); focus(index + 1); break;
      case 'ArrowUp': event.preventDefault(); if (index <= 0) this.#ui.markAll.focus(); else focus(index - 1); break;
      case 'Home': event.preventDefault(); focus(0); break;
      case 'End': event.preventDefault(); focus(items.length - 1); break;
      case 'Tab': this.#trapTab(event); break;
      default:
    }
  }

  /** Keeps Tab inside the open dialog: from the last focusable back to the first, and back. */
  #trapTab(event) {
    const focusable = [this.#ui.markAll, ...this.#ui.list.querySelectorAll('.item')]
      .filter((el) => !el.disabled);
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    const active = this.shadowRoot.activeElement;
    if (event.shiftKey && active === first) { event.preventDefault(); last.focus(); }
    else if (!event.shiftKey && active === last) { event.preventDefault(); first.focus(); }
  }

  // Arrow functions: added to and removed from `document` as the same function.
  #onEscape = (event) => {
    if (event.key === 'Escape' && this.open) { event.preventDefault(); this.hide(); }
  };

  #onOutside = (event) => {
    if (this.open && !event.composedPath().includes(this)) this.hide({ returnFocus: false });
  };

  #firstItem() { return this.#ui.list.querySelector('.item'); }

  // ---- rendering ------------------------------------------------------------------------------

  #applyLabel() {
    this.#ui.heading.textContent = this.getAttribute('label') ?? 'Notifications';
    this.#renderBadge();
  }

  #render() {
    this.#renderBadge();
    this.#renderItems();
  }

  #renderBadge() {
    const unread = this.unread;
    const label = this.getAttribute('label') ?? 'Notifications';
    this.#ui.badge.hidden = unread === 0;
    this.#ui.badge.textContent = unread > 99 ? '99+' : String(unread);
    this.#ui.button.setAttribute('aria-label', unread ? `${label}, ${unread} unread` : label);
    this.setAttribute('data-unread', String(unread));
    this.#ui.markAll.disabled = unread === 0;
  }

  #renderItems() {
    const list = this.#ui.list;
    const focusedId = this.shadowRoot.activeElement?.dataset?.id;
    const locale = this.getAttribute('locale') ?? undefined;
    list.replaceChildren(...[...this.#items.values()].map((n) => this.#renderItem(n, locale)));
    if (focusedId) list.querySelector(`[data-id="${CSS.escape(focusedId)}"]`)?.focus();
    if (this.#loaded) this.#showStatus(this.#items.size === 0 ? 'No notifications yet' : '');
    this.#renderBadge();
  }

  #renderItem(n, locale) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = n.read ? 'item' : 'item unread';
    button.setAttribute('part', 'item');
    button.dataset.id = n.id;
    const dot = document.createElement('span');
    dot.className = 'dot';
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = n.title;
    const parts = [dot, title];
    if (n.body) {
      const body = document.createElement('span');
      body.className = 'body';
      body.textContent = n.body;
      parts.push(body);
    }
    const time = document.createElement('time');
    const created = new Date(n.created_at);
    time.dateTime = n.created_at;
    time.title = created.toLocaleString(locale);
    time.textContent = relativeTime(created, Date.now(), locale);
    parts.push(time);
    button.append(...parts);
    button.setAttribute('aria-label', `${n.read ? '' : 'Unread: '}${n.title}. ${n.body ?? ''} ${time.textContent}`.trim());
    li.append(button);
    return li;
  }

  #refreshTimes() {
    const locale = this.getAttribute('locale') ?? undefined;
    for (const time of this.#ui.list.querySelectorAll('time')) {
      time.textContent = relativeTime(new Date(time.dateTime), Date.now(), locale);
    }
  }

  #showStatus(text) { this.#ui.status.textContent = text; }
}

if (!customElements.get('herald-bell')) customElements.define('herald-bell', HeraldBell);
