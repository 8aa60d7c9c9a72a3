// The flow editor: a plain <textarea> (so typing, selection, undo, IME and screen readers all
// behave natively) laid exactly over a highlighted <pre> copy of its text. Diagnostics are
// drawn in the copy: a wavy underline at the error's line and column, a marker in the gutter,
// and the reason at the end of the line.
//
// Keyboard: Tab indents (two spaces) and Shift+Tab outdents; press Escape first and Tab then
// moves focus out of the editor as usual. Enter keeps the current indentation. Ctrl/Cmd+S
// saves.

import { h, clear } from './dom.js';
import { tokenize, byteColumnToIndex, reason } from './csml.js';

const INDENT = '  ';

export function codeEditor({ value = '', label = 'Flow source', onInput, onSave } = {}) {
  let diagnostics = [];
  let escaped = false;
  const code = h('code');
  const pre = h('pre.hl', { 'aria-hidden': 'true' }, code);
  const gutterInner = h('div.gutter-inner');
  const gutter = h('div.gutter', { 'aria-hidden': 'true' }, gutterInner);
  const ta = h('textarea.src', {
    spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off', wrap: 'off',
    'aria-label': label, 'aria-describedby': 'editor-help', value,
  });
  const area = h('div.code-area', pre, ta);
  const el = h('div.editor', gutter, area);

  let frame = 0;
  const schedule = () => {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; render(); });
  };

  function render() {
    const text = ta.value;
    const lines = splitLines(tokenize(text));
    const byLine = new Map();
    for (const d of diagnostics) {
      const ln = Math.max(1, d.line || 1);
      if (!byLine.has(ln)) byLine.set(ln, []);
      byLine.get(ln).push(d);
    }
    const srcLines = text.split('\n');
    const nodes = [];
    const gutterNodes = [];
    lines.forEach((toks, idx) => {
      const ln = idx + 1;
      const diags = byLine.get(ln) || [];
      const lineText = srcLines[idx] || '';
      const marks = diags.filter((d) => d.line > 0).map((d) => markRange(lineText, d.column));
      const lineEl = h('span.line', { class: diags.length ? (diags.some((d) => d.severity === 'error') ? 'has-error' : 'has-warning') : '' },
        renderTokens(toks, marks, diags.some((d) => d.severity === 'error') ? 'err' : 'warn'));
      if (diags.length) {
        lineEl.append(h('span.inline-msg', { class: diags[0].severity }, '  ◂ ' + diags.map((d) => reason(d.message)).join(' · ')));
      }
      nodes.push(lineEl, '\n');
      gutterNodes.push(h('div.gl', { class: diags.length ? diags[0].severity : '' }, String(ln)));
    });
    clear(code, nodes);
    clear(gutterInner, gutterNodes);
    syncScroll();
  }

  function syncScroll() {
    const x = -ta.scrollLeft;
    const y = -ta.scrollTop;
    code.style.transform = `translate(${x}px, ${y}px)`;
    gutterInner.style.transform = `translateY(${y}px)`;
  }

  ta.addEventListener('scroll', syncScroll);
  ta.addEventListener('input', () => { schedule(); onInput?.(ta.value); });
  ta.addEventListener('keydown', (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === 's') {
      ev.preventDefault();
      onSave?.();
      return;
    }
    if (ev.key === 'Escape') { escaped = true; return; }
    if (ev.key === 'Tab' && !escaped && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      indent(ev.shiftKey);
      return;
    }
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      const { selectionStart: s } = ta;
      const lineStart = ta.value.lastIndexOf('\n', s - 1) + 1;
      const ws = /^[ \t]*/.exec(ta.value.slice(lineStart, s))[0];
      const extra = /[:{]\s*$/.test(ta.value.slice(lineStart, s)) ? INDENT : '';
      if (ws || extra) {
        ev.preventDefault();
        insert('\n' + ws + extra);
      }
    }
    escaped = false;
  });

  // execCommand keeps the browser's undo stack intact; setRangeText is the fallback.
  function insert(text) {
    ta.focus();
    if (!document.execCommand('insertText', false, text)) {
      ta.setRangeText(text, ta.selectionStart, ta.selectionEnd, 'end');
      ta.dispatchEvent(new Event('input'));
    }
  }

  function indent(outdent) {
    const v = ta.value;
    const { selectionStart: s, selectionEnd: e } = ta;
    if (s === e && !outdent) { insert(INDENT); return; }
    const start = v.lastIndexOf('\n', s - 1) + 1;
    const end = e > start && v[e - 1] === '\n' ? e - 1 : e;
    const block = v.slice(start, end);
    const changed = block.split('\n').map((l) => outdent ? l.replace(/^( {1,2}|\t)/, '') : INDENT + l).join('\n');
    ta.setSelectionRange(start, end);
    insert(changed);
    ta.setSelectionRange(start, start + changed.length);
  }

  render();
  return {
    el,
    textarea: ta,
    get value() { return ta.value; },
    set value(v) { ta.value = v; render(); },
    setDiagnostics(list) { diagnostics = list || []; render(); },
    /** Moves the caret to a 1-based line and byte column and focuses the editor. */
    focusAt(line, column) {
      const lines = ta.value.split('\n');
      let off = 0;
      for (let i = 0; i < Math.min(line - 1, lines.length); i++) off += lines[i].length + 1;
      off += byteColumnToIndex(lines[line - 1] || '', column || 1);
      ta.focus();
      ta.setSelectionRange(off, off);
      const lh = parseFloat(getComputedStyle(ta).lineHeight) || 20;
      ta.scrollTop = Math.max(0, (line - 4) * lh);
    },
  };
}

function splitLines(tokens) {
  const lines = [[]];
  for (const tok of tokens) {
    const parts = tok.s.split('\n');
    parts.forEach((p, i) => {
      if (i > 0) lines.push([]);
      if (p) lines[lines.length - 1].push({ t: tok.t, s: p });
    });
  }
  return lines;
}

// The characters to underline for an error at `column`: the word that starts there, or one
// character (a visible block when the line ends there).
function markRange(lineText, column) {
  const start = byteColumnToIndex(lineText, column || 1);
  let end = start;
  while (end < lineText.length && /[\p{L}\p{N}_\-\\"]/u.test(lineText[end])) end++;
  if (end === start) end = start + 1;
  return [start, end];
}

function renderTokens(tokens, marks, kind) {
  const out = [];
  let off = 0;
  let lineLen = 0;
  for (const tok of tokens) {
    const from = off;
    const to = off + tok.s.length;
    const cuts = new Set([from, to]);
    for (const [a, b] of marks) { if (a > from && a < to) cuts.add(a); if (b > from && b < to) cuts.add(b); }
    const points = [...cuts].sort((a, b) => a - b);
    for (let k = 0; k < points.length - 1; k++) {
      const a = points[k];
      const b = points[k + 1];
      const text = tok.s.slice(a - from, b - from);
      const marked = marks.some(([ma, mb]) => a >= ma && b <= mb);
      out.push(h('span', { class: `tok-${tok.t}` + (marked ? ` mark-${kind}` : '') }, text));
    }
    off = to;
    lineLen = to;
  }
  // An error past the end of the line (missing '}' at end of file...) still gets a mark.
  for (const [a] of marks) if (a >= lineLen) out.push(h('span', { class: `mark-${kind} mark-eol` }, ' '));
  return out;
}
