// Generations live on the server: start one with a POST, then follow its events. A dropped
// connection is picked up again from the last event seen (?after=N), with backoff, for at
// least two minutes (RETRY_FOR) after the last progress; stop is an explicit DELETE.
export class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(path, token, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (token) headers.Authorization = 'Bearer ' + token;
  if (opts.json !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method: opts.method || 'GET', headers, cache: 'no-store',
    body: opts.json !== undefined ? JSON.stringify(opts.json) : undefined, signal: opts.signal });
  if (!resp.ok) throw new APIError(resp.status, await errorText(resp));
  return resp;
}

async function errorText(resp) {
  const t = await resp.text();
  try {
    const j = JSON.parse(t);
    return j.error?.message || j.error || t;
  } catch { return t || resp.statusText; }
}

export async function startGeneration(body, token) {
  const resp = await api('/app/v1/generations', token, { method: 'POST', json: body });
  return resp.json();
}

export async function stopGeneration(id, token) {
  await api(`/app/v1/generations/${id}`, token, { method: 'DELETE' });
}

// RETRY_FOR is how long (ms) the app keeps reconnecting without progress: past two minutes,
// as a phone's tunnel, lift or train ride lasts.
export const RETRY_FOR = 150_000;

// backoff yields the waits (ms) before each reconnect while no event arrives: short at first
// (a blip), doubling up to 8 s (so a returning network is seen soon), and it ends once the
// waits alone add up to RETRY_FOR. follow restarts it on every event.
export function* backoff() {
  for (let d = 250, total = 0; total + d <= RETRY_FOR; total += d, d = Math.min(d * 2, 8000)) yield d;
}

// follow calls on(event) for each event after `after` until the end event. kick() (returned
// through the ctl object) makes a stalled connection reconnect now, as when the app comes back.
export async function follow(id, after, token, on, ctl) {
  let waits = backoff();
  for (let attempt = 0; attempt < 1000; attempt++) {
    if (ctl.stopped) return;
    const ac = new AbortController();
    ctl.kick = () => ac.abort();
    try {
      const resp = await api(`/app/v1/generations/${id}/events?after=${after}`, token, { signal: ac.signal });
      ctl.online?.(true);
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = parse(buf.slice(0, i));
          buf = buf.slice(i + 2);
          if (ev.id) { after = ev.id; waits = backoff(); }
          if (ev.data === undefined) continue;
          on(ev);
          if (ev.event === 'end') return;
        }
      }
    } catch (e) {
      // 429: the relay's rate limits count reconnects too; they pass, a revoked token (401) does not.
      if (e instanceof APIError && ![429, 502, 503, 504].includes(e.status)) throw e;
    }
    if (ctl.stopped) return;
    ctl.online?.(false);
    const wait = waits.next();
    if (wait.done) throw new Error('the connection to the server was lost for over two minutes');
    await new Promise((r) => { ctl.kick = r; setTimeout(r, wait.value); });
  }
}

function parse(block) {
  const ev = { event: 'message' };
  for (const line of block.split('\n')) {
    const c = line.indexOf(':');
    if (c <= 0) continue;
    const k = line.slice(0, c), v = line.slice(c + 1).replace(/^ /, '');
    if (k === 'id') ev.id = Number(v);
    else if (k === 'event') ev.event = v;
    else if (k === 'data') ev.data = ev.data === undefined ? v : ev.data + '\n' + v;
  }
  return ev;
}
