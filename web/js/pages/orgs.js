// Organizations the user belongs to, and creating a new one (the creator becomes its owner).

import { h, field, table, badge, dialog, toast, fmtTime } from '../dom.js';
import { api } from '../api.js';
import { app } from '../app.js';

export async function render({ main }) {
  document.title = 'Organizations · botyard';
  const list = await api.get('/orgs');
  main.append(
    h('div.page-head', h('h1', 'Organizations'), h('button.primary', { type: 'button', onclick: create }, 'New organization')),
    table([
      { label: 'Name', cell: (o) => h('a', { href: `#/o/${encodeURIComponent(o.id)}/bots` }, o.name) },
      { label: 'Your role', cell: (o) => badge(o.role) },
      { label: 'Bots', cell: (o) => String(o.bots ?? '—'), class: 'num' },
      { label: 'Created', cell: (o) => fmtTime(o.created_at) },
    ], list));
}

async function create() {
  const name = h('input', { required: true, maxlength: 100 });
  const org = await dialog('New organization', field('Name', name), [{
    label: 'Create', primary: true, submit: true,
    onclick: () => api.post('/orgs', { name: name.value.trim() }),
  }]);
  if (org) {
    toast(`Organization ${org.name} created`);
    await app.refresh();
    app.go(`#/o/${encodeURIComponent(org.id)}/bots`);
  }
}
