// Herald's service worker: shows Web Push notifications and opens the app when one is clicked.
// Register it through `herald.registerWebPush()` (scope `/`; the server allows that with
// `Service-Worker-Allowed: /`). The push payload is Herald's: {id, title, body, category, data}.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    message = { title: event.data?.text() ?? 'New notification' };
  }
  const data = message.data ?? {};
  event.waitUntil(self.registration.showNotification(message.title || 'New notification', {
    body: message.body ?? '',
    tag: message.id, // one notification per Herald id, even if pushed twice
    data: { id: message.id, url: typeof data.url === 'string' ? data.url : '/' },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const target = new URL(event.notification.data?.url ?? '/', self.location.origin).href;
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const open = windows.find((w) => w.url === target);
    if (open) return open.focus();
    return self.clients.openWindow(target);
  })());
});
