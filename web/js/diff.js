// Line diff (longest common subsequence), for comparing two builds of a flow. Flows are small
// (hundreds of lines), so the O(n·m) table is fine; past a limit we fall back to "all changed".

const LIMIT = 4_000_000;

/** Returns [{op: ' '|'-'|'+', text, a?, b?}] where a/b are 1-based line numbers. */
export function diffLines(a, b) {
  const A = a.split('\n');
  const B = b.split('\n');
  const n = A.length;
  const m = B.length;
  if (n * m > LIMIT) {
    return [...A.map((t, i) => ({ op: '-', text: t, a: i + 1 })), ...B.map((t, i) => ({ op: '+', text: t, b: i + 1 }))];
  }
  const dp = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      dp[i][j] = A[i] === B[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (A[i] === B[j]) { out.push({ op: ' ', text: A[i], a: i + 1, b: j + 1 }); i++; j++; }
    else if (dp[i + 1][j] >= dp[i][j + 1]) { out.push({ op: '-', text: A[i], a: i + 1 }); i++; }
    else { out.push({ op: '+', text: B[j], b: j + 1 }); j++; }
  }
  while (i < n) { out.push({ op: '-', text: A[i], a: i + 1 }); i++; }
  while (j < m) { out.push({ op: '+', text: B[j], b: j + 1 }); j++; }
  return out;
}

/** Keeps changed lines and `context` lines around them; gaps become {op: '…'}. */
export function hunks(lines, context = 3) {
  const keep = new Array(lines.length).fill(false);
  lines.forEach((l, i) => {
    if (l.op !== ' ') for (let k = Math.max(0, i - context); k <= Math.min(lines.length - 1, i + context); k++) keep[k] = true;
  });
  const out = [];
  let gap = false;
  lines.forEach((l, i) => {
    if (keep[i]) { out.push(l); gap = false; } else if (!gap) { out.push({ op: '…', text: '' }); gap = true; }
  });
  return out;
}
