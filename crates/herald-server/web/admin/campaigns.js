// Campaigns: the list, and the selected campaign's live progress — rates, ETA, per channel and
// per reason counts, and a chart of the send rate sampled from polling.

import { api } from './api.js';
import { RateChart } from './chart.js';
import { clock, duration, fillTable, h, number, time } from './dom.js';

const SEND_STATES = ['sent', 'failed', 'pruned', 'dry_run', 'expired'];
const REASONS = ['delivered', 'muted', 'capped', 'quiet_deferred', 'collapsed', 'expired'];
const ACTIONS = {
  draft: ['start', 'cancel'], scheduled: ['start', 'cancel'], sending: ['pause', 'cancel'],
  paused: ['resume', 'cancel'], completed: [], cancelled: [],
};

let selected = null;
let previous = null; // the last sample of the selected campaign: { t, done, finished }
const chart = new RateChart(document.getElementById('rate-chart'), ['sends/s', 'recipients/s']);

/** Sends finished so far in all channels (what a "sent/s" rate counts). */
function finishedSends(campaign) {
  return Object.values(campaign.channels)
    .reduce((sum, c) => sum + SEND_STATES.reduce((s, k) => s + (c[k] ?? 0), 0), 0);
}

export function select(id) {
  if (selected !== id) {
    selected = id;
    previous = null;
    chart.clear();
  }
}

export async function refresh() {
  const { campaigns } = await api('GET', '/v1/campaigns?limit=50');
  renderList(campaigns);
  if (!selected && campaigns.length) select(campaigns[0].id);
  if (selected) renderDetail(await api('GET', `/v1/campaigns/${encodeURIComponent(selected)}`));
}

function renderList(campaigns) {
  const table = document.getElementById('campaign-list');
  document.getElementById('campaign-empty').textContent =
    campaigns.length ? '' : 'No campaigns yet: create one from a CSV.';
  fillTable(table, ['Name', 'State', 'Done', 'Recipients', 'Sends/s', 'ETA', 'Created'],
    campaigns.map((c) => [c.name, c.state, c.done, c.recipients, c.sends_per_second,
      duration(c.eta_seconds), time(c.created_at)]),
    {
      rowAttributes: (i) => ({
        'data-campaign-id': campaigns[i].id,
        'data-state': campaigns[i].state,
        'aria-selected': String(campaigns[i].id === selected),
        tabindex: 0,
      }),
    });
  for (const row of table.tBodies[0].rows) {
    const open = () => { select(row.dataset.campaignId); refresh(); };
    row.addEventListener('click', open);
    row.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); } });
  }
}

function renderDetail(c) {
  const panel = document.getElementById('campaign-detail');
  panel.hidden = false;
  panel.dataset.campaignId = c.id;
  panel.dataset.state = c.state;
  document.getElementById('detail-name').textContent = c.name;
  const state = document.getElementById('detail-state');
  state.textContent = c.state;
  state.className = `state ${c.state}`;
  const progress = document.getElementById('detail-progress');
  progress.max = Math.max(1, c.recipients);
  progress.value = c.done;
  progress.setAttribute('aria-label', `${c.done} of ${c.recipients} recipients handled`);

  // Rates from our own samples: every poll, whoever else reads the campaign.
  const now = performance.now();
  const finished = finishedSends(c);
  let sendRate = c.sends_per_second;
  let recipientRate = c.recipients_per_second;
  if (previous && now - previous.t >= 200) {
    const seconds = (now - previous.t) / 1000;
    sendRate = Math.max(0, finished - previous.finished) / seconds;
    recipientRate = Math.max(0, c.done - previous.done) / seconds;
  }
  if (!previous || now - previous.t >= 200) {
    previous = { t: now, done: c.done, finished };
    chart.add(now, [sendRate, recipientRate]);
  }

  const figures = [
    ['Recipients', number(c.recipients)], ['Done', number(c.done)],
    ['Sends/s', number(sendRate)], ['Recipients/s', number(recipientRate)],
    ['ETA', c.state === 'sending' ? duration(c.eta_seconds) : '—'],
    ['Duplicates', number(c.duplicates)], ['Malformed', number(c.malformed)],
    ['Started', clock(c.started_at)], ['Finished', clock(c.finished_at)],
  ];
  document.getElementById('detail-figures').replaceChildren(
    ...figures.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v))));

  const channels = Object.entries(c.channels);
  fillTable(document.getElementById('detail-channels'),
    ['Channel', 'Queued', 'Sent', 'Failed', 'Pruned', 'Dry run', 'Expired', 'Pending'],
    channels.map(([name, r]) => [name, r.queued, r.sent, r.failed, r.pruned, r.dry_run, r.expired, r.pending]));
  fillTable(document.getElementById('detail-reasons'), ['Channel', ...REASONS],
    channels.map(([name, r]) => [name, ...REASONS.map((k) => r[k] ?? 0)]));
  document.getElementById('detail-malformed').textContent = c.malformed_lines.length
    ? `Malformed lines: ${c.malformed_lines.map((m) => `line ${m.line} (${m.reason})`).join('; ')}`
    : '';

  const actions = document.getElementById('detail-actions');
  actions.replaceChildren(...(ACTIONS[c.state] ?? []).map((action) => h('button', {
    type: 'button', class: action === 'cancel' ? 'secondary' : null,
    onclick: async () => {
      await api('POST', `/v1/campaigns/${encodeURIComponent(c.id)}/${action}`);
      await refresh();
    },
  }, action)));
}
