// Drives headless Chromium through Herald's /demo and /admin against a running server.
// Started by crates/herald/tests/browser.rs, which passes:
//   HERALD_URL, HERALD_API_KEY, HERALD_ARTIFACTS (screenshot folder), CHROMIUM (executable).
// Every wait is for a condition, never a fixed sleep. Exits non-zero on the first failure,
// after saving a screenshot of each open page.

import { createHash, randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = required('HERALD_URL');
const apiKey = required('HERALD_API_KEY');
const artifacts = required('HERALD_ARTIFACTS');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const user = `browser-${Date.now().toString(36)}`;
const started = performance.now();

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run this through cargo test --test browser)`);
  return value;
}

function step(text) {
  console.log(`[${((performance.now() - started) / 1000).toFixed(1)} s] ${text}`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function api(method, path, body, contentType = 'application/json') {
  const response = await fetch(new URL(path, base), {
    method,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': contentType },
    body: body === undefined ? undefined : (contentType === 'application/json' ? JSON.stringify(body) : body),
  });
  const json = await response.json().catch(() => null);
  check(response.ok, `${method} ${path} answered ${response.status}: ${JSON.stringify(json)}`);
  return json;
}

const publish = (title, body = '') => api('POST', '/v1/notifications', { to: { users: [user] }, title, body });

// Problems the pages report: script errors, refused scripts or styles (CSP), failed requests.
const pageProblems = [];
function watch(page, name) {
  page.on('pageerror', (error) => pageProblems.push(`${name}: uncaught ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') pageProblems.push(`${name}: console error: ${message.text()}`);
  });
  page.on('requestfailed', (request) => {
    // An EventSource closed by a reload or by the SDK is not a failure of the page.
    if (!new URL(request.url()).pathname.endsWith('/stream')) {
      pageProblems.push(`${name}: request failed: ${request.url()} ${request.failure()?.errorText}`);
    }
  });
}

async function bellState(page) {
  return page.locator('herald-bell').evaluate((bell) => ({
    unread: Number(bell.dataset.unread ?? '0'),
    badge: bell.shadowRoot.querySelector('.badge').hidden ? '' : bell.shadowRoot.querySelector('.badge').textContent,
    connected: bell.hasAttribute('data-connected'),
  }));
}

/** Waits until the badge shows `count` (hidden at 0); returns how long it took. */
async function badgeShows(page, count, timeout = 5000) {
  const from = performance.now();
  await page.waitForFunction((expected) => {
    const bell = document.querySelector('herald-bell');
    const badge = bell?.shadowRoot?.querySelector('.badge');
    return badge && (expected === 0 ? badge.hidden : !badge.hidden && badge.textContent === String(expected));
  }, count, { timeout, polling: 'raf' });
  return performance.now() - from;
}

async function demo(browser) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  watch(page, 'demo');
  try {
    step('demo: open /demo and connect a user');
    const response = await page.goto(new URL('/demo', base).href);
    const csp = response.headers()['content-security-policy'] ?? '';
    check(csp.includes("script-src 'self'"), `/demo lacks a strict CSP: ${csp}`);
    await page.getByLabel('User id').fill(user);
    await page.getByLabel('Publisher API key').fill(apiKey);
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.waitForSelector('herald-bell[data-connected]');
    await page.getByText(`signed in as ${user}`).waitFor();
    check((await bellState(page)).badge === '', 'a new user should have no badge');

    step('demo: publish through the API, the badge rises within one second');
    for (const [i, title] of ['Your order shipped', 'Payment received'].entries()) {
      const sent = performance.now();
      await publish(title, i === 0 ? 'Arrives Tuesday' : 'Thank you!');
      await badgeShows(page, i + 1, 1000);
      step(`demo: badge ${i + 1} after ${Math.round(performance.now() - sent)} ms (publish included)`);
    }

    step('demo: open the bell with the keyboard; Escape closes it and focus returns');
    const bellButton = page.getByRole('button', { name: /Notifications, 2 unread/ });
    await bellButton.focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog', { name: 'Notifications' });
    await dialog.waitFor();
    await page.locator('herald-bell .item').nth(1).waitFor();
    // Focus moves to the first item once the list is loaded.
    await page.waitForFunction(() => document.querySelector('herald-bell').shadowRoot.activeElement?.classList.contains('item'));
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    const back = await page.evaluate(() => document.querySelector('herald-bell').shadowRoot.activeElement?.className);
    check(back === 'bell', `focus should be back on the bell after Escape, is on ${back}`);

    step('demo: click to mark one read');
    await page.locator('herald-bell .bell').click();
    await dialog.waitFor();
    await page.screenshot({ path: join(artifacts, 'demo-bell-open.png') });
    const newest = page.locator('herald-bell .item').first();
    check((await newest.textContent()).includes('Payment received'), 'newest first');
    await newest.click();
    await badgeShows(page, 1);
    await page.waitForFunction(() => !document.querySelector('herald-bell').shadowRoot.querySelector('.item').classList.contains('unread'));

    step('demo: reload: the read state is kept');
    await page.reload();
    await page.waitForSelector('herald-bell[data-connected]');
    await badgeShows(page, 1);
    await page.locator('herald-bell .bell').click();
    await page.locator('herald-bell .item').nth(1).waitFor();
    const classes = await page.locator('herald-bell .item').evaluateAll((items) => items.map((i) => i.className));
    check(classes.length === 2 && classes[0] === 'item' && classes[1] === 'item unread',
      `after the reload the first should be read and the second unread: ${classes}`);

    step('demo: 23 more notifications; scrolling the list loads the next page');
    for (let i = 0; i < 23; i += 1) await publish(`Bulk ${i + 1}`);
    await badgeShows(page, 24);
    // The open list got them live at its top; reopen to page through the inbox from the start.
    await page.keyboard.press('Escape');
    await page.reload();
    await page.waitForSelector('herald-bell[data-connected]');
    await page.locator('herald-bell .bell').click();
    await page.locator('herald-bell .item').nth(19).waitFor();
    check(await page.locator('herald-bell .item').count() === 20, 'the first page holds 20');
    await page.locator('herald-bell .item').nth(19).scrollIntoViewIfNeeded();
    await page.locator('herald-bell .item').nth(24).waitFor();

    step('demo: mark all read');
    await page.getByRole('button', { name: 'Mark all read' }).click();
    await badgeShows(page, 0);
    check(await page.locator('herald-bell .item.unread').count() === 0, 'every item is read');
    const inbox = await api('GET', `/v1/users/${user}/notifications?limit=1`);
    check(inbox.unread === 0, `the server should count 0 unread, counts ${inbox.unread}`);
    await page.keyboard.press('Escape');
    return { context, page };
  } catch (error) {
    await page.screenshot({ path: join(artifacts, 'demo-failure.png') }).catch(() => {});
    throw error;
  }
}

/** The SDK alone, over each transport: events missed while disconnected are replayed on reconnect. */
async function sdkResume(page) {
  const resumeUser = `${user}-resume`;
  for (const transport of ['sse', 'websocket']) {
    step(`sdk: resume after a reconnect over ${transport}`);
    const { token } = await api('POST', `/v1/users/${resumeUser}/token`);
    const position = await page.evaluate(async ({ token, transport }) => {
      const { Herald } = await import('/sdk/herald.js');
      const client = new Herald({ token, transport });
      await client.connect();
      client.disconnect();
      window.resumeClient = client;
      return client.lastPosition;
    }, { token, transport });
    check(/^\d+-\d+$/.test(position), `a position after ready, not ${position}`);
    const title = `Missed over ${transport}`;
    const before = (await api('GET', `/v1/users/${resumeUser}/notifications?limit=1`)).unread;
    await api('POST', '/v1/notifications', { to: { users: [resumeUser] }, title });
    // Stored before the reconnect, so it can only come back as a replay.
    for (let unread = before; unread === before;) {
      unread = (await api('GET', `/v1/users/${resumeUser}/notifications?limit=1`)).unread;
    }
    const replayed = await page.evaluate(async (title) => {
      const client = window.resumeClient;
      const heard = new Promise((resolve) => client.addEventListener('notification', (e) => {
        if (e.detail.notification.title === title) resolve(e.detail);
      }));
      await client.connect();
      const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(`${title} was not replayed`)), 5000));
      const detail = await Promise.race([heard, timeout]);
      client.disconnect();
      return detail;
    }, title);
    check(replayed.notification.read === false && replayed.unread >= 1, `replayed: ${JSON.stringify(replayed)}`);
  }
}

/**
 * Realtime channels through the SDK, over each transport: a text message and a binary one of
 * five chunks arrive whole (the SDK reassembles; the hash must match), and a new subscriber
 * resuming after the last position gets only what came later.
 */
async function sdkChannels(page) {
  const channel = `room:${Date.now().toString(36)}`;
  const { token } = await api('POST', `/v1/users/${user}-viewer/token?channels=room:*`);
  // 4 chunks of 256 KiB and a short fifth.
  const payload = randomBytes(4 * 256 * 1024 + 5);
  const digest = createHash('sha256').update(payload).digest('hex');
  for (const transport of ['websocket', 'sse']) {
    step(`sdk: channel messages over ${transport}, reassembled`);
    await page.evaluate(async ({ token, channel, transport }) => {
      const { HeraldChannel } = await import('/sdk/herald-channel.js');
      const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
      window.channelHeard = [];
      window.channelListen = (sub) => sub.addEventListener('message', async ({ detail }) => {
        const entry = { position: detail.position, type: detail.contentType, bytes: detail.bytes };
        if (typeof detail.data === 'string') entry.text = detail.data;
        else {
          const buffer = await detail.data.arrayBuffer();
          entry.size = buffer.byteLength;
          entry.hash = hex(await crypto.subtle.digest('SHA-256', buffer));
        }
        window.channelHeard.push(entry);
      });
      const sub = new HeraldChannel(channel, { token, transport });
      window.channelListen(sub);
      await sub.connect();
      window.channelSub = sub;
    }, { token, channel, transport });
    await api('POST', `/v1/channels/${channel}/messages`, `hello over ${transport}`, 'text/plain');
    await api('POST', `/v1/channels/${channel}/messages`, payload, 'application/octet-stream');
    await page.waitForFunction(() => window.channelHeard.length >= 2, null, { timeout: 10000 });
    const [text, binary] = await page.evaluate(() => window.channelHeard);
    check(text.text === `hello over ${transport}`, `text message: ${JSON.stringify(text)}`);
    check(binary.size === payload.length && binary.hash === digest,
      `binary message: ${JSON.stringify(binary)} (want ${payload.length} bytes, ${digest})`);

    step(`sdk: channel resume over ${transport}`);
    const last = await page.evaluate(() => { window.channelSub.close(); return window.channelSub.lastPosition; });
    check(last === binary.position, `last position ${last}, the binary message was ${binary.position}`);
    await api('POST', `/v1/channels/${channel}/messages`, `while away over ${transport}`, 'text/plain');
    const resumed = await page.evaluate(async ({ token, channel, transport, last }) => {
      const { HeraldChannel } = await import('/sdk/herald-channel.js');
      window.channelHeard = [];
      const sub = new HeraldChannel(channel, { token, transport, after: last });
      window.channelListen(sub);
      await sub.connect();
      const deadline = Date.now() + 5000;
      while (window.channelHeard.length === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 200)); // nothing older may follow
      sub.close();
      return window.channelHeard;
    }, { token, channel, transport, last });
    check(resumed.length === 1 && resumed[0].text === `while away over ${transport}`,
      `resumed after ${last}: ${JSON.stringify(resumed)}`);
  }
}

async function admin(browser, demoPage) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  watch(page, 'admin');
  try {
    step('admin: open /admin with the API key');
    await page.goto(new URL('/admin', base).href);
    await page.getByLabel('Publisher API key').fill(apiKey);
    await page.getByRole('button', { name: 'Open the console' }).click();
    await page.locator('#providers tbody tr').first().waitFor();
    check(await page.evaluate(() => sessionStorage.getItem('herald.admin.apiKey')) === apiKey, 'key in sessionStorage');
    check(await page.evaluate(() => localStorage.length) === 0, 'nothing in localStorage');

    step('admin: upload a CSV campaign and watch it finish');
    const users = Array.from({ length: 59 }, (_, i) => `csv-user-${i}`);
    // Two in three have a phone: the server runs with --dry-run, so their pushes are counted
    // (per channel, per provider) without a provider to call.
    const phones = users.filter((_, i) => i % 3 !== 2);
    await Promise.all(phones.map((u, i) => api('POST', `/v1/users/${u}/devices`, { platform: 'fcm', token: `browser-test-phone-${i}` })));
    const csv = ['user_id,name', `${user},Demo`, ...users.map((u) => `${u},x`), 'csv-user-1,again', 'not a user!,bad', ''].join('\n');
    await page.getByRole('link', { name: 'New campaign' }).click();
    await page.getByLabel('Name', { exact: true }).fill('Browser test campaign');
    await page.getByLabel('Title', { exact: true }).fill('Spring sale');
    await page.getByLabel('Body', { exact: true }).fill('Everything 20% off');
    await page.getByLabel('Recipients per second', { exact: true }).fill('20');
    await page.locator('input[name="csv"]').setInputFiles({ name: 'audience.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
    const unreadBefore = (await bellState(demoPage)).unread;
    await page.getByRole('button', { name: 'Create, upload and start' }).click();
    await page.waitForURL(/#campaigns$/);
    const detail = page.locator('#campaign-detail');
    await detail.waitFor();
    await page.locator('#campaign-detail[data-state="completed"]').waitFor({ timeout: 20_000 });
    const figures = await page.locator('#detail-figures').textContent();
    check(figures.includes('Recipients60') && figures.includes('Done60'), `60 recipients, all done: ${figures}`);
    check(figures.includes('Duplicates1') && figures.includes('Malformed1'), `one duplicate, one malformed: ${figures}`);
    await page.locator('#detail-reasons tbody tr').first().waitFor();
    // Push sends finish after the last recipient is handled: wait for all of them.
    await page.waitForFunction((count) => {
      const row = [...document.querySelectorAll('#detail-channels tbody tr')].find((r) => r.cells[0].textContent === 'push');
      return row && row.cells[5].textContent === String(count) && row.cells[7].textContent === '0';
    }, phones.length, { timeout: 10_000 });
    await page.screenshot({ path: join(artifacts, 'admin-campaign.png'), fullPage: true });

    step('admin: the demo user heard the campaign live');
    await badgeShows(demoPage, unreadBefore + 1);

    step('admin: overview and user lookup');
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.locator('#fanout-lanes tbody tr').nth(2).waitFor();
    await page.waitForFunction((count) => {
      const row = [...document.querySelectorAll('#providers tbody tr')].find((r) => r.cells[0].textContent === 'fcm');
      return row?.cells[5].textContent === String(count);
    }, phones.length);
    await page.screenshot({ path: join(artifacts, 'admin-overview.png') });
    await page.getByRole('link', { name: 'User lookup' }).click();
    await page.getByLabel('User id').fill(user);
    await page.getByRole('button', { name: 'Look up' }).click();
    await page.getByRole('cell', { name: 'Spring sale' }).waitFor();
    check(await page.locator('#user-inbox tbody tr').count() === 26, 'the inbox lists 26 notifications');
    await page.screenshot({ path: join(artifacts, 'admin-user.png'), fullPage: true });
    return context;
  } catch (error) {
    await page.screenshot({ path: join(artifacts, 'admin-failure.png'), fullPage: true }).catch(() => {});
    throw error;
  }
}

async function main() {
  await mkdir(artifacts, { recursive: true });
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  try {
    const { page: demoPage } = await demo(browser);
    await sdkResume(demoPage);
    await sdkChannels(demoPage);
    await admin(browser, demoPage);
    check(pageProblems.length === 0, `the pages reported problems:\n  ${pageProblems.join('\n  ')}`);
    step(`done; screenshots in ${artifacts}`);
  } finally {
    await browser.close();
  }
}

// The Rust test has its own timeout too; this one makes sure Chromium is closed on the way out.
const deadline = setTimeout(() => { console.error('browser test: over 90 s, giving up'); process.exit(2); }, 90_000);
main().then(
  () => { clearTimeout(deadline); },
  (error) => {
    console.error(`browser test failed: ${error.stack ?? error}`);
    if (pageProblems.length) console.error(`page problems:\n  ${pageProblems.join('\n  ')}`);
    process.exitCode = 1;
    clearTimeout(deadline);
  },
);
