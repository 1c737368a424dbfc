// User lookup: a user's inbox, devices, preferences and last delivery decisions, through the
// admin twins under /v1/users/{user}/... .

import { api, userPath } from './api.js';
import { fillTable, showError, time } from './dom.js';

export function setup() {
  const form = document.getElementById('user-form');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await lookup(form.user.value.trim());
      showError('');
    } catch (error) {
      showError(`Lookup failed: ${error.message}`);
    }
  });
}

export async function lookup(user) {
  const [inbox, devices, preferences, deliveries] = await Promise.all([
    api('GET', userPath(user, 'notifications?limit=50')),
    api('GET', userPath(user, 'devices')),
    api('GET', userPath(user, 'preferences')),
    api('GET', userPath(user, 'deliveries?limit=50')),
  ]);
  document.getElementById('user-result').hidden = false;
  document.getElementById('user-unread').textContent = `${inbox.unread} unread`;
  fillTable(document.getElementById('user-inbox'), ['Title', 'Category', 'Priority', 'Read', 'Created'],
    inbox.items.map((n) => [n.title, n.category, n.priority, n.read ? 'yes' : 'no', time(n.created_at)]));
  fillTable(document.getElementById('user-devices'), ['Platform', 'Address', 'Registered'],
    devices.devices.map((d) => [d.platform, shorten(d.address), time(new Date(d.registered_at).toISOString())]));
  document.getElementById('user-preferences').textContent = JSON.stringify(preferences, null, 2);
  fillTable(document.getElementById('user-deliveries'), ['When', 'Notification', 'Channel', 'Reason', 'Why'],
    deliveries.decisions.map((d) => [time(d.at), d.notification, d.channel, d.reason, d.detail]));
}

/** Device tokens and endpoints are long; the start and end are enough to tell them apart. */
function shorten(address) {
  return address.length > 48 ? `${address.slice(0, 28)}…${address.slice(-12)}` : address;
}
