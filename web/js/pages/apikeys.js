// Open Chat Studio API keys of the organization: create (shown once), read-only flag, revoke.

import { h, field, table, badge, dialog, toast, showError, confirmDialog, copyable, fmtTime, fmtAgo, empty } from '../dom.js';
import { api, path } from '../api.js';
import { app, can } from '../app.js';

export async function render({ main, org }) {
  document.title = `API keys · ${org.name}`;
  const list = await api.get(path`/orgs/${org.id}/apikeys`);
  const owner = can(org.id, 'owner');
  const reload = () => app.go(`#/o/${encodeURIComponent(org.id)}/apikeys?t=${Date.now()}`);
  const create = async () => {
    const name = h('input', { required: true, value: 'API key' });
    const ro = h('input', { type: 'checkbox', id: 'key-ro' });
    const r = await dialog('New API key', [field('Name', name), h('div.check', ro, h('label', { for: 'key-ro' }, 'Read-only (GET requests only)'))], [{
      label: 'Create key', primary: true, submit: true,
      onclick: () => api.post(path`/orgs/${org.id}/apikeys`, { name: name.value.trim(), read_only: ro.checked }),
    }]);
    if (!r) return;
    await dialog('API key created', [h('p', 'Copy the key now: it is shown only once. Send it as ', h('code', 'X-api-key'), '.'), copyable(r.key)],
      [{ label: 'Done', primary: true, submit: true, onclick: () => true }]);
    reload();
  };
  const revoke = async (k) => {
    if (!await confirmDialog('Revoke key', `Revoke ${k.name} (${k.prefix}…)? Calls with it fail at once.`, 'Revoke')) return;
    try { await api.del(path`/orgs/${org.id}/apikeys/${k.id}`); toast('Key revoked'); reload(); } catch (e) { showError(e); }
  };
  main.append(h('div.page-head', h('h1', 'API keys'),
    h('p.muted', 'Keys for the Open Chat Studio API (', h('code', '/api/…'), ').'),
    owner ? h('button.primary', { type: 'button', onclick: create }, 'New API key') : null));
  if (!list.length) { main.append(empty('No API keys', 'Create one to call the Open Chat Studio API.')); return; }
  main.append(table([
    { label: 'Name', cell: (k) => h('strong', k.name) },
    { label: 'Key', cell: (k) => h('code', k.prefix + '…') },
    { label: 'Access', cell: (k) => k.read_only ? badge('read-only') : badge('read-write', 'ok') },
    { label: 'Last used', cell: (k) => fmtAgo(k.last_used_at) },
    { label: 'Created', cell: (k) => fmtTime(k.created_at) },
    { label: 'Status', cell: (k) => k.revoked_at ? badge('revoked', 'bad') : badge('active', 'ok') },
    { label: 'Actions', cell: (k) => owner && !k.revoked_at ? h('button.small.danger', { type: 'button', onclick: () => revoke(k) }, 'Revoke') : '' },
  ], list, { rowClass: (k) => k.revoked_at ? 'revoked' : '' }));
}
