// Usage of every bot of the organization: messages and active users per day as charts.

import { h, empty } from '../dom.js';
import { api, path } from '../api.js';
import { usageCards } from './bot_usage.js';

export async function render({ main, org }) {
  document.title = `Usage · ${org.name}`;
  const r = await api.get(path`/orgs/${org.id}/usage?days=30`);
  main.append(h('div.page-head', h('h1', 'Usage'), h('p.muted', 'Last 30 days, UTC.')));
  if (!r.bots.length) { main.append(empty('No bots', 'Usage appears once a bot has conversations.')); return; }
  for (const b of r.bots) {
    main.append(h('section.usage-bot', h('h2', h('a', { href: `#/o/${encodeURIComponent(org.id)}/bots/${encodeURIComponent(b.id)}/usage` }, b.name)),
      usageCards({ days: b.days, from: r.from, to: r.to, total_clients: b.total_clients })));
  }
}
