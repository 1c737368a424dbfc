// Overview: queue depths per lane and per-provider delivery counts (GET /v1/admin/overview).

import { api } from './api.js';
import { fillTable, number } from './dom.js';

const LANES = ['high', 'normal', 'low'];

export function render(overview) {
  const lanes = (depths) => LANES.map((lane) => [lane, depths[lane]]);
  fillTable(document.getElementById('fanout-lanes'), ['Lane', 'Jobs waiting'], lanes(overview.fanout_queue));
  fillTable(document.getElementById('push-lanes'), ['Lane', 'Sends waiting'], lanes(overview.push_queue));
  fillTable(
    document.getElementById('providers'),
    ['Provider', 'Sent', 'Failed', 'Pruned', 'Retried', 'Dry run'],
    Object.entries(overview.providers).map(([name, c]) => [name, c.sent, c.failed, c.pruned, c.retried, c.dry_run]),
  );
  document.getElementById('overview-meta').textContent =
    `Node ${overview.node}, Herald ${overview.version}, ${number(overview.live_connections)} live connections, ` +
    `${number(overview.channel_subscribers)} channel subscribers.`;
}

export async function refresh() {
  render(await api('GET', '/v1/admin/overview'));
}
