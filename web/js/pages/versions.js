// Builds of a bot: build the working copy, list builds, compare two of them (or a build and the
// working copy) flow by flow, publish one (which is also how you roll back).

import { h, clear, table, badge, toast, showError, confirmDialog, fmtTime, empty } from '../dom.js';
import { api, path } from '../api.js';
import { app, can } from '../app.js';
import { diffLines, hunks } from '../diff.js';

export async function render({ main, org, data, base }) {
  const b = data.bot;
  const canEdit = can(org.id, 'editor');
  const list = await api.get(path`/orgs/${org.id}/bots/${b.id}/versions`);

  const build = async () => {
    try {
      const v = await api.post(path`/orgs/${org.id}/bots/${b.id}/build`);
      toast(`Build #${v.seq} created and serving`);
      app.go(`${base}/versions?b=${v.seq}`);
    } catch (e) {
      showError(e);
      if (e.body?.errors?.length) {
        const d = e.body.errors[0];
        toast(`${d.flow}:${d.line}:${d.column} — open the flow to fix it`, 'error');
      }
    }
  };
  const publish = async (v) => {
    const isRollback = list.length && v.seq < Math.max(...list.map((x) => x.seq));
    if (!await confirmDialog(isRollback ? 'Roll back' : 'Publish', `Serve build #${v.seq} to every channel of ${b.name}?`, isRollback ? 'Roll back' : 'Publish', false)) return;
    try {
      await api.post(path`/orgs/${org.id}/bots/${b.id}/versions/${v.id}/publish`);
      toast(`Build #${v.seq} is now serving`);
      app.go(`${base}/versions?p=${v.seq}`);
    } catch (e) { showError(e); }
  };

  main.append(h('div.section-head', h('h2', 'Versions'),
    h('p.muted', 'A build freezes the flows as they are now. Traffic runs on the published build; a bot never built runs its working copy.'),
    canEdit ? h('button.primary', { type: 'button', onclick: build }, 'Build working copy') : null));
  if (!list.length) {
    main.append(empty('No builds yet', 'Build the working copy to freeze it and serve it to your users.'));
    return;
  }
  main.append(table([
    { label: 'Build', cell: (v) => h('strong', `#${v.seq}`) },
    { label: 'Created', cell: (v) => fmtTime(v.created_at) },
    { label: 'Flows', cell: (v) => String(v.flows), class: 'num' },
    { label: 'Engine', cell: (v) => h('code', v.engine_version) },
    { label: 'Status', cell: (v) => v.live ? badge('serving', 'ok') : '' },
    { label: 'Actions', cell: (v) => v.live || !canEdit ? '' : h('button.small', { type: 'button', onclick: () => publish(v) }, v.seq < list[0].seq ? 'Roll back to this' : 'Publish') },
  ], list, { rowClass: (v) => v.live ? 'live' : '' }));

  // Compare.
  const opts = [{ id: 'working', label: 'Working copy' }, ...list.map((v) => ({ id: v.id, label: `Build #${v.seq}` }))];
  const sel = (id, value) => h('select', { id }, opts.map((o) => h('option', { value: o.id, selected: o.id === value }, o.label)));
  const from = sel('diff-from', list[1]?.id || list[0].id);
  const to = sel('diff-to', list[1] ? list[0].id : 'working');
  const out = h('div.diff-out');
  const run = async () => {
    try {
      const [A, B] = await Promise.all([load(from.value), load(to.value)]);
      clear(out, renderDiff(A, B));
    } catch (e) { showError(e); }
  };
  const load = async (id) => {
    if (id === 'working') return Object.fromEntries(data.flows.map((f) => [f.name, f.content]));
    const v = await api.get(path`/orgs/${org.id}/bots/${b.id}/versions/${id}`);
    return Object.fromEntries(v.snapshot.flows.map((f) => [f.name, f.content]));
  };
  from.addEventListener('change', run);
  to.addEventListener('change', run);
  main.append(h('section.card.diff-card', { 'aria-labelledby': 'diff-h' },
    h('h2#diff-h', 'Compare'),
    h('div.row', h('label', { for: 'diff-from' }, 'From'), from, h('label', { for: 'diff-to' }, 'to'), to),
    out));
  run();
}

function renderDiff(A, B) {
  const names = [...new Set([...Object.keys(A), ...Object.keys(B)])].sort();
  const parts = [];
  let changed = 0;
  for (const n of names) {
    const a = A[n];
    const b = B[n];
    if (a === b) continue;
    changed++;
    const title = a == null ? `${n} (added)` : b == null ? `${n} (removed)` : n;
    const lines = hunks(diffLines(a ?? '', b ?? ''));
    parts.push(h('div.diff-file', h('h3', title), h('pre.diff', lines.map((l) => h('span', { class: 'd' + ({ ' ': 'same', '-': 'del', '+': 'add', '…': 'gap' })[l.op] },
      l.op === '…' ? '  …\n' : `${l.op} ${l.text}\n`)))));
  }
  return changed ? parts : h('p.muted', 'No differences in the flows.');
}
