// The admin console's shell: the API key prompt, navigation between views, and polling the
// visible view.

import { api, apiKey } from './api.js';
import { poll, showError } from './dom.js';
import * as overview from './overview.js';
import * as campaigns from './campaigns.js';
import * as newCampaign from './new-campaign.js';
import * as users from './users.js';

const login = document.getElementById('login');
const app = document.getElementById('app');
const loginForm = document.getElementById('login-form');
const loginError = document.getElementById('login-error');
const views = [...document.querySelectorAll('[data-view]')];

/** Which view is shown: the URL's hash, else the overview. */
function currentView() {
  const id = location.hash.slice(1);
  return views.some((v) => v.id === id) ? id : 'overview';
}

function route() {
  const id = currentView();
  for (const view of views) view.hidden = view.id !== id;
  for (const link of document.querySelectorAll('.sidebar a')) {
    if (link.hash === `#${id}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  showError('');
}

function showLogin(message = '') {
  app.hidden = true;
  login.hidden = false;
  loginError.textContent = message;
  loginForm.key.focus();
}

let started = false;
function startConsole() {
  login.hidden = true;
  app.hidden = false;
  route();
  if (started) return;
  started = true;
  const visible = (id) => () => !app.hidden && currentView() === id && !document.hidden;
  poll(overview.refresh, 2000, visible('overview'));
  poll(campaigns.refresh, 1000, visible('campaigns'));
  newCampaign.setup((id) => {
    campaigns.select(id);
    location.hash = '#campaigns';
  });
  users.setup();
}

loginForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = loginForm.key.value.trim();
  try {
    // Check the key before keeping it.
    await api('GET', '/v1/admin/overview', { key });
    apiKey.set(key);
    loginForm.reset();
    startConsole();
  } catch (error) {
    showLogin(error.status === 401 || error.status === 403
      ? 'That is not the publisher API key.' : `Cannot reach Herald: ${error.message}`);
  }
});

document.getElementById('logout').addEventListener('click', () => {
  apiKey.clear();
  showLogin();
});

window.addEventListener('hashchange', route);
window.addEventListener('herald-admin-unauthorized', () => {
  if (app.hidden) return;
  apiKey.clear();
  showLogin('The API key was refused; type it again.');
});

if (apiKey.get()) startConsole();
else showLogin();
