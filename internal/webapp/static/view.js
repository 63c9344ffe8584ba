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
  linkCitations(body, m.meta?.sources?.length || 0);
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
  sources.forEach((s, n) => {
    const a = document.createElement('a');
    a.href = '#';
    a.className = 'cite';
    a.textContent = `[${n + 1}] ${s.file || s.path || s.document || 'source'}${s.page ? ` p. ${s.page}` : ''}`;
    a.addEventListener('click', (e) => {
      e.preventDefault();
      const open = box.querySelector('.cite-detail');
      const was = open?.dataset.n === String(n);
      open?.remove();
      box.querySelectorAll('a.open').forEach((x) => x.classList.remove('open'));
      if (was) return;
      const d = document.createElement('div');
      d.className = 'cite-detail';
      d.dataset.n = n;
      d.textContent = [s.file || s.path, s.page ? `page ${s.page}` : '', s.text || s.snippet || ''].filter(Boolean).join('\n');
      a.classList.add('open');
      box.append(d);
    });
    box.append(a);
  });
  return box;
}

// linkCitations makes an answer's [1] … [n] markers (n sources) tappable: the app opens the
// matching citation. Text in code is left alone.
export function linkCitations(body, n) {
  if (!n) return;
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
      if (k < 1 || k > n) continue;
      frag.append(t.data.slice(last, m.index));
      const a = document.createElement('a');
      a.href = '#';
      a.className = 'cite-ref';
      a.dataset.n = k - 1;
      a.textContent = m[0];
      frag.append(a);
      last = m.index + m[0].length;
    }
    if (last === 0) continue;
    frag.append(t.data.slice(last));
    t.replaceWith(frag);
  }
}
