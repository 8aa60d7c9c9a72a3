// One bot: the header (name, what serves traffic) and its tabs. Each tab lives in its own module.

import { h, badge } from '../dom.js';
import { api, path } from '../api.js';
import * as flows from './flows.js';
import * as versions from './versions.js';
import * as channels from './channels.js';
import * as settings from './settings.js';
import * as botUsage from './bot_usage.js';

const TABS = [
  ['flows', 'Flows', flows],
  ['versions', 'Versions', versions],
  ['channels', 'Channels', channels],
  ['settings', 'Settings', settings],
  ['usage', 'Usage', botUsage],
];

export async function render(ctx) {
  const { main, org, params, opts } = ctx;
  const data = await api.get(path`/orgs/${org.id}/bots/${params.bot}`);
  const b = data.bot;
  document.title = `${b.name} · ${org.name}`;
  const base = `#/o/${encodeURIComponent(org.id)}/bots/${encodeURIComponent(b.id)}`;
  const tabs = h('nav.tabs', { 'aria-label': 'Bot sections' }, TABS.map(([key, label]) => h('a', {
    href: key === 'flows' ? base : `${base}/${key}`,
    'aria-current': key === opts.tab ? 'page' : null,
  }, label)));
  main.append(
    h('div.crumbs', h('a', { href: `#/o/${encodeURIComponent(org.id)}/bots` }, 'Bots'), ' / ', h('span', b.name)),
    h('div.page-head.bot-head', h('h1', b.name),
      b.live_version ? badge(`serving build #${b.live_version}`, 'ok') : badge('serving the working copy', 'muted'),
      h('div.spacer'), tabs));
  const body = h('div.tab-body');
  main.append(body);
  const tab = TABS.find(([key]) => key === opts.tab);
  await tab[2].render({ ...ctx, main: body, data, base });
}
