// The service worker keeps the app shell for offline use. It never stores API answers:
// only the files listed here, and /app/v1/, /v1/, /api/ and /admin/ always go to the network.
const CACHE = 'hearth-shell-v1';
// '/' is the same page as '/app/', which is what is kept: the relay answers a GET / that does
// not ask for HTML (as the worker's own fetches do not) as the Ollama API.
const SHELL = ['/app/', '/app/app.css', '/app/app.js', '/app/md.js', '/app/store.js', '/app/stream.js', '/app/view.js', '/app/admin.js',
  '/app/vendor/marked.esm.js', '/app/vendor/purify.min.js', '/app/manifest.webmanifest', '/app/offline.html',
  '/app/icons/icon-192.png'];

self.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (e) => {
  e.waitUntil(caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== location.origin) return;
  const shell = url.pathname === '/' || (url.pathname.startsWith('/app/') && !url.pathname.startsWith('/app/v1/'));
  if (!shell) return;
  // Network first, so a new version shows at once; the cached shell when offline.
  e.respondWith(fetch(e.request).then((resp) => {
    const key = url.pathname === '/' ? '/app/' : url.pathname;
    if (resp.ok && SHELL.includes(key)) {
      const copy = resp.clone();
      caches.open(CACHE).then((c) => c.put(key, copy));
    }
    return resp;
  }).catch(async () => (await caches.match(url.pathname === '/' ? '/app/' : url.pathname)) ||
    (e.request.mode === 'navigate' ? caches.match('/app/offline.html') : Response.error())));
});
