// The household view: the relay's /admin/v1 API behind the admin key, which stays in this
// tab's sessionStorage only (closing the tab forgets it).
import { api, APIError } from './stream.js';

const KEY = 'hearth.admin';
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  e.append(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false).map((k) => (k instanceof Node ? k : String(k))));
  return e;
};

export function openAdmin(root) {
  root.hidden = false;
  const key = sessionStorage.getItem(KEY);
  if (key) render(root, key);
  else askKey(root, '');
}

function close(root) { root.hidden = true; root.replaceChildren(); }

function bar(root, key) {
  return el('div', { class: 'bar' },
    el('strong', { style: 'flex:1' }, 'Household'),
    key ? el('button', { type: 'button', on: { click: () => render(root, key) } }, 'Refresh') : null,
    key ? el('button', { type: 'button', on: { click: () => { sessionStorage.removeItem(KEY); askKey(root, ''); } } }, 'Forget key') : null,
    el('button', { type: 'button', class: 'icon', 'aria-label': 'Close', on: { click: () => close(root) } }, '✕'));
}

function askKey(root, msg) {
  const input = el('input', { type: 'password', id: 'admin-key', autocomplete: 'off', required: '', placeholder: 'admin_key from relay.yaml' });
  const form = el('form', { class: 'card', on: { submit: (e) => { e.preventDefault(); sessionStorage.setItem(KEY, input.value.trim()); render(root, input.value.trim()); } } },
    el('h1', {}, 'Household view'),
    el('p', {}, 'The relay’s admin key opens it. It is kept in this tab only.'),
    el('label', { for: 'admin-key' }, 'Admin key'), input,
    el('button', { type: 'submit', class: 'primary' }, 'Open'),
    el('p', { class: 'error', role: 'alert' }, msg));
  root.replaceChildren(bar(root, ''), el('div', { class: 'screen' }, form));
  input.focus();
}

async function get(path, key) { return (await api(path, key)).json(); }

async function render(root, key) {
  let agents, channels, tokens, byDay, byToken, byChannel;
  try {
    [agents, channels, tokens, byDay, byToken, byChannel] = await Promise.all([
      get('/admin/v1/agents', key), get('/admin/v1/channels', key), get('/admin/v1/tokens', key),
      get('/admin/v1/usage?by=day&since=30d', key), get('/admin/v1/usage?by=token&since=30d', key),
      get('/admin/v1/usage?by=channel&since=30d', key)]);
  } catch (e) {
    if (e instanceof APIError && (e.status === 401 || e.status === 403)) {
      sessionStorage.removeItem(KEY);
      askKey(root, 'That admin key is not valid.');
    } else askKey(root, e.message);
    return;
  }
  let body;
  try {
    body = el('div', { style: 'padding: 0 12px 24px' },
    el('h2', {}, 'Home and tunnel'), homeTable(agents),
    el('h2', {}, 'Channels'), channelTable(channels.channels || []),
    el('h2', {}, 'Usage, last 30 days'),
    chart('Tokens by day', byDay.rows, true), chart('Tokens by token', byToken.rows), chart('Tokens by channel', byChannel.rows),
    el('h2', {}, 'Tokens'), tokenSection(root, key, tokens.tokens || []));
  } catch (e) {
    body = el('p', { class: 'errmsg' }, 'The relay answered in a shape this app does not know: ' + e.message);
  }
  root.replaceChildren(bar(root, key), body);
}

const pill = (text, kind) => el('span', { class: 'pill ' + kind }, text);

function homeTable(a) {
  const rows = [el('tr', {}, el('td', {}, a.home?.name || 'home'), el('td', {}, 'home channel'),
    el('td', {}, a.home?.online ? pill('online', 'ok') : pill('offline', 'bad')))];
  for (const s of a.sites || []) {
    rows.push(el('tr', {}, el('td', {}, s.Host), el('td', {}, `site ${s.Name} via ${s.Channel} (auth ${s.Auth})`),
      el('td', {}, s.Online ? pill('online', 'ok') : pill('offline', 'bad'))));
  }
  return el('table', {}, rows);
}

function channelTable(chs) {
  const kind = { closed: 'ok', open: 'bad', 'half-open': 'warn' };
  return el('table', {}, el('tr', {}, el('th', {}, 'channel'), el('th', {}, 'breaker'), el('th', {}, 'requests'), el('th', {}, 'ok'), el('th', {}, 'ms')),
    chs.map((c) => el('tr', {},
      el('td', {}, `${c.name} `, el('small', {}, c.type), c.last_error ? el('div', { class: 'errmsg' }, c.last_error) : null),
      el('td', {}, pill(c.state, kind[c.state] || '')),
      el('td', {}, c.requests), el('td', {}, c.requests ? Math.round(c.success_rate * 100) + '%' : '–'), el('td', {}, c.latency_ms || '–'))));
}

// chart draws rows as horizontal (or, by day, vertical) SVG bars of prompt+completion tokens.
function chart(title, rows = [], byDay = false) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  const total = (r) => r.prompt_tokens + r.completion_tokens;
  const max = () => Math.max(1, ...rows.map(total));
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
  };
  if (!rows.length) return el('p', {}, `${title}: nothing yet.`);
  if (byDay) {
    // The last 14 days, one slot each, so that one busy day is one bar and quiet days show.
    const have = new Map(rows.map((r) => [r.key, r]));
    rows = [];
    for (let d = 13; d >= 0; d--) {
      const key = new Date(Date.now() - d * 86400e3).toISOString().slice(0, 10);
      rows.push(have.get(key) || { key, prompt_tokens: 0, completion_tokens: 0, requests: 0 });
    }
    const W = 360, H = 120, bw = W / rows.length;
    svg.setAttribute('viewBox', `0 0 ${W} ${H + 14}`);
    rows.forEach((r, i) => {
      const h = Math.max(1, (total(r) / max()) * H);
      add('rect', { x: i * bw + 1, y: H - h, width: Math.max(1, bw - 2), height: h });
      const tip = document.createElementNS(NS, 'title');
      tip.textContent = `${r.key}: ${total(r)} tokens, ${r.requests} requests`;
      svg.lastChild.append(tip);
    });
    add('text', { x: 0, y: H + 12 }, rows[0].key);
    add('text', { x: W, y: H + 12, 'text-anchor': 'end' }, rows.at(-1).key);
  } else {
    const H = 18, W = 360;
    svg.setAttribute('viewBox', `0 0 ${W} ${rows.length * H}`);
    rows.forEach((r, i) => {
      add('rect', { x: 110, y: i * H + 3, width: Math.max(1, (total(r) / max()) * (W - 180)), height: H - 6 });
      add('text', { x: 0, y: i * H + 13 }, r.key.slice(0, 18));
      add('text', { x: W, y: i * H + 13, 'text-anchor': 'end' }, `${total(r)} tok · ${r.requests}`);
    });
  }
  return el('figure', {}, el('figcaption', {}, title), svg);
}

function tokenSection(root, key, toks) {
  const name = el('input', { placeholder: 'name (e.g. phone)', required: '', pattern: '[A-Za-z0-9._-]+', 'aria-label': 'token name' });
  const models = el('input', { placeholder: 'models, comma separated (empty: all)', 'aria-label': 'allowed models' });
  const expires = el('input', { placeholder: 'expires (90d, empty: never)', 'aria-label': 'expires' });
  const out = el('div', { role: 'status' });
  const form = el('form', { class: 'inline-form', on: { submit: async (e) => {
    e.preventDefault();
    try {
      const resp = await api('/admin/v1/tokens', key, { method: 'POST', json: {
        name: name.value.trim(), expires: expires.value.trim(),
        models: models.value.split(',').map((s) => s.trim()).filter(Boolean) } });
      const j = await resp.json();
      // The secret is shown once: it is not stored anywhere in the app.
      out.replaceChildren(el('p', {}, `Token ${j.token.name} created. Copy it now; it is not shown again:`), el('div', { class: 'secret' }, j.secret));
      name.value = models.value = expires.value = '';
    } catch (err) { out.replaceChildren(el('p', { class: 'errmsg' }, err.message)); }
  } } }, name, models, expires, el('button', { type: 'submit', class: 'primary' }, 'Create'));
  const table = el('table', {}, el('tr', {}, el('th', {}, 'name'), el('th', {}, 'models'), el('th', {}, 'state'), el('th', {})),
    toks.map((t) => el('tr', {},
      el('td', {}, t.name), el('td', {}, (t.models || []).join(', ') || 'all'),
      el('td', {}, t.revoked_at ? pill('revoked', 'bad') : t.expires_at && new Date(t.expires_at) < new Date() ? pill('expired', 'warn') : pill('live', 'ok')),
      el('td', {}, t.revoked_at ? '' : el('button', { type: 'button', on: { click: async () => {
        if (!confirm(`Revoke token ${t.name}? Devices using it stop working.`)) return;
        try { await api(`/admin/v1/tokens/${encodeURIComponent(t.name)}`, key, { method: 'DELETE' }); render(root, key); } catch (err) { out.replaceChildren(el('p', { class: 'errmsg' }, err.message)); }
      } } }, 'Revoke')))));
  return el('div', {}, form, out, table);
}
