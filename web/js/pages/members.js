// Members of an organization and their roles (owner, editor, viewer). Owners manage members.

import { h, field, table, dialog, toast, showError, confirmDialog } from '../dom.js';
import { api, path } from '../api.js';
import { app, can } from '../app.js';

const ROLES = [['owner', 'Owner: everything, including members and keys'], ['editor', 'Editor: bots, flows, builds, channels'], ['viewer', 'Viewer: read only']];

export async function render({ main, org }) {
  document.title = `Members · ${org.name}`;
  const list = await api.get(path`/orgs/${org.id}/members`);
  const owner = can(org.id, 'owner');
  const me = app.session.user.id;
  const reload = () => app.go(`#/o/${encodeURIComponent(org.id)}/members?t=${Date.now()}`);
  const roleSelect = (value, attrs = {}) => h('select', attrs, ROLES.map(([r, label]) => h('option', { value: r, selected: r === value, title: label }, r)));
  const add = async () => {
    const email = h('input', { type: 'email', required: true, autocomplete: 'off' });
    const role = roleSelect('editor');
    const password = h('input', { type: 'password', autocomplete: 'new-password', minlength: 10 });
    const ok = await dialog('Add member', [field('Email', email), field('Role', role, ROLES.map(([, l]) => l).join(' · ')),
      field('Password', password, 'Only for a new account (at least 10 characters); existing accounts keep theirs.')], [{
      label: 'Add', primary: true, submit: true,
      onclick: () => api.post(path`/orgs/${org.id}/members`, { email: email.value.trim(), role: role.value, password: password.value || null }),
    }]);
    if (ok) { toast('Member added'); reload(); }
  };
  const remove = async (m) => {
    if (!await confirmDialog('Remove member', `Remove ${m.email} from ${org.name}?`, 'Remove')) return;
    try { await api.del(path`/orgs/${org.id}/members/${m.user_id}`); toast('Removed'); await app.refresh(); reload(); } catch (e) { showError(e); }
  };
  main.append(h('div.page-head', h('h1', 'Members'), h('p.muted', org.name),
    owner ? h('button.primary', { type: 'button', onclick: add }, 'Add member') : null));
  main.append(table([
    { label: 'Email', cell: (m) => [m.email, m.user_id === me ? h('span.badge.small', 'you') : null] },
    {
      label: 'Role',
      cell: (m) => owner ? roleSelect(m.role, {
        'aria-label': `Role of ${m.email}`,
        onchange: async (ev) => {
          try { await api.put(path`/orgs/${org.id}/members/${m.user_id}`, { role: ev.target.value }); toast('Role changed'); await app.refresh(); } catch (e) { ev.target.value = m.role; showError(e); }
        },
      }) : m.role,
    },
    { label: 'Actions', cell: (m) => owner ? h('button.small.danger', { type: 'button', onclick: () => remove(m) }, 'Remove') : '' },
  ], list));
}
