// Plugins: installed WASM plugins (connectors and apps), upload, allowed hosts, recent errors.

import { h, field, table, badge, dialog, toast, showError, confirmDialog, fmtTime, empty } from '../dom.js';
import { api, path } from '../api.js';
import { app, can } from '../app.js';

export async function render({ main, org }) {
  document.title = `Plugins · ${org.name}`;
  const r = await api.get(path`/orgs/${org.id}/plugins`);
  const owner = can(org.id, 'owner');
  const reload = () => app.go(`#/o/${encodeURIComponent(org.id)}/plugins?t=${Date.now()}`);
  main.append(h('div.page-head', h('h1', 'Plugins'),
    h('p.muted', 'WebAssembly components: channel connectors and apps called from CSML with App().'),
    owner && r.supported ? h('button.primary', { type: 'button', onclick: upload }, 'Upload plugin') : null));
  if (!r.supported) {
    main.append(empty('Plugins are not available', 'This server was built without the plugin host.'));
    return;
  }
  if (!r.plugins.length) { main.append(empty('No plugins installed', 'Upload a .wasm component to add a connector or an app.')); return; }
  for (const p of r.plugins) {
    const hosts = p.allowed_hosts || [];
    main.append(h('section.card.plugin', { 'aria-label': p.name },
      h('div.section-head', h('h2', p.name, ' ', h('small.muted', p.version || '')), badge(p.kind || 'plugin'), p.enabled === false ? badge('disabled', 'bad') : badge('enabled', 'ok'),
        h('div.spacer'),
        owner ? h('button.small', { type: 'button', onclick: () => editHosts(p) }, 'Allowed hosts') : null,
        owner ? h('button.small.danger', { type: 'button', onclick: () => remove(p) }, 'Remove') : null),
      p.description ? h('p', p.description) : null,
      h('p', h('strong', 'Allowed hosts: '), hosts.length ? hosts.map((x) => h('code.host', x)) : h('span.muted', 'none (no outbound HTTP)')),
      h('h3', 'Recent errors'),
      (p.errors || []).length ? table([
        { label: 'When', cell: (e) => fmtTime(e.at ?? e.created_at) },
        { label: 'Error', cell: (e) => h('code', e.message ?? e.error ?? JSON.stringify(e)) },
      ], p.errors) : h('p.muted', 'None.')));
  }

  async function upload() {
    const file = h('input', { type: 'file', accept: '.wasm,application/wasm', required: true });
    const ok = await dialog('Upload plugin', field('Component (.wasm)', file), [{
      label: 'Upload', primary: true, submit: true,
      onclick: async () => {
        const f = file.files[0];
        if (!f) throw new Error('Choose a file');
        const buf = new Uint8Array(await f.arrayBuffer());
        let bin = '';
        for (let i = 0; i < buf.length; i += 0x8000) bin += String.fromCharCode(...buf.subarray(i, i + 0x8000));
        return api.post(path`/orgs/${org.id}/plugins`, { filename: f.name, wasm_base64: btoa(bin) });
      },
    }]);
    if (ok) { toast('Plugin installed'); reload(); }
  }
  async function editHosts(p) {
    const ta = h('textarea', { rows: 5, value: (p.allowed_hosts || []).join('\n') });
    const ok = await dialog(`Allowed hosts of ${p.name}`, field('Hosts', ta, 'One per line, e.g. https://api.telegram.org or *.example.com.'), [{
      label: 'Save', primary: true, submit: true,
      onclick: () => api.put(path`/orgs/${org.id}/plugins/${p.id}`, { allowed_hosts: ta.value.split('\n').map((s) => s.trim()).filter(Boolean) }),
    }]);
    if (ok) { toast('Saved'); reload(); }
  }
  async function remove(p) {
    if (!await confirmDialog('Remove plugin', `Remove ${p.name}? Channels using it stop working.`, 'Remove')) return;
    try { await api.del(path`/orgs/${org.id}/plugins/${p.id}`); toast('Removed'); reload(); } catch (e) { showError(e); }
  }
}
