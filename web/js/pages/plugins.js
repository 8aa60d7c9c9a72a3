// Plugins: the organization's installed WASM plugins and the first-party ones (connectors
// and apps), upload of a .wasm component, settings (config values; secrets are write-only),
// allowed hosts, and each plugin's recent failed calls.

import { h, field, table, badge, dialog, toast, showError, confirmDialog, fmtTime, empty } from '../dom.js';
import { api, path } from '../api.js';
import { app, can } from '../app.js';

const OPS = { app: 'App() call', webhook: 'webhook', deliver: 'delivery' };

export async function render({ main, org }) {
  document.title = `Plugins · ${org.name}`;
  const r = await api.get(path`/orgs/${org.id}/plugins`);
  const owner = can(org.id, 'owner');
  const reload = () => app.go(`#/o/${encodeURIComponent(org.id)}/plugins?t=${Date.now()}`);
  main.append(h('div.page-head', h('h1', 'Plugins'),
    h('p.muted', 'WebAssembly components: channel connectors and apps called from CSML with App(). Each runs sandboxed, reaching only its allowed hosts.'),
    owner && r.supported ? h('button.primary', { type: 'button', onclick: upload }, 'Upload plugin') : null));
  if (!r.supported) {
    main.append(empty('Plugins are not available', 'This server runs without the plugin host.'));
    return;
  }
  const installed = r.plugins.filter((p) => !p.first_party);
  const builtin = r.plugins.filter((p) => p.first_party);
  main.append(h('section', { 'aria-labelledby': 'pl-installed' },
    h('h2#pl-installed', 'Installed'),
    installed.length ? installed.map(card) : empty('No plugin installed', 'Upload a .wasm component, or give a first-party plugin its settings below.')));
  main.append(h('section', { 'aria-labelledby': 'pl-builtin' },
    h('h2#pl-builtin', 'First-party'),
    builtin.map(card)));

  function card(p) {
    const hosts = [...(p.manifest_hosts || []), ...(p.allowed_hosts || [])];
    const values = p.values || { config: {}, secrets_set: [] };
    const settings = p.settings || [];
    return h('article.card.plugin', { 'aria-label': `${p.name} plugin` },
      h('div.section-head',
        h('h3', p.name, ' ', h('small.muted', p.version || '')),
        badge(p.kind === 'channel' ? 'connector' : 'app'),
        p.first_party ? badge('first-party', 'muted') : badge(p.replaces_first_party ? 'installed (replaces first-party)' : 'installed', 'ok'),
        h('div.spacer'),
        owner ? h('button.small', { type: 'button', onclick: () => edit(p) }, 'Settings') : null,
        owner && !p.first_party ? h('button.small.danger', { type: 'button', onclick: () => remove(p) }, 'Remove') : null),
      p.description ? h('p', p.description) : null,
      h('p', h('strong', 'Allowed hosts: '), hosts.length ? hosts.map((x) => h('code.host', x)) : h('span.muted', 'none (no outbound HTTP)')),
      settings.length ? h('p', h('strong', 'Settings: '), settings.map((s) => h('span.setting',
        h('code', s.name), ' ',
        s.secret ? (values.secrets_set.includes(s.name) ? badge('set', 'ok') : badge('not set', 'muted'))
          : h('span.muted', values.config[s.name] != null ? String(values.config[s.name]) : (s.default ? `default ${s.default}` : '—'))))) : null,
      p.kind === 'channel' ? h('p.muted', 'Connector channels with this plugin are created on a bot\'s Channels tab; their settings are per channel.') : null,
      h('h4', 'Recent errors'),
      (p.errors || []).length ? table([
        { label: 'When', cell: (e) => fmtTime(e.at) },
        { label: 'During', cell: (e) => OPS[e.operation] || e.operation },
        { label: 'Error', cell: (e) => h('code.wrap', e.message) },
      ], p.errors) : h('p.muted', 'None.'));
  }

  async function upload() {
    const file = h('input', { type: 'file', accept: '.wasm,application/wasm', required: true });
    const ok = await dialog('Upload plugin', [
      field('Component (.wasm)', file, `Built with cargo build --target wasm32-wasip2 --release; at most ${Math.round(r.max_upload_bytes / 1048576)} MiB. A plugin of the same name is replaced; its settings stay.`),
    ], [{
      label: 'Upload', primary: true, submit: true,
      onclick: async () => {
        const f = file.files[0];
        if (!f) throw new Error('Choose a .wasm file');
        if (f.size > r.max_upload_bytes) throw new Error('The file is too large');
        return api.upload(path`/orgs/${org.id}/plugins`, f);
      },
    }]);
    if (ok) { toast(`Installed ${ok.name} ${ok.version}`); reload(); }
  }

  async function edit(p) {
    const values = p.values || { config: {}, secrets_set: [] };
    // Connectors take their settings per channel; here only their allowed hosts.
    const inputs = (p.kind === 'channel' ? [] : p.settings || []).map((s) => [s, h('input', {
      type: s.secret ? 'password' : 'text', autocomplete: 'off',
      value: s.secret ? '' : (values.config[s.name] ?? ''),
      placeholder: s.secret ? (values.secrets_set.includes(s.name) ? 'set; leave blank to keep' : 'not set') : (s.default || ''),
    })]);
    const hosts = h('textarea', { rows: 3, value: (p.allowed_hosts || []).join('\n'), placeholder: 'https://api.example.com\n*.example.org' });
    const ok = await dialog(`Settings of ${p.name}`, [
      p.first_party ? h('p.muted', 'Saving installs this first-party plugin for the organization with these settings.') : null,
      ...inputs.map(([s, i]) => field(s.name + (s.secret ? ' (secret)' : ''), i, s.description)),
      field('Extra allowed hosts', hosts, `One per line. The manifest already allows: ${(p.manifest_hosts || []).join(', ') || 'none'}.`),
    ], [{
      label: 'Save', primary: true, submit: true,
      onclick: () => api.put(path`/orgs/${org.id}/plugins/${p.name}`, {
        allowed_hosts: hosts.value.split('\n').map((x) => x.trim()).filter(Boolean),
        settings: Object.fromEntries(inputs.map(([s, i]) => [s.name, i.value])),
      }),
    }]);
    if (ok) { toast('Saved'); reload(); }
  }

  async function remove(p) {
    const msg = p.replaces_first_party ? `Remove ${p.name}? The first-party ${p.name} takes its place.` : `Remove ${p.name}? Flows and channels using it stop working.`;
    if (!await confirmDialog('Remove plugin', msg, 'Remove')) return;
    try { await api.del(path`/orgs/${org.id}/plugins/${p.name}`); toast('Removed'); reload(); } catch (e) { showError(e); }
  }
}
