// New campaign from an uploaded file: POST /v1/campaigns, PUT .../recipients, POST .../start.

import { api } from './api.js';
import { number } from './dom.js';

/** The upload's content type, by what the file says it is or else by its name. */
function audienceType(file) {
  const name = file.name.toLowerCase();
  if (file.type === 'text/csv' || name.endsWith('.csv')) return 'text/csv';
  if (name.endsWith('.ndjson') || name.endsWith('.jsonl')) return 'application/x-ndjson';
  return 'text/plain';
}

/** Wires the form; `created(id)` is called once the campaign started. */
export function setup(created) {
  const form = document.getElementById('new-campaign-form');
  const result = document.getElementById('new-campaign-result');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const submit = form.querySelector('button[type="submit"]');
    submit.disabled = true;
    const data = new FormData(form);
    const file = data.get('csv');
    const message = {
      title: data.get('title'),
      body: data.get('body') ?? '',
      priority: data.get('priority'),
      channels: data.getAll('channels'),
    };
    if (data.get('category')) message.category = data.get('category');
    const request = { name: data.get('name'), message, dry_run: data.has('dry_run') };
    if (data.get('rate')) request.rate_per_second = Number(data.get('rate'));
    try {
      result.textContent = 'Creating the campaign…';
      const campaign = await api('POST', '/v1/campaigns', { body: request });
      result.textContent = `Uploading ${file.name}…`;
      const column = data.get('column') ? `?column=${encodeURIComponent(data.get('column'))}` : '';
      const report = await api('PUT', `/v1/campaigns/${campaign.id}/recipients${column}`,
        { body: file, contentType: audienceType(file) });
      await api('POST', `/v1/campaigns/${campaign.id}/start`);
      const malformed = report.malformed_lines.map((m) => `line ${m.line}: ${m.reason}`).join('; ');
      result.textContent = `Started: ${number(report.added)} recipients added, `
        + `${number(report.duplicates)} duplicates, ${number(report.malformed)} malformed`
        + (malformed ? ` (${malformed})` : '') + '.';
      form.reset();
      created(campaign.id);
    } catch (error) {
      result.textContent = `Not created: ${error.message}`;
    } finally {
      submit.disabled = false;
    }
  });
}
