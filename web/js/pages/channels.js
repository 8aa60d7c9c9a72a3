// Channels of a bot: Studio API channels (key, secret shown once, rotate, webhook URL), web
// chat (public flag, embed keys and allowed origins), and connector channels whose settings
// come from the connector plugin's manifest.

import { h, field, table, badge, dialog, toast, showError, confirmDialog, copyable, empty, fmtTime } from '../dom.js';
import { api, path } from '../api.js';
import { app, can } from '../app.js';

export async function render({ main, org, data, base }) {
  const b = data.bot;
  const canEdit = can(org.id, 'editor');
  const r = await api.get(path`/orgs/${org.id}/bots/${b.id}/channels`);
  const P = (s) => path`/orgs/${org.id}/bots/${b.id}/channels` + s;
  const reload = () => app.go(`${base}/channels?t=${Date.now()}`);

  const showSecret = (title, creds) => dialog(title, [
    h('p', 'Copy the secret now: it is shown only once. Sign private API calls with it (HMAC-SHA-256).'),
    field('API key', copyable(creds.api_key)),
    field('API secret', copyable(creds.api_secret)),
  ], [{ label: 'Done', primary: true, submit: true, onclick: () => true }]);

  // Studio API channels.
  const api_ = r.channels.filter((c) => c.kind === 'api');
  const newApi = async () => {
    const name = h('input', { required: true, value: 'API' });
    const hook = h('input', { type: 'url', placeholder: 'https://example.com/botyard-webhook' });
    const res = await dialog('New API channel', [field('Name', name), field('Webhook URL (optional)', hook, 'Receives one POST per bot message.')], [{
      label: 'Create', primary: true, submit: true,
      onclick: () => api.post(P(''), { kind: 'api', name: name.value.trim(), webhook_url: hook.value.trim() || null }),
    }]);
    if (res) { await showSecret('Channel created', res.credentials); reload(); }
  };
  const rotate = async (c) => {
    if (!await confirmDialog('Rotate keys', `Create a new key and secret for ${c.name}? The old ones stop working at once.`, 'Rotate')) return;
    try { const creds = await api.post(P(path`/${c.id}/rotate`)); await showSecret('New credentials', creds); reload(); } catch (e) { showError(e); }
  };
  const editHook = async (c) => {
    const hook = h('input', { type: 'url', value: c.webhook_url || '' });
    const name = h('input', { required: true, value: c.name });
    const ok = await dialog(`Edit ${c.name}`, [field('Name', name), field('Webhook URL', hook, 'Leave empty for none.')], [{
      label: 'Save', primary: true, submit: true,
      onclick: () => api.put(P(path`/${c.id}`), { name: name.value.trim(), webhook_url: hook.value.trim() || null }),
    }]);
    if (ok) { toast('Saved'); reload(); }
  };
  const remove = async (c) => {
    if (!await confirmDialog('Delete channel', `Delete ${c.name}? Its conversations are deleted too.`, 'Delete')) return;
    try { await api.del(P(path`/${c.id}`)); toast('Deleted'); reload(); } catch (e) { showError(e); }
  };
  const actions = (c) => canEdit ? h('div.actions',
    h('button.small', { type: 'button', onclick: () => editHook(c) }, 'Edit'),
    h('button.small', { type: 'button', onclick: () => rotate(c) }, 'Rotate'),
    h('button.small.danger', { type: 'button', onclick: () => remove(c) }, 'Delete')) : '';

  main.append(h('section.card', { 'aria-labelledby': 'ch-api' },
    h('div.section-head', h('h2#ch-api', 'Studio API channels'),
      h('p.muted', 'Key pairs for the CSML Studio client API at ', h('code', `${location.origin}/v1/api`), '.'),
      canEdit ? h('button.primary', { type: 'button', onclick: newApi }, 'New API channel') : null),
    api_.length ? table([
      { label: 'Name', cell: (c) => h('strong', c.name) },
      { label: 'API key', cell: (c) => h('code.key', c.api_key) },
      { label: 'Webhook URL', cell: (c) => c.webhook_url ? h('code', c.webhook_url) : h('span.muted', 'none') },
      { label: 'Status', cell: (c) => badge(c.status, c.status === 'active' ? 'ok' : 'muted') },
      { label: 'Actions', cell: actions },
    ], api_) : empty('No API channel', 'Create one to call the Studio API.')));

  // Web chat.
  const wc = r.web_chat || {};
  const pub = h('input', { type: 'checkbox', checked: !!wc.public, disabled: !canEdit, id: 'wc-public' });
  pub.addEventListener('change', async () => {
    try { await api.put(path`/orgs/${org.id}/bots/${b.id}`, { settings: { web_chat_public: pub.checked } }); toast(pub.checked ? 'Web chat is public' : 'Web chat needs an embed key'); } catch (e) { pub.checked = !pub.checked; showError(e); }
  });
  const widgets = wc.widgets || [];
  const newWidget = async () => {
    const name = h('input', { required: true, value: 'Web chat' });
    const origins = h('textarea', { rows: 3, placeholder: 'example.com\n*.example.org' });
    const res = await dialog('New web chat embed', [field('Name', name), field('Allowed origins', origins, 'One host per line; *.example.com wildcards; * for any.')], [{
      label: 'Create', primary: true, submit: true,
      onclick: () => api.post(P(''), { kind: 'web', name: name.value.trim(), allowed_origins: lines(origins.value) }),
    }]);
    if (res) { toast('Embed created'); reload(); }
  };
  main.append(h('section.card', { 'aria-labelledby': 'ch-web' },
    h('div.section-head', h('h2#ch-web', 'Web chat'),
      h('p.muted', 'The Open Chat Studio chat API (', h('code', '/api/chat/…'), ') for embedded chat widgets.'),
      canEdit && wc.supported ? h('button', { type: 'button', onclick: newWidget }, 'New embed') : null),
    h('div.check', pub, h('label', { for: 'wc-public' }, 'Public: anyone may start a chat without an embed key')),
    wc.supported ? (widgets.length ? table([
      { label: 'Name', cell: (w) => h('strong', w.name) },
      { label: 'Embed key', cell: (w) => copyable(w.embed_key, 'Copy') },
      { label: 'Allowed origins', cell: (w) => (w.allowed_origins || []).join(', ') || h('span.muted', 'none') },
      { label: 'Status', cell: (w) => w.enabled === false ? badge('disabled', 'bad') : badge('enabled', 'ok') },
    ], widgets) : h('p.muted', 'No embed yet.'))
      : h('p.muted', 'Embed keys appear here once the Open Chat Studio API is part of this server.')));

  // Connector channels: settings from the connector plugin's manifest; secrets write-only.
  const connectors = r.connectors || [];
  const connected = r.channels.filter((c) => c.connector);
  const settingInputs = (settings, current) => settings.map((s) => [s, h('input', {
    type: s.secret ? 'password' : 'text', autocomplete: 'off', required: !current && !!s.required,
    value: s.secret || !current ? '' : (current.config[s.name] ?? ''),
    placeholder: s.secret && current ? (current.secrets_set.includes(s.name) ? 'set; leave blank to keep' : 'not set') : (s.default || ''),
  })]);
  const settingFields = (inputs) => inputs.map(([s, i]) => field(s.name + (s.secret ? ' (secret)' : s.required ? '' : ' (optional)'), i, s.description));
  const showHook = (c) => dialog('Connected', [
    h('p', 'Paste this webhook URL into the platform (e.g. Telegram\'s setWebhook):'),
    copyable(c.hook_url || ''),
  ], [{ label: 'Done', primary: true, submit: true, onclick: () => true }]);
  const newConnector = async (con) => {
    const name = h('input', { required: true, value: con.name });
    const inputs = settingInputs(con.settings || [], null);
    const res = await dialog(`Connect ${con.name}`, [field('Channel name', name), ...settingFields(inputs)], [{
      label: 'Connect', primary: true, submit: true,
      onclick: () => api.post(P(''), {
        kind: con.kind, name: name.value.trim(),
        settings: Object.fromEntries(inputs.filter(([, i]) => i.value !== '').map(([s, i]) => [s.name, i.value])),
      }),
    }]);
    if (res) { await showHook(res.channel); reload(); }
  };
  const editConnector = async (c) => {
    const con = connectors.find((x) => x.kind === c.kind);
    const name = h('input', { required: true, value: c.name });
    const inputs = settingInputs(con?.settings || [], c.settings);
    const ok = await dialog(`Edit ${c.name}`, [field('Channel name', name), ...settingFields(inputs)], [{
      label: 'Save', primary: true, submit: true,
      onclick: () => api.put(P(path`/${c.id}`), {
        name: name.value.trim(),
        settings: Object.fromEntries(inputs.map(([s, i]) => [s.name, s.secret ? i.value : (i.value === '' ? null : i.value)])),
      }),
    }]);
    if (ok) { toast('Saved'); reload(); }
  };
  main.append(h('section.card', { 'aria-labelledby': 'ch-con' },
    h('div.section-head', h('h2#ch-con', 'Connector channels'),
      h('p.muted', 'Messaging platforms reached through connector plugins (Plugins page).')),
    connected.length ? table([
      { label: 'Name', cell: (c) => h('strong', c.name) },
      { label: 'Platform', cell: (c) => badge(c.kind) },
      { label: 'Webhook URL', cell: (c) => c.hook_url ? copyable(c.hook_url) : '—' },
      { label: 'Secrets set', cell: (c) => (c.settings?.secrets_set || []).join(', ') || h('span.muted', 'none') },
      { label: 'Created', cell: (c) => fmtTime(c.created_at) },
      { label: 'Actions', cell: (c) => canEdit ? h('div.actions',
        h('button.small', { type: 'button', onclick: () => editConnector(c) }, 'Edit'),
        h('button.small.danger', { type: 'button', onclick: () => remove(c) }, 'Delete')) : '' },
    ], connected) : null,
    connectors.length
      ? h('div.connector-grid', connectors.map((con) => h('div.connector',
        h('strong', con.name), con.first_party ? null : [' ', badge('installed', 'ok')],
        h('p.muted', con.description || con.kind),
        canEdit ? h('button.small', { type: 'button', onclick: () => newConnector(con), 'aria-label': `Connect ${con.name}` }, 'Connect') : null)))
      : h('p.muted', 'No connector plugin is available. Install one on the Plugins page.')));
}

function lines(s) {
  return s.split(/[\n,]/).map((x) => x.trim()).filter(Boolean);
}
