// Renders chat messages ({content_type, content}, language spec §4) as the end user would see
// them: text, buttons and questions, cards and carousels, images, links, media, typing and wait
// markers, errors, debug output, and anything unknown as its JSON. Used by the try-it panel
// (where buttons are live) and by transcripts (where they are inert).

import { h } from './dom.js';

/**
 * `msg`: {content_type, content}. `opts.onButton(button)` makes buttons clickable; `opts.direction`
 * is 'SEND' (bot) or 'RECEIVE' (user).
 */
export function renderMessage(msg, opts = {}) {
  const ct = String(msg?.content_type || 'text').toLowerCase();
  const c = msg?.content ?? {};
  switch (ct) {
    case 'text':
      return bubble(c.text == null ? h('em', 'null') : String(c.text));
    case 'payload':
      return bubble(c.payload != null ? String(c.payload) : (c.text ?? JSON.stringify(c)), 'payload');
    case 'flow_trigger':
      return h('div.msg-note', 'flow trigger → ', h('code', String(c.flow_id ?? '')));
    case 'button':
      return h('div.msg-buttons', button(c, opts));
    case 'question':
      return h('div.msg-card',
        c.title != null ? h('p.card-title', String(c.title)) : null,
        h('div.msg-buttons', (c.buttons || []).map((b) => button(unwrap(b), opts))));
    case 'card':
      return card(c, opts);
    case 'carousel':
      return h('div.carousel', { role: 'list' }, (c.cards || []).map((x) => h('div', { role: 'listitem' }, card(unwrap(x), opts))));
    case 'image':
      return h('figure.msg-media', h('img', { src: safeUrl(c.url), alt: c.alt || c.title || 'image', loading: 'lazy' }));
    case 'video':
    case 'audio':
    case 'file':
      return h('div.msg-file', h('span.badge', ct), ' ', link(c.url, c.title || c.name || c.url));
    case 'url':
      return bubble(link(c.url, c.text || c.title || c.url));
    case 'typing':
    case 'wait':
      return h('div.msg-note', ct === 'typing' ? '… typing' : '⏱ wait', c.duration != null ? ` ${c.duration} ms` : '');
    case 'error':
      return h('div.msg-error', { role: 'note' }, h('strong', 'Error: '), String(c.error ?? JSON.stringify(c)));
    case 'debug':
      return h('div.msg-debug', h('span.badge', 'debug'), ' ', h('code', (c.args || [JSON.stringify(c)]).join(' ')));
    default:
      return h('div.msg-json', h('span.badge', ct), h('pre', JSON.stringify(c, null, 2)));
  }
}

function bubble(content, kind = '') {
  return h('div.bubble', { class: kind }, content);
}

function unwrap(x) {
  return x && typeof x === 'object' && 'content_type' in x && 'content' in x ? x.content : x;
}

function button(b, opts) {
  const title = String(b.title ?? b.payload ?? 'button');
  if (!opts.onButton) return h('span.chip', title);
  return h('button.chip', { type: 'button', onclick: () => opts.onButton(b) }, title);
}

function card(c, opts) {
  return h('div.msg-card',
    c.image_url ? h('img.card-img', { src: safeUrl(c.image_url), alt: '' }) : null,
    c.title != null ? h('p.card-title', String(c.title)) : null,
    c.subtitle != null ? h('p.card-sub', String(c.subtitle)) : null,
    c.buttons?.length ? h('div.msg-buttons', c.buttons.map((b) => button(unwrap(b), opts))) : null);
}

function link(url, text) {
  return h('a', { href: safeUrl(url), target: '_blank', rel: 'noopener noreferrer' }, String(text ?? url ?? ''));
}

// Only http(s) and data images leave the page; a `javascript:` URL becomes inert.
function safeUrl(u) {
  const s = String(u ?? '');
  return /^(https?:|data:image\/)/i.test(s) ? s : '#';
}

/** What the user sent, for transcripts: {content_type, content}. */
export function userText(msg) {
  const c = msg?.content ?? {};
  if (msg?.content_type === 'text') return String(c.text ?? '');
  if (msg?.content_type === 'payload') return String(c.payload ?? '');
  return JSON.stringify(c);
}
