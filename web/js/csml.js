// CSML syntax highlighting (language spec §2): a single-pass tokenizer that turns source text
// into [{t: type, s: text}] spans. It never fails: anything it does not recognise is plain
// text, so half-typed code still highlights. Types map to CSS classes `tok-<type>`.

const KEYWORDS = new Set([
  'do', 'say', 'goto', 'if', 'else', 'foreach', 'while', 'remember', 'forget', 'hold', 'hold_secure',
  'break', 'continue', 'return', 'import', 'from', 'as', 'const', 'insert', 'fn', 'use', 'debug',
  'log', 'previous', 'in', 'match', 'step', 'flow',
]);
const LITERALS = new Set(['true', 'false', 'null']);
const SPECIAL_VARS = new Set(['event', '_metadata', '_memory', '_env', '_context']);

const IDENT_CHAR = /[\p{L}\p{N}_\-\\]/u;
const DIGIT = /[0-9]/;

/** Tokenizes a whole flow. */
export function tokenize(src) {
  const out = [];
  let i = 0;
  let lineStart = true; // only whitespace seen since the last newline
  const push = (t, s) => {
    if (!s) return;
    const last = out[out.length - 1];
    if (last && last.t === t && t === 'plain') last.s += s;
    else out.push({ t, s });
  };
  while (i < src.length) {
    const c = src[i];
    if (c === '\n') { push('plain', c); i++; lineStart = true; continue; }
    if (c === ' ' || c === '\t' || c === '\r') { push('plain', c); i++; continue; }
    if (c === '/' && src[i + 1] === '/') {
      const end = src.indexOf('\n', i);
      const j = end < 0 ? src.length : end;
      push('comment', src.slice(i, j)); i = j; continue;
    }
    if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      const j = end < 0 ? src.length : end + 2;
      push('comment', src.slice(i, j)); i = j; lineStart = false; continue;
    }
    if (c === '"') { i = string(src, i, push); lineStart = false; continue; }
    if (DIGIT.test(c) || (c === '.' && DIGIT.test(src[i + 1] || ''))) {
      let j = i;
      while (j < src.length && /[0-9_.]/.test(src[j])) j++;
      push('number', src.slice(i, j)); i = j; lineStart = false; continue;
    }
    if (IDENT_CHAR.test(c) && c !== '-') {
      let j = i;
      while (j < src.length && IDENT_CHAR.test(src[j])) j++;
      const word = src.slice(i, j);
      const lower = word.toLowerCase();
      let t = 'plain';
      if (lineStart && src[j] === ':' && src[j + 1] !== ':') t = 'step';
      else if (KEYWORDS.has(lower)) t = 'keyword';
      else if (LITERALS.has(lower)) t = 'literal';
      else if (SPECIAL_VARS.has(word)) t = 'var';
      else if (nextNonSpace(src, j) === '(' && /^[A-Z]/.test(word)) t = 'fn';
      else if (nextNonSpace(src, j) === '(') t = 'call';
      push(t, word);
      i = j; lineStart = false; continue;
    }
    if ('{}[]()'.includes(c)) { push('punct', c); i++; lineStart = false; continue; }
    if ('=!<>+-*/%&|@$,.:'.includes(c)) { push('op', c); i++; lineStart = false; continue; }
    push('plain', c); i++; lineStart = false;
  }
  return out;
}

function nextNonSpace(src, j) {
  while (j < src.length && (src[j] === ' ' || src[j] === '\t')) j++;
  return src[j];
}

// A string literal with `{{ expr }}` interpolations; returns the index after it. An unclosed
// string runs to the end of the text (which is how the parser sees it too).
function string(src, i, push) {
  let j = i + 1;
  let start = i;
  while (j < src.length) {
    const c = src[j];
    if (c === '\\') { j += 2; continue; }
    if (c === '"') { j++; break; }
    if (c === '{' && src[j + 1] === '{') {
      push('string', src.slice(start, j));
      const end = src.indexOf('}}', j + 2);
      const stop = end < 0 ? src.length : end;
      push('interp', '{{');
      interp(src.slice(j + 2, stop), push);
      if (end >= 0) push('interp', '}}');
      j = end < 0 ? src.length : end + 2;
      start = j;
      continue;
    }
    j++;
  }
  push('string', src.slice(start, Math.min(j, src.length)));
  return Math.min(j, src.length);
}

// Inside an interpolation string literals are written \"...\" (spec §2.4).
function interp(expr, push) {
  const re = /\\"[^"\\]*\\"/g;
  let last = 0;
  let m;
  while ((m = re.exec(expr))) {
    for (const tok of tokenize(expr.slice(last, m.index))) push(tok.t === 'step' ? 'plain' : tok.t, tok.s);
    push('string', m[0]);
    last = m.index + m[0].length;
  }
  for (const tok of tokenize(expr.slice(last))) push(tok.t === 'step' ? 'plain' : tok.t, tok.s);
}

/** Converts a 1-based byte column (spec §2.1) of `line` to a 0-based character offset. */
export function byteColumnToIndex(line, column) {
  if (column <= 1) return 0;
  const enc = new TextEncoder();
  let bytes = 0;
  let idx = 0;
  for (const ch of line) {
    if (bytes >= column - 1) break;
    bytes += enc.encode(ch).length;
    idx += ch.length;
  }
  return idx;
}

/** The human reason of a diagnostic: its message without the "at line L, source, caret" frame. */
export function reason(message) {
  const lines = String(message || '').split('\n').map((l) => l.trimEnd()).filter((l) => l.trim() !== '');
  if (lines.length === 0) return '';
  if (/^at line \d+,?$/.test(lines[0]) && lines.length >= 4) return lines.slice(3).join(' ');
  return lines.join(' ');
}
