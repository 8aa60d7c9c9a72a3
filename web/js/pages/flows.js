// The flow editor tab: the list of flows, the editor with live validation (errors inline at
// their line and column, and in a problems list), commands, save and build, and the try-it chat
// panel that talks to the saved working copy.

import { h, clear, field, dialog, toast, showError, confirmDialog, debounce, badge } from '../dom.js';
import { api, path } from '../api.js';
import { app, can } from '../app.js';
import { codeEditor } from '../editor.js';
import { reason } from '../csml.js';
import { renderMessage, userText } from '../messages.js';

let dirtyGuard = null;
window.addEventListener('beforeunload', (ev) => { if (dirtyGuard?.()) { ev.preventDefault(); ev.returnValue = ''; } });

export async function render({ main, org, params, data, base }) {
  const b = data.bot;
  const flows = data.flows;
  const canEdit = can(org.id, 'editor');
  const flow = flows.find((f) => f.id === params.flow || f.name === params.flow)
    || flows.find((f) => f.id === b.default_flow_id) || flows[0];
  const orgP = org.id;
  const botP = b.id;

  const flowList = h('nav.flow-list', { 'aria-label': 'Flows' },
    h('div.flow-list-head', h('h2', 'Flows'),
      canEdit ? h('button.small', { type: 'button', onclick: newFlow, 'aria-label': 'New flow' }, '+ New') : null),
    h('ul', flows.map((f) => h('li', h('a', {
      href: `${base}/flows/${encodeURIComponent(f.id)}`,
      'aria-current': flow && f.id === flow.id ? 'page' : null,
      onclick: (ev) => { if (dirty && !confirm('Discard unsaved changes?')) ev.preventDefault(); },
    }, f.name, f.id === b.default_flow_id ? h('span.badge.small', { title: 'Default flow' }, 'default') : null)))));

  const layout = h('div.flow-layout');
  main.append(layout);
  if (!flow) {
    layout.append(flowList, h('div.card', h('p', 'This bot has no flows.')));
    return;
  }

  let dirty = false;
  let saved = flow.content;
  dirtyGuard = () => dirty;
  const status = h('span.save-status', { role: 'status' }, 'Saved');
  const problems = h('div.problems', { 'aria-live': 'polite' });
  const editor = codeEditor({
    value: flow.content,
    label: `CSML source of flow ${flow.name}`,
    onInput: (v) => { setDirty(v !== saved); validateSoon(); },
    onSave: () => save(),
  });
  if (!canEdit) editor.textarea.readOnly = true;

  const commands = h('input.mono', { value: (flow.commands || []).join(', '), 'aria-label': 'Commands', readonly: !canEdit, placeholder: '/help, menu', oninput: () => setDirty(true) });
  const saveBtn = h('button.primary', { type: 'button', onclick: () => save(), disabled: !canEdit, title: 'Ctrl+S' }, 'Save');
  const buildBtn = h('button', { type: 'button', onclick: build, disabled: !canEdit }, 'Build');
  const more = canEdit ? h('details.menu', h('summary', { 'aria-label': 'More flow actions' }, '⋯'),
    h('div.menu-items',
      h('button', { type: 'button', onclick: renameFlow }, 'Rename flow'),
      h('button.danger', { type: 'button', onclick: deleteFlow, disabled: flows.length < 2 }, 'Delete flow'))) : null;

  const editorCol = h('section.editor-col', { 'aria-label': `Flow ${flow.name}` },
    h('div.editor-toolbar',
      h('h2.flow-name', flow.name),
      status, h('div.spacer'), more, buildBtn, saveBtn),
    h('div.commands-row', h('label', { for: 'flow-commands' }, 'Commands'), Object.assign(commands, { id: 'flow-commands' }),
      h('small.hint', 'Comma-separated; /' + flow.name.toLowerCase() + ' is always added.')),
    editor.el,
    h('p.hint#editor-help', 'Tab indents; press Esc then Tab to leave the editor. Ctrl+S saves.'),
    problems);

  const tryit = tryPanel(org, b, () => (dirty ? save() : Promise.resolve()), canEdit);
  layout.append(flowList, editorCol, tryit.el);

  function setDirty(d) {
    dirty = d;
    status.textContent = d ? 'Unsaved changes' : 'Saved';
    status.classList.toggle('dirty', d);
  }

  const validateSoon = debounce(validate, 350);
  let validation = 0;
  async function validate() {
    const seq = ++validation;
    const body = { flows: flows.map((f) => ({ name: f.name, content: f.id === flow.id ? editor.value : f.content, commands: f.commands })) };
    try {
      const r = await api.post(path`/orgs/${orgP}/bots/${botP}/validate`, body);
      if (seq !== validation) return;
      showProblems(r);
    } catch (e) { if (seq === validation) showError(e); }
  }

  function showProblems(r) {
    const all = [
      ...(r.errors || []).map((d) => ({ ...d, severity: 'error' })),
      ...(r.warnings || []).map((d) => ({ ...d, severity: 'warning' })),
    ];
    const mine = all.filter((d) => d.flow === flow.name);
    editor.setDiagnostics(mine);
    const nErr = (r.errors || []).length;
    const nWarn = (r.warnings || []).length;
    clear(problems,
      h('h3', nErr ? `${nErr} error${nErr > 1 ? 's' : ''}` : 'No errors', nWarn ? ` · ${nWarn} warning${nWarn > 1 ? 's' : ''}` : '',
        nErr ? null : h('span.ok-mark', { 'aria-hidden': 'true' }, ' ✓')),
      all.length ? h('ul', all.map((d) => h('li', { class: d.severity },
        h('button.linkish', {
          type: 'button',
          onclick: () => {
            if (d.flow === flow.name) editor.focusAt(d.line, d.column);
            else { const f = flows.find((x) => x.name === d.flow); if (f) app.go(`${base}/flows/${encodeURIComponent(f.id)}`); }
          },
        }, h('span.loc', `${d.flow}:${d.line}:${d.column}`), ' ', reason(d.message))))) : null);
  }

  async function save() {
    if (!canEdit) return;
    const cmds = commands.value.split(',').map((s) => s.trim()).filter(Boolean);
    const content = editor.value;
    try {
      const f = await api.put(path`/orgs/${orgP}/bots/${botP}/flows/${flow.id}`, { content, commands: cmds });
      saved = content;
      flow.content = content;
      flow.commands = f.commands;
      setDirty(editor.value !== saved);
      toast('Saved');
    } catch (e) { showError(e); throw e; }
  }

  async function build() {
    try {
      if (dirty) await save();
      const v = await api.post(path`/orgs/${orgP}/bots/${botP}/build`);
      toast(`Build #${v.seq} created and serving`);
      app.go(`${base}/versions`);
    } catch (e) {
      if (e.body?.errors) showProblems({ errors: e.body.errors, warnings: [] });
      showError(e);
    }
  }

  async function newFlow() {
    const name = h('input', { required: true, pattern: '[A-Za-z0-9_\\-]+', title: 'Letters, digits, _ and -' });
    const f = await dialog('New flow', field('Name', name, 'Letters, digits, _ and -.'), [{
      label: 'Create flow', primary: true, submit: true,
      onclick: () => api.post(path`/orgs/${orgP}/bots/${botP}/flows`, { name: name.value.trim() }),
    }]);
    if (f) app.go(`${base}/flows/${encodeURIComponent(f.id)}`);
  }

  async function renameFlow() {
    const name = h('input', { required: true, value: flow.name });
    const f = await dialog('Rename flow', field('Name', name), [{
      label: 'Rename', primary: true, submit: true,
      onclick: () => api.put(path`/orgs/${orgP}/bots/${botP}/flows/${flow.id}`, { name: name.value.trim() }),
    }]);
    if (f) { toast('Renamed'); app.go(`${base}/flows/${encodeURIComponent(f.id)}?r=${Date.now()}`); }
  }

  async function deleteFlow() {
    if (!await confirmDialog('Delete flow', `Delete flow ${flow.name}? Builds keep their copy.`, 'Delete')) return;
    try {
      await api.del(path`/orgs/${orgP}/bots/${botP}/flows/${flow.id}`);
      dirty = false;
      app.go(base);
    } catch (e) { showError(e); }
  }

  validate();
}

/** The try-it chat: runs turns on the working copy as a per-admin test user. */
function tryPanel(org, b, beforeSend, allowed) {
  const log = h('div.chat-log', { role: 'log', 'aria-label': 'Conversation', 'aria-live': 'polite' });
  const input = h('input', { 'aria-label': 'Message to the bot', placeholder: 'Say something…', autocomplete: 'off' });
  const sendBtn = h('button.primary', { type: 'submit' }, 'Send');
  const convLink = h('a.small', { hidden: true }, 'transcript');
  const el = h('aside.try-panel', { 'aria-label': 'Try it' },
    h('div.try-head', h('h2', 'Try it'), badge('working copy', 'muted'), h('div.spacer'), convLink,
      h('button.small', { type: 'button', onclick: restart, disabled: !allowed, title: 'End the conversation and start over' }, 'Restart')),
    log,
    h('form.chat-input', { onsubmit: (ev) => { ev.preventDefault(); const t = input.value.trim(); if (t) send({ content_type: 'text', content: { text: t } }); } },
      input, sendBtn));
  const empty = h('p.muted.chat-empty', allowed
    ? 'Send a message to start a conversation with the working copy of this bot.'
    : 'Trying the bot needs the editor role in this organization.');
  log.append(empty);
  if (!allowed) { input.disabled = true; sendBtn.disabled = true; }

  async function send(event) {
    empty.remove();
    sendBtn.disabled = true;
    log.append(h('div.msg.user', renderMessage(event)));
    input.value = '';
    log.scrollTop = log.scrollHeight;
    try {
      await beforeSend();
      const r = await api.post(path`/orgs/${org.id}/bots/${b.id}/try`, { event });
      for (const m of r.messages || []) log.append(h('div.msg.bot', renderMessage(m, { onButton: (btn) => send({ content_type: 'payload', content: { payload: btn.payload ?? btn.title, text: btn.title } }) })));
      if (r.conversation_id) {
        convLink.hidden = false;
        convLink.href = `#/o/${encodeURIComponent(org.id)}/conversations/${encodeURIComponent(r.conversation_id)}`;
      }
    } catch (e) {
      log.append(h('div.msg.bot', renderMessage({ content_type: 'error', content: { error: e.message } })));
    } finally {
      sendBtn.disabled = false;
      log.scrollTop = log.scrollHeight;
      input.focus();
    }
  }

  async function restart() {
    try {
      await api.post(path`/orgs/${org.id}/bots/${b.id}/try/reset`);
      clear(log, empty);
      convLink.hidden = true;
      input.focus();
    } catch (e) { showError(e); }
  }

  return { el, userText };
}
