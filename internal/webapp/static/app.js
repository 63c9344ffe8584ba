// hearth's chat app: sign-in, model picker, streaming answers that survive a dropped
// connection, history on the device. Plain modules, no framework.
import { Renderer } from './md.js';
import { button, citedSources, linkCitations, messageEl, metaEl } from './view.js';
import * as store from './store.js';
import { api, APIError, startGeneration, stopGeneration, follow } from './stream.js';

const $ = (id) => document.getElementById(id);
const state = { token: localStorage.getItem('hearth.token') || '', models: [], role: '', home: [], conv: null, live: null };
const FLUSH_MS = 50;
// Stats the end-to-end test reads: milliseconds per markdown update of the running answer.
globalThis.hearthStats = { updates: [], flushes: 0 };

const VISION = /llava|vision|[-:.]vl\b|vl:|gemma3|gpt-4o|gpt-4\.1|gpt-5|claude|gemini|pixtral|minicpm-v|moondream|mistral-small3/i;

async function boot() {
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('/app/sw.js', { scope: '/' }).catch(() => {});
  wire();
  const convs = await store.all().catch(() => []);
  state.conv = convs[0] || store.newConversation(localStorage.getItem('hearth.model') || '');
  try {
    await loadModels();
    show('main');
  } catch (e) {
    if (e instanceof APIError && e.status === 401) {
      state.token = '';
      show('signin');
    } else {
      // Offline: the history is still readable, with the last model list known.
      state.models = JSON.parse(localStorage.getItem('hearth.models') || '[]');
      fillModels();
      setNet(false, 'Offline: your chats are readable; answers need the server.');
      show('main');
    }
  }
  renderConv();
  resumePending();
}

function show(which) {
  $('signin').hidden = which !== 'signin';
  $('main').hidden = which !== 'main';
  if (which === 'signin') $('token').focus();
}

async function loadModels() {
  const resp = await api('/app/v1/models', state.token);
  const j = await resp.json();
  state.models = j.data || [];
  state.role = j.role || '';
  state.home = j.home || [];
  localStorage.setItem('hearth.models', JSON.stringify(state.models));
  fillModels();
  $('open-admin').hidden = state.role !== 'relay';
  $('signout').hidden = !state.token;
}

function fillModels() {
  const sel = $('model');
  const want = state.conv?.model || localStorage.getItem('hearth.model') || '';
  sel.replaceChildren();
  const groups = [['home', 'Home'], ['rag', 'Collections'], ['vendor', 'Vendors']];
  for (const [g, name] of groups) {
    const ms = state.models.filter((m) => m.group === g);
    if (!ms.length) continue;
    const og = document.createElement('optgroup');
    og.label = name;
    for (const m of ms) og.append(new Option(m.id, m.id));
    sel.append(og);
  }
  if (want && !state.models.some((m) => m.id === want)) {
    const og = document.createElement('optgroup');
    og.label = 'Not listed now';
    og.append(new Option(want, want));
    sel.append(og);
  }
  if (want) sel.value = want;
  if (!sel.value && sel.options.length) sel.selectedIndex = 0;
  updateAttach();
}

function updateAttach() { $('attach-label').hidden = !VISION.test($('model').value); }

function setNet(online, text) {
  $('net').hidden = online;
  if (text) $('net').textContent = text;
  else if (!online) $('net').textContent = 'Reconnecting… the answer goes on at the server.';
}

// ---- rendering ----

const hooks = {
  label: (meta) => label(meta),
  isLast: (i) => i === state.conv.messages.length - 1,
  edit: (i) => edit(i),
  regenerate: () => regenerate(),
};

// appendNew shows the messages not on screen yet, without redrawing the others (a long
// conversation stays cheap), and takes Regenerate off the answer before them.
function appendNew() {
  const log = $('log'), c = state.conv;
  log.querySelector('.empty')?.remove();
  const from = log.querySelectorAll('.msg').length;
  const prev = c.messages[from - 1];
  if (prev?.role === 'assistant') log.querySelector(`[data-index="${from - 1}"] .foot`)?.replaceWith(metaEl(prev, from - 1, hooks));
  for (let i = from; i < c.messages.length; i++) log.append(messageEl(c.messages[i], i, hooks));
  log.scrollTop = log.scrollHeight;
}

function renderConv() {
  const log = $('log');
  log.replaceChildren();
  if (!state.conv.messages.length) {
    const p = document.createElement('p');
    p.className = 'empty';
    p.textContent = 'Ask anything. Answers come from your own machines first.';
    log.append(p);
  }
  state.conv.messages.forEach((m, i) => log.append(messageEl(m, i, hooks)));
  log.scrollTop = log.scrollHeight;
}

function label(meta) {
  if (!meta.model && !meta.channel) return '';
  let s = 'answered by ' + (meta.model || meta.channel);
  if (meta.node) s += ' on ' + meta.node;
  if (meta.channel && state.role === 'relay' && !state.home.includes(meta.channel)) {
    s += ' via ' + meta.channel;
    if (!state.models.some((m) => m.group === 'home')) s += ', home is offline';
  }
  return s;
}

// ---- conversation ----

async function send(text, images) {
  if (state.live || (!text.trim() && !images.length)) return;
  const model = $('model').value;
  if (!model) return;
  const c = state.conv;
  const content = images.length ? [{ type: 'text', text }, ...images.map((url) => ({ type: 'image_url', image_url: { url } }))] : text;
  c.messages.push({ role: 'user', content });
  if (c.title === 'New chat') c.title = text.trim().slice(0, 60) || 'Image';
  c.model = model;
  localStorage.setItem('hearth.model', model);
  await generate();
}

async function generate() {
  const c = state.conv;
  const asst = { role: 'assistant', content: '', meta: { model: '' }, pending: null };
  const body = { model: c.model, stream: true, messages: c.messages.map((m) => ({ role: m.role, content: m.content })) };
  c.messages.push(asst);
  appendNew();
  const log = $('log'), view = log.lastElementChild;
  view.querySelector('.body').classList.add('cursor');
  log.scrollTop = log.scrollHeight; // the cursor's line, which appendNew scrolled before
  setBusy(true);
  try {
    const g = await startGeneration(body, state.token);
    asst.pending = { id: g.id, after: 0 };
    Object.assign(asst.meta, { channel: g.channel || '', model: g.model || '' });
    await persist();
    await followAnswer(asst, view);
  } catch (e) {
    asst.error = e.message;
    asst.pending = null;
    finishView(asst, view);
    if (e instanceof APIError && e.status === 401) signOut();
  }
  setBusy(false);
}

async function followAnswer(asst, view) {
  const r = new Renderer(view.querySelector('.body'));
  const ctl = { stopped: false, online: (ok) => setNet(ok) };
  state.live = { asst, ctl, view, r };
  setBusy(true);
  let timer = 0, lastFlush = 0, lastSave = Date.now(), over = false;
  const flush = () => {
    timer = 0;
    if (over) return; // a frame asked for before the end: the final render below has run
    lastFlush = performance.now();
    const log = $('log');
    const pinned = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
    const ms = r.set(asst.content);
    globalThis.hearthStats.updates.push(ms);
    globalThis.hearthStats.flushes++;
    if (pinned) log.scrollTop = log.scrollHeight;
    if (Date.now() - lastSave > 2000) { lastSave = Date.now(); persist(); }
    // Finished blocks still waiting (a lump after a reconnect): the next part in the next frame.
    if (r.behind && !timer) timer = setTimeout(() => requestAnimationFrame(flush), 0);
  };
  const schedule = () => {
    if (!timer) timer = setTimeout(() => requestAnimationFrame(flush), Math.max(0, FLUSH_MS - (performance.now() - lastFlush)));
  };
  try {
    await follow(asst.pending.id, asst.pending.after, state.token, (ev) => {
      asst.pending.after = ev.id || asst.pending.after;
      onEvent(asst, ev);
      schedule();
    }, ctl);
  } catch (e) {
    asst.error = e.message;
  }
  clearTimeout(timer);
  over = true;
  setNet(true);
  asst.pending = null;
  for (let i = 0; i < asst.content.length / 512 + 2 && (r.set(asst.content), r.behind); i++) {
    await new Promise(requestAnimationFrame);
  }
  finishView(asst, view);
  state.live = null;
  setBusy(false);
  await persist();
}

function onEvent(asst, ev) {
  let j;
  if (ev.data === '[DONE]') return;
  try { j = JSON.parse(ev.data); } catch { return; }
  switch (ev.event) {
    case 'meta':
      Object.assign(asst.meta, { channel: j.channel || '', model: j.model || asst.meta.model, node: j.node || '' });
      break;
    case 'sources':
      asst.meta.sources = citedSources(Array.isArray(j) ? j : j.sources);
      break;
    case 'error':
      asst.error = j.error?.message || j.error || 'the server could not answer';
      break;
    case 'end':
      asst.meta.state = j.state;
      if (j.detail) asst.error = j.detail;
      break;
    case 'response':
      asst.content += j.choices?.[0]?.message?.content || '';
      if (j.sources) asst.meta.sources = citedSources(j.sources);
      break;
    default: {
      const d = j.choices?.[0]?.delta;
      if (d?.content) asst.content += d.content;
      if (j.sources) asst.meta.sources = citedSources(j.sources);
      if (j.model && !asst.meta.model) asst.meta.model = j.model;
    }
  }
}

function finishView(asst, view) {
  view.querySelector('.body').classList.remove('cursor');
  linkCitations(view.querySelector('.body'), asst.meta?.sources);
  const i = state.conv.messages.indexOf(asst);
  view.querySelector('.foot')?.replaceWith(metaEl(asst, i, hooks));
}

function setBusy(busy) {
  $('send').hidden = busy;
  $('stop').hidden = !busy;
}

async function stop() {
  const live = state.live;
  if (!live?.asst.pending) return;
  $('stop').disabled = true;
  try { await stopGeneration(live.asst.pending.id, state.token); } catch (e) { live.asst.error = e.message; }
  $('stop').disabled = false;
}

async function regenerate() {
  if (state.live) return;
  const c = state.conv;
  if (c.messages.at(-1)?.role === 'assistant') {
    c.messages.pop();
    $('log').querySelector(`[data-index="${c.messages.length}"]`)?.remove();
  }
  await generate();
}

function edit(i) {
  if (state.live) return;
  const m = state.conv.messages[i];
  $('input').value = store.textOf(m);
  state.conv.messages.splice(i);
  renderConv();
  autosize();
  $('input').focus();
}

async function persist() {
  const c = state.conv;
  c.updated = Date.now();
  await store.save(structuredClone(c)).catch(() => {});
}

// A reload in the middle of an answer picks the generation up where the saved copy ends.
function resumePending() {
  const c = state.conv;
  const i = c.messages.findIndex((m) => m.pending);
  if (i < 0) return;
  const view = $('log').children[i];
  view.querySelector('.body').classList.add('cursor');
  followAnswer(c.messages[i], view);
}

// ---- history ----

async function openHistory() {
  $('history').hidden = false;
  await listConvs();
  $('search').focus();
}

let listSeq = 0;

async function listConvs() {
  // Typing runs one of these per key: only the latest fills the list, once, after its read.
  const seq = ++listSeq;
  const q = $('search').value;
  const convs = (await store.all()).filter((c) => store.matches(c, q));
  if (seq !== listSeq) return;
  const ul = $('convs');
  ul.replaceChildren();
  for (const c of convs) {
    const li = document.createElement('li');
    if (c.id === state.conv.id) li.className = 'current';
    const open = button('', async () => { await switchTo(c.id); $('history').hidden = true; });
    open.className = 'open';
    open.textContent = c.title;
    const small = document.createElement('small');
    small.textContent = `${new Date(c.updated).toLocaleString()} · ${c.model}`;
    open.append(small);
    const ren = button('Rename', async () => {
      const t = prompt('Rename chat', c.title);
      if (!t || !t.trim()) return;
      // The open chat is saved from memory: the listed copy may be older than what it shows.
      const conv = c.id === state.conv.id ? state.conv : c;
      conv.title = t.trim();
      await store.save(structuredClone(conv));
      listConvs();
    });
    ren.className = 'small';
    ren.setAttribute('aria-label', 'Rename');
    const del = button('Delete', async () => {
      if (!confirm(`Delete "${c.title}"?`)) return;
      await store.remove(c.id);
      if (c.id === state.conv.id) { state.conv = store.newConversation($('model').value); renderConv(); }
      listConvs();
    });
    del.className = 'small';
    del.setAttribute('aria-label', 'Delete');
    li.append(open, ren, del);
    ul.append(li);
  }
}

async function switchTo(id) {
  if (state.live) return;
  state.conv = (await store.get(id)) || store.newConversation($('model').value);
  if (state.conv.model) { $('model').value = state.conv.model; fillModels(); }
  renderConv();
  resumePending();
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---- wiring ----

function autosize() {
  const t = $('input');
  t.style.height = 'auto';
  t.style.height = Math.min(t.scrollHeight, innerHeight * 0.4) + 'px';
}

function signOut() {
  localStorage.removeItem('hearth.token');
  state.token = '';
  $('history').hidden = true;
  show('signin');
}

function wire() {
  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const tok = $('token').value.trim();
    $('signin-error').textContent = '';
    try {
      state.token = tok;
      await loadModels();
      localStorage.setItem('hearth.token', tok);
      $('token').value = '';
      show('main');
      renderConv();
    } catch (err) {
      state.token = '';
      $('signin-error').textContent = err instanceof APIError && err.status === 401 ? 'This token is not valid here.' : err.message;
    }
  });
  let images = [];
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('input').value;
    const imgs = images;
    $('input').value = '';
    images = [];
    $('attachments').replaceChildren();
    autosize();
    send(text, imgs);
  });
  $('input').addEventListener('input', autosize);
  $('input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && matchMedia('(pointer: fine)').matches) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('attach').addEventListener('change', async () => {
    for (const f of $('attach').files) {
      const url = await new Promise((res) => { const r = new FileReader(); r.onload = () => res(r.result); r.readAsDataURL(f); });
      images.push(url);
      const img = document.createElement('img');
      img.src = url;
      img.alt = f.name;
      $('attachments').append(img);
    }
    $('attach').value = '';
  });
  $('stop').addEventListener('click', stop);
  $('model').addEventListener('change', () => {
    localStorage.setItem('hearth.model', $('model').value);
    state.conv.model = $('model').value;
    updateAttach();
  });
  $('new-chat').addEventListener('click', () => {
    if (state.live) return;
    state.conv = store.newConversation($('model').value);
    renderConv();
    $('input').focus();
  });
  $('open-history').addEventListener('click', openHistory);
  $('close-history').addEventListener('click', () => { $('history').hidden = true; });
  $('search').addEventListener('input', listConvs);
  $('export-md').addEventListener('click', () => download(`${state.conv.title}.md`, 'text/markdown', store.toMarkdown(state.conv)));
  $('export-json').addEventListener('click', async () => download('hearth-chats.json', 'application/json', JSON.stringify(await store.all(), null, 2)));
  $('signout').addEventListener('click', signOut);
  $('open-admin').addEventListener('click', async () => {
    $('history').hidden = true;
    const { openAdmin } = await import('./admin.js');
    openAdmin($('admin'));
  });
  $('log').addEventListener('click', (e) => {
    const ref = e.target.closest('a.cite-ref');
    if (ref) {
      e.preventDefault();
      ref.closest('.msg').querySelector(`.sources a.cite[data-k="${ref.dataset.k}"]`)?.click();
      return;
    }
    const b = e.target.closest('button[data-copy]');
    if (!b) return;
    const code = b.parentElement.querySelector('code')?.textContent || '';
    navigator.clipboard?.writeText(code).then(() => { b.textContent = 'Copied'; setTimeout(() => { b.textContent = 'Copy'; }, 1200); });
  });
  // The on-screen keyboard: keep the composer above it where the browser does not resize.
  // The keyboard is the part of the layout viewport the visual one leaves uncovered. Pinch
  // zoom shrinks the visual viewport too (height × scale stays the layout's) and pans it
  // (offsetTop), which must not lift the composer; only unzoomed is offsetTop the page
  // scrolled up above the keyboard.
  const vv = globalThis.visualViewport;
  if (vv) {
    const fit = () => {
      const log = $('log');
      const pinned = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
      const zoom = vv.scale || 1;
      const kb = Math.max(0, Math.round(innerHeight - vv.height * zoom - (zoom > 1.01 ? 0 : vv.offsetTop)));
      document.documentElement.style.setProperty('--kb', kb + 'px');
      if (pinned) log.scrollTop = log.scrollHeight;
    };
    vv.addEventListener('resize', fit);
    vv.addEventListener('scroll', fit);
  }
  // Back from the background: a stalled stream reconnects now rather than after its backoff.
  document.addEventListener('visibilitychange', () => { if (!document.hidden) state.live?.ctl.kick?.(); });
  addEventListener('online', () => state.live?.ctl.kick?.());
}

boot();
