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

// budget is how many bytes of finished blocks one update renders at most: an answer that
// arrives in a lump (after a reconnect) is caught up over a few frames, never in one long task.
const budget = 512;

// Renderer renders one answer into el as its text grows.
export class Renderer {
  constructor(el) {
    this.el = el;
    this.src = '';
    this.done = 0;          // src[0:done] is rendered in finished blocks
    this.scan = 0;          // src[0:scan] has been scanned for boundaries
    this.fence = null;      // the open fence's marker, or null
    this.fenceAt = 0;       // where the open fence starts
    this.cuts = [];         // block boundaries found, ascending
    this.head = document.createElement('div');
    this.tail = document.createElement('div');
    el.replaceChildren(this.head, this.tail);
    this.behind = false;    // finished blocks are waiting for the next update
  }

  // set renders src (the whole answer so far) and returns the milliseconds it took.
  set(src) {
    const t0 = performance.now();
    if (!src.startsWith(this.src.slice(0, this.scan))) {
      this.head.replaceChildren();
      this.done = this.scan = 0;
      this.cuts = [];
      this.fence = null;
    }
    this.src = src;
    this.findBoundaries();
    const next = this.nextCut();
    if (next > this.done) {
      this.head.append(fragment(src.slice(this.done, next)));
      this.done = next;
    }
    this.behind = this.cuts.length > 0 && this.cuts.at(-1) > this.done;
    if (this.behind) {
      this.tail.replaceChildren();
    } else if (this.fence && this.fenceAt === this.done) {
      this.tail.replaceChildren(openFence(src.slice(this.done)));
    } else {
      const rest = src.slice(this.done);
      this.tail.replaceChildren(rest.trim() ? fragment(rest) : '');
    }
    return performance.now() - t0;
  }

  // nextCut is the furthest boundary within budget of what is rendered (or the first one, for
  // a single block larger than the budget).
  nextCut() {
    while (this.cuts.length && this.cuts[0] <= this.done) this.cuts.shift();
    let c = this.done;
    for (const cut of this.cuts) {
      if (cut - this.done > budget && c > this.done) break;
      c = cut;
      if (cut - this.done > budget) break;
    }
    return c;
  }

  findBoundaries() {
    const s = this.src;
    let i = this.scan;
    for (;;) {
      const nl = s.indexOf('\n', i);
      if (nl < 0) break;
      const line = s.slice(i, nl);
      const m = /^ {0,3}(`{3,}|~{3,})/.exec(line);
      if (this.fence) {
        if (m && m[1][0] === this.fence[0] && m[1].length >= this.fence.length && line.trim() === m[1]) {
          this.fence = null;
          this.cuts.push(nl + 1);
        }
      } else if (m) {
        this.fence = m[1];
        this.fenceAt = i;
        if (i > 0 && this.cuts.at(-1) !== i) this.cuts.push(i);
      } else if (line.trim() === '' && i > 0 && nl + 1 < s.length && !/^\s*([-*+]|\d+[.)])\s/.test(this.nextLine(nl + 1))) {
        // A blank line ends a block, unless a list goes on after it (a loose list stays one list).
        this.cuts.push(nl + 1);
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

// openFence shows a code block still being written as plain text: no markdown or HTML is
// parsed, so a long one costs nothing to redraw and cannot inject anything.
function openFence(src) {
  const nl = src.indexOf('\n');
  const pre = document.createElement('pre');
  const code = document.createElement('code');
  code.textContent = nl < 0 ? '' : src.slice(nl + 1);
  pre.append(code);
  return pre;
}
