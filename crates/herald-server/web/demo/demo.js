// The bell demo: mint a user token with the API key kept in localStorage, hand the bell a
// client, and publish to that user from the same page.

import { Herald } from '/sdk/herald.js';
import '/sdk/herald-bell.js';

const KEY_ITEM = 'herald.demo.apiKey';
const USER_ITEM = 'herald.demo.user';

const bell = document.getElementById('bell');
const connectForm = document.getElementById('connect');
const sendForm = document.getElementById('send');
const connectError = document.getElementById('connect-error');
const who = document.getElementById('who');
let client = null;

async function call(method, path, key, body) {
  const response = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json().catch(() => null);
  if (!response.ok) throw new Error(json?.detail ?? `${method} ${path}: ${response.status}`);
  return json;
}

async function connect(user, key) {
  const mint = async () => (await call('POST', `/v1/users/${encodeURIComponent(user)}/token`, key)).token;
  // Mint once up front so a wrong key or user id is reported here, not by a silent bell.
  const first = await mint();
  let fresh = first;
  client?.disconnect();
  client = new Herald({
    token: async () => {
      const token = fresh ?? await mint();
      fresh = null;
      return token;
    },
  });
  bell.client = client;
  await client.connect();
  who.textContent = `signed in as ${user}`;
  document.body.dataset.user = user;
}

connectForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const user = connectForm.user.value.trim();
  const key = connectForm.key.value.trim();
  connectError.textContent = '';
  try {
    await connect(user, key);
    localStorage.setItem(KEY_ITEM, key);
    localStorage.setItem(USER_ITEM, user);
  } catch (error) {
    connectError.textContent = `Cannot connect: ${error.message}`;
  }
});

sendForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const result = document.getElementById('send-result');
  const user = localStorage.getItem(USER_ITEM);
  const key = localStorage.getItem(KEY_ITEM);
  if (!user || !key) { result.textContent = 'Connect a user first.'; return; }
  try {
    const { id } = await call('POST', '/v1/notifications', key, {
      to: { users: [user] }, title: sendForm.title.value, body: sendForm.body.value,
    });
    result.textContent = `Published ${id}.`;
  } catch (error) {
    result.textContent = `Not published: ${error.message}`;
  }
});

document.getElementById('push').addEventListener('click', async () => {
  const result = document.getElementById('push-result');
  if (!client) { result.textContent = 'Connect a user first.'; return; }
  try {
    const device = await client.registerWebPush();
    result.textContent = `Registered device ${device.id}.`;
  } catch (error) {
    result.textContent = `Push not enabled: ${error.message}`;
  }
});

// Come back as the same user after a reload.
const savedUser = localStorage.getItem(USER_ITEM);
const savedKey = localStorage.getItem(KEY_ITEM);
if (savedKey) connectForm.key.value = savedKey;
if (savedUser) connectForm.user.value = savedUser;
if (savedUser && savedKey) {
  connect(savedUser, savedKey).catch((error) => { connectError.textContent = `Cannot connect: ${error.message}`; });
}
