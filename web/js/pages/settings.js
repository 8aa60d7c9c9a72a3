// Bot settings: name and description, default flow, environment variables (`_env`), data
// retention, and deletion.

import { h, field, toast, showError, confirmDialog } from '../dom.js';
import { api, path } from '../api.js';
import { app, can } from '../app.js';

export async function render({ main, org, data, base }) {
  const b = data.bot;
  const canEdit = can(org.id, 'editor');
  const P = path`/orgs/${org.id}/bots/${b.id}`;

  const name = h('input', { required: true, value: b.name, maxlength: 100, disabled: !canEdit });
  const desc = h('input', { value: b.description || '', disabled: !canEdit });
  const def = h('select', { disabled: !canEdit }, data.flows.map((f) => h('option', { value: f.id, selected: f.id === b.default_flow_id }, f.name)));
  const general = h('form.card', {
    'aria-labelledby': 'set-gen',
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api.put(P, { name: name.value.trim(), description: desc.value.trim() || null, default_flow: def.value });
        toast('Saved');
        app.go(`${base}/settings?s=${Date.now()}`);
      } catch (e) { showError(e); }
    },
  }, h('h2#set-gen', 'General'), field('Name', name), field('Description', desc),
  field('Default flow', def, 'Runs when no command matches and no conversation is open.'),
  canEdit ? h('button.primary', { type: 'submit' }, 'Save') : null);

  // Environment variables: a small key/value grid.
  const rows = h('div.kv-rows');
  const addRow = (k = '', v = '') => {
    const key = h('input.mono', { value: k, 'aria-label': 'Variable name', placeholder: 'NAME', disabled: !canEdit });
    const val = h('input.mono', { value: v, 'aria-label': 'Value', placeholder: 'value', disabled: !canEdit });
    const row = h('div.kv', key, val, canEdit ? h('button.small', { type: 'button', 'aria-label': 'Remove variable', onclick: () => row.remove() }, 'Remove') : null);
    rows.append(row);
    return key;
  };
  for (const [k, v] of Object.entries(b.env || {})) addRow(k, typeof v === 'string' ? v : JSON.stringify(v));
  const env = h('form.card', {
    'aria-labelledby': 'set-env',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const out = {};
      for (const row of rows.children) {
        const [k, v] = row.querySelectorAll('input');
        if (k.value.trim()) out[k.value.trim()] = v.value;
      }
      try { await api.put(P, { env: out }); toast('Environment saved'); } catch (e) { showError(e); }
    },
  }, h('h2#set-env', 'Environment variables'),
  h('p.muted', 'Read in flows as ', h('code', '_env.NAME'), '. Values are strings.'),
  rows,
  canEdit ? h('div.row', h('button', { type: 'button', onclick: () => addRow().focus() }, 'Add variable'), h('button.primary', { type: 'submit' }, 'Save environment')) : null);

  const ttl = h('input', { type: 'number', min: 0, value: b.settings?.ttl_days ?? '', placeholder: 'keep forever', disabled: !canEdit });
  const low = h('input', { type: 'checkbox', checked: !!b.settings?.low_data_mode, disabled: !canEdit, id: 'set-low' });
  const data_ = h('form.card', {
    'aria-labelledby': 'set-data',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const settings = { low_data_mode: low.checked, ttl_days: ttl.value === '' ? null : Number(ttl.value) };
      try { await api.put(P, { settings }); toast('Saved'); } catch (e) { showError(e); }
    },
  }, h('h2#set-data', 'Data retention'), field('Keep conversations for (days)', ttl, 'Empty keeps them until deleted.'),
  h('div.check', low, h('label', { for: 'set-low' }, 'Low-data mode: do not store transcripts (usage is still counted)')),
  canEdit ? h('button.primary', { type: 'submit' }, 'Save') : null);

  const danger = can(org.id, 'owner') ? h('section.card.danger-zone', { 'aria-labelledby': 'set-del' },
    h('h2#set-del', 'Delete bot'),
    h('p', 'Deletes the bot, its flows, builds, channels and conversations.'),
    h('button.danger', {
      type: 'button',
      onclick: async () => {
        if (!await confirmDialog('Delete bot', `Delete ${b.name} and all its data? This cannot be undone.`, 'Delete bot')) return;
        try { await api.del(P); toast('Bot deleted'); app.go(`#/o/${encodeURIComponent(org.id)}/bots`); } catch (e) { showError(e); }
      },
    }, 'Delete this bot')) : null;

  main.append(h('div.settings-grid', general, env, data_, danger));
}
