// Participants: the end users of the organization's bots, with their data.

import { h, table, badge, fmtTime, empty } from '../dom.js';
import { api, path } from '../api.js';

export async function render({ main, org }) {
  document.title = `Participants · ${org.name}`;
  const list = await api.get(path`/orgs/${org.id}/participants`);
  main.append(h('div.page-head', h('h1', 'Participants'), h('p.muted', 'People who talked to a bot through a channel that identifies them.')));
  if (!list.length) { main.append(empty('No participants yet', 'They appear when end users chat through the Open Chat Studio API or a connector.')); return; }
  main.append(table([
    { label: 'Identifier', cell: (p) => h('a', { href: `#/o/${encodeURIComponent(org.id)}/conversations?user=${encodeURIComponent(p.identifier)}` }, p.identifier) },
    { label: 'Name', cell: (p) => p.name || h('span.muted', '—') },
    { label: 'Platform', cell: (p) => badge(p.platform) },
    { label: 'Data', cell: (p) => h('details', h('summary', `${Object.keys(p.data || {}).length} keys`), h('pre.json', JSON.stringify(p.data, null, 2))) },
    { label: 'Since', cell: (p) => fmtTime(p.created_at) },
  ], list));
}
