// Conversation history on the device, in IndexedDB: one record per conversation.
const DB = 'hearth', STORE = 'convs';
let dbp;

function db() {
  dbp ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'id' });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  return dbp;
}

async function tx(mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction(STORE, mode);
    const r = fn(t.objectStore(STORE));
    t.oncomplete = () => resolve(r && 'result' in r ? r.result : undefined);
    t.onerror = () => reject(t.error);
  });
}

export const save = (conv) => tx('readwrite', (s) => s.put(conv));
export const remove = (id) => tx('readwrite', (s) => s.delete(id));
export const get = (id) => tx('readonly', (s) => s.get(id));
export async function all() {
  const list = (await tx('readonly', (s) => s.getAll())) || [];
  return list.sort((a, b) => b.updated - a.updated);
}

export function newConversation(model) {
  const now = Date.now();
  return { id: crypto.randomUUID(), title: 'New chat', model, created: now, updated: now, messages: [] };
}

// matches tells whether a conversation has q in its title or any message.
export function matches(conv, q) {
  q = q.trim().toLowerCase();
  if (!q) return true;
  if (conv.title.toLowerCase().includes(q)) return true;
  return conv.messages.some((m) => textOf(m).toLowerCase().includes(q));
}

export function textOf(m) {
  return typeof m.content === 'string' ? m.content : (m.content || []).filter((p) => p.type === 'text').map((p) => p.text).join('\n');
}

export function toMarkdown(conv) {
  const out = [`# ${conv.title}`, '', `Model: ${conv.model} · ${new Date(conv.created).toISOString()}`, ''];
  for (const m of conv.messages) {
    out.push(m.role === 'user' ? '## You' : `## ${m.meta?.model || conv.model}`, '', textOf(m), '');
    for (const s of m.meta?.sources || []) out.push(`- source: ${s.file}${s.page ? ` p. ${s.page}` : ''}`);
  }
  return out.join('\n');
}
