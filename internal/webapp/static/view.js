// How a message looks: the user's text (and images) with Edit, an answer's markdown with who
// served it, its sources as tappable citations, Copy and Regenerate. h holds the app's hooks:
// label(meta), isLast(i), edit(i), regenerate().
import { fragment } from './md.js';
import { textOf } from './store.js';

export function button(text, fn) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.addEventListener('click', fn);
  return b;
}

export function messageEl(m, i, h) {
  const el = document.createElement('div');
  el.className = 'msg ' + m.role;
  el.dataset.index = i;
  if (m.role === 'user') {
    el.textContent = textOf(m);
    for (const p of Array.isArray(m.content) ? m.content : []) {
      if (p.type === 'image_url') {
        const img = document.createElement('img');
        img.src = p.image_url.url;
        img.alt = 'attached image';
        el.append(img);
      }
    }
    const meta = document.createElement('div');
    meta.className = 'meta';
    meta.append(button('Edit', () => h.edit(i)));
    el.append(meta);
    return el;
  }
  const body = document.createElement('div');
  body.className = 'body';
  el.append(body);
  if (m.content) body.append(fragment(m.content));
  linkCitations(body, m.meta?.sources);
  el.append(metaEl(m, i, h));
  return el;
}

export function metaEl(m, i, h) {
  const meta = document.createElement('div');
  meta.className = 'meta';
  if (m.error) {
    const e = document.createElement('span');
    e.className = 'errmsg';
    e.textContent = m.error;
    meta.append(e);
  }
  const who = m.pending ? '' : h.label(m.meta || {});
  if (who) {
    const s = document.createElement('span');
    s.className = 'served';
    s.textContent = who + (m.meta?.state === 'stopped' ? ' · stopped' : '');
    meta.append(s);
  }
  if (!m.pending) {
    meta.append(button('Copy', () => navigator.clipboard?.writeText(m.content)));
    if (h.isLast(i)) meta.append(button('Regenerate', h.regenerate));
  }
  const wrap = document.createDocumentFragment();
  wrap.append(meta);
  if (m.meta?.sources?.length) wrap.append(sourcesEl(m.meta.sources));
  const box = document.createElement('div');
  box.className = 'foot';
  box.append(wrap);
  return box;
}

function sourcesEl(sources) {
  const box = document.createElement('div');
  box.className = 'sources';
  sources.forEach((s) => {
    const a = document.createElement('a');
    a.href = '#';
    a.className = 'cite';
    a.dataset.k = s.n;
    a.textContent = `[${s.n}] ${s.file || 'source'}${s.page ? ` p. ${s.page}` : ''}`;
    a.addEventListener('click', (e) => {
      e.preventDefault();
      const open = box.querySelector('.cite-detail');
      const was = open?.dataset.k === String(s.n);
      open?.remove();
      box.querySelectorAll('a.open').forEach((x) => x.classList.remove('open'));
      if (was) return;
      const d = document.createElement('div');
      d.className = 'cite-detail';
      d.dataset.k = s.n;
      d.textContent = [s.file, s.page ? `page ${s.page}` : '', s.text].filter(Boolean).join('\n');
      a.classList.add('open');
      box.append(d);
    });
    box.append(a);
  });
  return box;
}

// citedSources reads an answer's sources in the shapes that arrive: hearth's RAG
// ({n, source, page, excerpt, cited}) or {file, page, text}. Only the sources the answer cites
// are kept (a RAG answer lists every source it was given, with cited true or false), each
// with the number the answer's [n] markers use.
export function citedSources(list) {
  if (!Array.isArray(list)) return [];
  return list
    .map((s, i) => ({
      n: Number(s.n) || i + 1,
      file: s.file || s.source || s.path || s.document || '',
      page: s.page || 0,
      text: s.text || s.excerpt || s.snippet || '',
      cited: s.cited !== false,
    }))
    .filter((s) => s.cited);
}

// linkCitations makes an answer's [1] … [n] markers (n sources) tappable: the app opens the
// matching citation. Text in code is left alone.
export function linkCitations(body, sources) {
  const known = new Set((sources || []).map((s) => s.n));
  if (!known.size) return;
  const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT, {
    acceptNode: (t) => (t.parentElement.closest('code, pre, a') || !/\[\d{1,2}\]/.test(t.data) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode);
  for (const t of texts) {
    const frag = document.createDocumentFragment();
    let last = 0;
    for (const m of t.data.matchAll(/\[(\d{1,2})\]/g)) {
      const k = Number(m[1]);
      if (!known.has(k)) continue;
      frag.append(t.data.slice(last, m.index));
      const a = document.createElement('a');
      a.href = '#';
      a.className = 'cite-ref';
      a.dataset.k = k;
      a.textContent = m[0];
      frag.append(a);
      last = m.index + m[0].length;
    }
    if (last === 0) continue;
    frag.append(t.data.slice(last));
    t.replaceWith(frag);
  }
}
