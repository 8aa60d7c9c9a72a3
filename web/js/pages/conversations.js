// Conversations: a filtered list (bot, channel, status, date range) and one conversation's
// transcript with components rendered, its participant and metadata; ending a conversation.

import { h, clear, table, badge, toast, showError, confirmDialog, fmtTime, fmtAgo, empty } from '../dom.js';
import { api, path, qs } from '../api.js';
import { app, can } from '../app.js';
import { renderMessage } from '../messages.js';

export async function render({ main, org, query }) {
  document.title = `Conversations · ${org.name}`;
  const [bots, channels] = await Promise.all([
    api.get(path`/orgs/${org.id}/bots`),
    api.get(path`/orgs/${org.id}/channels`),
  ]);
  const sel = (id, label, options, value) => [h('label', { for: id }, label), h('select', { id, name: id }, h('option', { value: '' }, 'Any'),
    options.map(([v, t]) => h('option', { value: v, selected: v === value }, t)))];
  const date = (id, label, value) => [h('label', { for: id }, label), h('input', { id, name: id, type: 'date', value: value || '' })];
  const form = h('form.filters', {
    onchange: () => apply(),
    onsubmit: (ev) => { ev.preventDefault(); apply(); },
  },
  h('div.filter', sel('bot', 'Bot', bots.map((b) => [b.id, b.name]), query.bot)),
  h('div.filter', sel('channel', 'Channel', channels.filter((c) => !query.bot || c.bot_id === query.bot).map((c) => [c.id, `${c.name} (${c.kind})`]), query.channel)),
  h('div.filter', sel('status', 'Status', [['open', 'Open'], ['closed', 'Closed']], query.status)),
  h('div.filter', date('from', 'From', query.from)),
  h('div.filter', date('to', 'To', query.to)));
  function apply() {
    const f = new FormData(form);
    const q = Object.fromEntries([...f.entries()].filter(([, v]) => v));
    if (q.bot !== query.bot) delete q.channel;
    app.go(`#/o/${encodeURIComponent(org.id)}/conversations${qs(q)}`);
  }
  main.append(h('div.page-head', h('h1', 'Conversations')), form);

  const list = h('div');
  main.append(list);
  const params = {
    bot: query.bot, channel: query.channel, status: query.status, user: query.user,
    since: query.from ? Date.parse(query.from + 'T00:00:00Z') : null,
    until: query.to ? Date.parse(query.to + 'T00:00:00Z') + 86400000 : null,
    limit: 50,
  };
  const botName = Object.fromEntries(bots.map((b) => [b.id, b.name]));
  const chName = Object.fromEntries(channels.map((c) => [c.id, c.name]));
  const rows = [];
  const load = async (before) => {
    const page = await api.get(path`/orgs/${org.id}/conversations` + qs({ ...params, before }));
    rows.push(...page);
    clear(list, rows.length ? table([
      { label: 'User', cell: (c) => h('a', { href: `#/o/${encodeURIComponent(org.id)}/conversations/${encodeURIComponent(c.id)}` }, c.user_id) },
      { label: 'Bot', cell: (c) => botName[c.bot_id] || c.bot_id },
      { label: 'Channel', cell: (c) => chName[c.channel_id] || c.channel_id },
      { label: 'Status', cell: (c) => badge(c.status, c.status === 'open' ? 'ok' : 'muted') },
      { label: 'Position', cell: (c) => h('code', `${c.flow}/${c.step}`) },
      { label: 'Last message', cell: (c) => h('span', { title: fmtTime(c.last_interaction_at) }, fmtAgo(c.last_interaction_at)) },
    ], rows) : empty('No conversations', 'Nothing matches these filters.'),
    page.length === params.limit ? h('button.more', { type: 'button', onclick: () => load(rows[rows.length - 1].id).catch(showError) }, 'Older conversations') : null);
  };
  await load(null);
}

export async function renderOne({ main, org, params }) {
  const r = await api.get(path`/orgs/${org.id}/conversations/${params.conv}`);
  const c = r.conversation;
  document.title = `Conversation ${c.user_id} · ${org.name}`;
  const end = async () => {
    if (!await confirmDialog('End conversation', 'Close this conversation? The user\'s next message starts a new one.', 'End conversation')) return;
    try { await api.post(path`/orgs/${org.id}/conversations/${c.id}/end`); toast('Conversation ended'); app.go(`#/o/${encodeURIComponent(org.id)}/conversations/${encodeURIComponent(c.id)}?e=1`); } catch (e) { showError(e); }
  };
  const transcript = h('div.transcript', { role: 'log', 'aria-label': 'Transcript' });
  let turn = null;
  for (const m of r.messages) {
    if (m.turn_id !== turn) { turn = m.turn_id; transcript.append(h('div.turn-sep', fmtTime(m.created_at))); }
    transcript.append(h('div.msg', { class: m.direction === 'RECEIVE' ? 'user' : 'bot', title: `${m.flow}/${m.step}` }, renderMessage(m.payload)));
  }
  if (!r.messages.length) transcript.append(h('p.muted', r.low_data_mode ? 'This bot keeps no transcripts (low-data mode).' : 'No messages.'));
  const dl = (pairs) => h('dl.meta', pairs.filter(([, v]) => v != null).map(([k, v]) => [h('dt', k), h('dd', v)]));
  main.append(
    h('div.crumbs', h('a', { href: `#/o/${encodeURIComponent(org.id)}/conversations` }, 'Conversations'), ' / ', h('span', c.user_id)),
    h('div.page-head', h('h1', `Conversation with ${c.user_id}`), badge(c.status, c.status === 'open' ? 'ok' : 'muted'),
      h('div.spacer'), c.status === 'open' && can(org.id, 'editor') ? h('button.danger', { type: 'button', onclick: end }, 'End conversation') : null),
    h('div.conv-layout', h('section.card.transcript-card', h('h2', 'Transcript'), transcript),
      h('aside.conv-side',
        h('section.card', h('h2', 'Details'), dl([
          ['Bot', h('a', { href: `#/o/${encodeURIComponent(org.id)}/bots/${encodeURIComponent(c.bot_id)}` }, r.bot_name || c.bot_id)],
          ['Channel', r.channel_name || c.channel_id],
          ['Position', h('code', `${c.flow}/${c.step}`)],
          ['Started', fmtTime(c.created_at)],
          ['Last message', fmtTime(c.last_interaction_at)],
          ['Ended', c.ended_at ? fmtTime(c.ended_at) : null],
          ['Build', c.version_id ? h('code', c.version_id.slice(0, 8)) : 'working copy'],
        ])),
        r.participant ? h('section.card', h('h2', 'Participant'), dl([
          ['Identifier', r.participant.identifier], ['Name', r.participant.name], ['Platform', r.participant.platform],
        ]), h('h3', 'Data'), h('pre.json', JSON.stringify(r.participant.data ?? {}, null, 2))) : null,
        h('section.card', h('h2', 'Memories'), h('pre.json', JSON.stringify(r.memories ?? {}, null, 2))),
        h('section.card', h('h2', 'Metadata'), h('pre.json', JSON.stringify(c.metadata ?? {}, null, 2))))));
}
