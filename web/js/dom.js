// Tiny DOM helpers: element building without innerHTML (so no markup injection from data),
// toasts, dialogs and formatting. Everything the pages share that is not API or routing.

/** h('div.card#x', {onclick, class, ...attrs}, child, [children], 'text') */
export function h(spec, attrs, ...children) {
  if (attrs == null || typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  const m = /^([a-z0-9-]+)?((?:[.#][\w-]+)*)$/i.exec(spec);
  const tag = (m && m[1]) || 'div';
  const svg = SVG_TAGS.has(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === '.') el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') for (const c of String(v).split(/\s+/).filter(Boolean)) el.classList.add(c);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' && !svg) el.value = v;
    else if (k === 'checked' && !svg) el.checked = !!v;
    else if (k === 'ref') v(el);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

const SVG_TAGS = new Set(['svg', 'g', 'path', 'rect', 'line', 'text', 'circle', 'polyline', 'title', 'tspan']);

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function toast(message, kind = 'ok') {
  const box = document.getElementById('toasts');
  const t = h('div.toast', { class: kind, role: kind === 'error' ? 'alert' : 'status' }, message);
  box.append(t);
  setTimeout(() => t.classList.add('gone'), kind === 'error' ? 6000 : 2200);
  setTimeout(() => t.remove(), kind === 'error' ? 6600 : 2800);
}

/** Shows an error from an API call or a thrown Error. */
export function showError(e) {
  console.error(e);
  toast(e && e.message ? e.message : String(e), 'error');
}

/**
 * A modal dialog (native <dialog>, so focus is trapped and Escape closes it).
 * `body` is a node or array; `actions` are [{label, primary, danger, onclick: async () => close?}].
 * Resolves with the value passed to close().
 */
export function dialog(title, body, actions = []) {
  return new Promise((resolve) => {
    const d = h('dialog.modal', { 'aria-labelledby': 'dlg-title' });
    const close = (v) => { d.close(); d.remove(); resolve(v); };
    const buttons = actions.map((a) => h('button', {
      type: a.submit ? 'submit' : 'button',
      class: [a.primary && 'primary', a.danger && 'danger'].filter(Boolean).join(' '),
      onclick: a.submit ? null : async (ev) => {
        ev.preventDefault();
        try { const r = await a.onclick?.(); if (r !== false) close(r); } catch (e) { showError(e); }
      },
    }, a.label));
    const form = h('form', {
      method: 'dialog',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const submit = actions.find((a) => a.submit);
        if (!submit) return;
        try { const r = await submit.onclick?.(); if (r !== false) close(r); } catch (e) { showError(e); }
      },
    },
    h('header', h('h2#dlg-title', title), h('button.icon', { type: 'button', 'aria-label': 'Close', onclick: () => close(undefined) }, '×')),
    h('div.body', body),
    h('footer', h('button', { type: 'button', onclick: () => close(undefined) }, 'Cancel'), buttons));
    d.append(form);
    d.addEventListener('cancel', (ev) => { ev.preventDefault(); close(undefined); });
    document.body.append(d);
    d.showModal();
    const first = d.querySelector('input, textarea, select');
    if (first) first.focus();
  });
}

export async function confirmDialog(title, message, label = 'Confirm', danger = true) {
  return await dialog(title, h('p', message), [{ label, danger, primary: !danger, submit: true, onclick: () => true }]) === true;
}

/** A labelled form field. */
export function field(label, input, hint) {
  const id = input.id || ('f-' + Math.random().toString(36).slice(2, 9));
  input.id = id;
  return h('div.field', h('label', { for: id }, label), input, hint ? h('small.hint', hint) : null);
}

export function fmtTime(ms) {
  if (ms == null) return '—';
  const d = new Date(ms);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

export function fmtAgo(ms) {
  if (ms == null) return '—';
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ago';
  if (s < 86400 * 30) return Math.floor(s / 86400) + ' d ago';
  return fmtTime(ms);
}

/** A copy-to-clipboard field for secrets and URLs. */
export function copyable(value, label = 'Copy') {
  const input = h('input.mono', { value, readonly: true, 'aria-label': label + ' value', onfocus: (e) => e.target.select() });
  return h('div.copy', input, h('button', {
    type: 'button',
    onclick: async () => {
      try { await navigator.clipboard.writeText(value); toast('Copied'); } catch { input.select(); toast('Press Ctrl+C to copy'); }
    },
  }, label));
}

export function badge(text, kind = '') {
  return h('span.badge', { class: kind }, text);
}

export function empty(title, text, action) {
  return h('div.empty', h('strong', title), text ? h('p', text) : null, action || null);
}

/** A table from rows: columns = [{label, cell: (row) => node|string, class}] */
export function table(columns, rows, opts = {}) {
  return h('div.table-wrap', h('table', { class: opts.class },
    h('thead', h('tr', columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
    h('tbody', rows.map((r) => h('tr', { class: opts.rowClass?.(r) }, columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.cell(r))))))));
}

export function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}
