// Usage of one bot: messages per day and active users per day, last 30 days.

import { h } from '../dom.js';
import { api, path } from '../api.js';
import { barChart, fillDays } from '../chart.js';

export async function render({ main, org, data }) {
  const r = await api.get(path`/orgs/${org.id}/bots/${data.bot.id}/usage?days=30`);
  main.append(usageCards(r));
}

export function usageCards(r) {
  const msgs = fillDays(r.days, r.from, r.to, 'messages');
  const users = fillDays(r.days, r.from, r.to, 'clients');
  const sum = (xs) => xs.reduce((a, p) => a + p.value, 0);
  return h('div.usage-grid',
    h('section.card', h('h2', 'Messages per day'), h('p.stat', String(sum(msgs)), h('small', ' in 30 days')), barChart(msgs, { title: 'Messages per day', unit: 'messages' })),
    h('section.card', h('h2', 'Active users per day'), h('p.stat', String(r.total_clients ?? Math.max(0, ...users.map((u) => u.value))), h('small', r.total_clients != null ? ' distinct in 30 days' : ' peak')), barChart(users, { title: 'Active users per day', unit: 'users' })));
}
