// Incremental markdown: the finished blocks of an answer are rendered once and kept; only the
// tail after the last block boundary is rendered again on each flush. A boundary is a blank line
// outside a code fence, so a streaming answer costs one small parse per flush however long it is.
import { marked } from './vendor/marked.esm.js';

const purify = globalThis.DOMPurify;
marked.setOptions({ gfm: true, breaks: false });
purify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
});

// html turns markdown into a sanitised fragment with copy buttons on code blocks.
export function fragment(src) {
  const frag = purify.sanitize(marked.parse(src), { RETURN_DOM_FRAGMENT: true, FORBID_TAGS: ['style', 'form', 'input'] });
  for (const pre of frag.querySelectorAll('pre')) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'copy';
    b.textContent = 'Copy';
    b.dataset.copy = '1';
    pre.prepend(b);
  }
  for (const t of frag.querySelectorAll('table')) {
    const wrap = document.createElement('div');
    wrap.className = 'table';
    t.replaceWith(wrap);
    wrap.append(t);
  }
  return frag;
}

// Renderer renders one answer into el as its text grows.
export class Renderer {
  constructor(el) {
    this.el = el;
    this.src = '';
    this.done = 0;          // src[0:done] is rendered in finished blocks
    this.scan = 0;          // src[0:scan] has been scanned for boundaries
    this.fence = null;      // the open fence's marker, or null
    this.cut = 0;           // the last boundary found
    this.head = document.createElement('div');
    this.tail = document.createElement('div');
    el.replaceChildren(this.head, this.tail);
    this.last = 0;          // ms the last update took
  }

  // set renders src (the whole answer so far).
  set(src) {
    const t0 = performance.now();
    if (!src.startsWith(this.src.slice(0, this.done))) {
      this.head.replaceChildren();
      this.done = this.scan = this.cut = 0;
      this.fence = null;
    }
    this.src = src;
    this.findBoundaries();
    if (this.cut > this.done) {
      this.head.append(fragment(src.slice(this.done, this.cut)));
      this.done = this.cut;
    }
    const rest = src.slice(this.done);
    this.tail.replaceChildren(rest.trim() ? fragment(rest) : '');
    this.last = performance.now() - t0;
    return this.last;
  }

  findBoundaries() {
    const s = this.src;
    let i = this.scan;
    while (true) {
      const nl = s.indexOf('\n', i);
      if (nl < 0) break;
      const line = s.slice(i, nl);
      const m = /^ {0,3}(`{3,}|~{3,})/.exec(line);
      if (this.fence) {
        if (m && m[1][0] === this.fence[0] && m[1].length >= this.fence.length && line.trim() === m[1]) {
          this.fence = null;
          this.cut = nl + 1;
        }
      } else if (m) {
        this.fence = m[1];
      } else if (line.trim() === '' && i > 0 && !/^\s*([-*+]|\d+[.)])\s/.test(this.nextLine(nl + 1))) {
        // A blank line ends a block, unless a list goes on after it (a loose list stays one list).
        if (nl + 1 < s.length) this.cut = nl + 1;
      }
      i = nl + 1;
    }
    this.scan = i;
  }

  nextLine(from) {
    const nl = this.src.indexOf('\n', from);
    return nl < 0 ? this.src.slice(from) : this.src.slice(from, nl);
  }
}
