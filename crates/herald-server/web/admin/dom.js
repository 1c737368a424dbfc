// Small DOM and formatting helpers shared by the console's views. Everything goes in as text
// (textContent), never as HTML, so data from the API cannot inject markup.

/** h('td', { class: 'num' }, '12') */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value == null) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  element.append(...children.flat().filter((c) => c != null).map((c) => (c instanceof Node ? c : String(c))));
  return element;
}

/** Fills a <table> with a header row and body rows (arrays of cells; numbers align right). */
export function fillTable(table, columns, rows, { rowAttributes } = {}) {
  const cell = (tag, value, numeric) => h(tag, { class: numeric ? 'num' : null }, value);
  const numeric = (i) => rows.some((r) => typeof r[i] === 'number');
  table.replaceChildren(
    h('thead', {}, h('tr', {}, columns.map((c, i) => cell('th', c, numeric(i))))),
    h('tbody', {}, rows.map((r, ri) => h('tr', rowAttributes?.(ri) ?? {},
      r.map((v, i) => cell('td', typeof v === 'number' ? number(v) : (v ?? '—'), typeof v === 'number'))))),
  );
}

const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
export const number = (n) => numbers.format(n);

/** "4 min 10 s", "12 s". */
export function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export const time = (rfc3339) => (rfc3339 ? new Date(rfc3339).toLocaleString() : '—');
/** The time of day only, for moments of today (a campaign's start and end). */
export const clock = (rfc3339) => (rfc3339 ? new Date(rfc3339).toLocaleTimeString() : '—');

/** Calls `tick` now and then every `ms` while `active()` holds; returns a stop function. */
export function poll(tick, ms, active = () => true) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    if (active()) {
      try { await tick(); showError(''); } catch (error) { showError(error.message); }
    }
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  return () => { stopped = true; clearTimeout(timer); };
}

/** Shows (or with '' clears) the console's error banner. */
export function showError(message) {
  const banner = document.getElementById('app-error');
  if (banner) banner.textContent = message;
}
