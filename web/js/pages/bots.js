// The bots of an organization, and creating one (it starts with a working hello flow).

import { h, field, table, badge, dialog, toast, empty, fmtAgo } from '../dom.js';
import { api, path } from '../api.js';
import { app, can } from '../app.js';

export async function render({ main, org }) {
  document.title = `Bots · ${org.name}`;
  const bots = await api.get(path`/orgs/${org.id}/bots`);
  const canEdit = can(org.id, 'editor');
  const create = async () => {
    const name = h('input', { required: true, maxlength: 100, autocomplete: 'off' });
    const b = await dialog('New bot', [field('Name', name, 'You can rename it later.')], [{
      label: 'Create bot', primary: true, submit: true,
      onclick: () => api.post(path`/orgs/${org.id}/bots`, { name: name.value.trim() }),
    }]);
    if (b) { toast(`Bot ${b.name} created`); app.go(`#/o/${encodeURIComponent(org.id)}/bots/${encodeURIComponent(b.id)}`); }
  };
  main.append(h('div.page-head', h('h1', 'Bots'),
    canEdit ? h('button.primary', { type: 'button', onclick: create }, 'New bot') : null));
  if (!bots.length) {
    main.append(empty('No bots yet', 'A bot is a set of CSML flows. Create one to start writing.', canEdit ? h('button.primary', { type: 'button', onclick: create }, 'Create a bot') : null));
    return;
  }
  main.append(table([
    { label: 'Name', cell: (b) => h('a', { href: `#/o/${encodeURIComponent(org.id)}/bots/${encodeURIComponent(b.id)}` }, b.name) },
    { label: 'Flows', cell: (b) => String(b.flows), class: 'num' },
    { label: 'Serving', cell: (b) => b.live_version ? badge(`build #${b.live_version}`, 'ok') : badge('working copy', 'muted') },
    { label: 'Last change', cell: (b) => fmtAgo(b.updated_at) },
  ], bots));
}
