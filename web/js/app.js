// The admin UI shell: session bootstrap, hash routing (#/o/<org>/...), the top bar and the
// navigation. Pages live in ./pages/*.js and export `render(ctx)`.

import { h, clear, showError } from './dom.js';
import { api, setUnauthorizedHandler } from './api.js';
import * as login from './pages/login.js';
import * as orgs from './pages/orgs.js';
import * as bots from './pages/bots.js';
import * as bot from './pages/bot.js';
import * as conversations from './pages/conversations.js';
import * as participants from './pages/participants.js';
import * as apikeys from './pages/apikeys.js';
import * as plugins from './pages/plugins.js';
import * as usage from './pages/usage.js';
import * as members from './pages/members.js';

const ROUTES = [
  ['/login', login.render, { public: true }],
  ['/setup/:token', login.renderSetup, { public: true }],
  ['/orgs', orgs.render],
  ['/o/:org', bots.render, { nav: 'bots' }],
  ['/o/:org/bots', bots.render, { nav: 'bots' }],
  ['/o/:org/bots/:bot', bot.render, { nav: 'bots', tab: 'flows' }],
  ['/o/:org/bots/:bot/flows/:flow', bot.render, { nav: 'bots', tab: 'flows' }],
  ['/o/:org/bots/:bot/versions', bot.render, { nav: 'bots', tab: 'versions' }],
  ['/o/:org/bots/:bot/channels', bot.render, { nav: 'bots', tab: 'channels' }],
  ['/o/:org/bots/:bot/settings', bot.render, { nav: 'bots', tab: 'settings' }],
  ['/o/:org/bots/:bot/usage', bot.render, { nav: 'bots', tab: 'usage' }],
  ['/o/:org/conversations', conversations.render, { nav: 'conversations' }],
  ['/o/:org/conversations/:conv', conversations.renderOne, { nav: 'conversations' }],
  ['/o/:org/participants', participants.render, { nav: 'participants' }],
  ['/o/:org/apikeys', apikeys.render, { nav: 'apikeys' }],
  ['/o/:org/plugins', plugins.render, { nav: 'plugins' }],
  ['/o/:org/usage', usage.render, { nav: 'usage' }],
  ['/o/:org/members', members.render, { nav: 'members' }],
];

const NAV = [
  ['bots', 'Bots'],
  ['conversations', 'Conversations'],
  ['participants', 'Participants'],
  ['apikeys', 'API keys'],
  ['plugins', 'Plugins'],
  ['usage', 'Usage'],
  ['members', 'Members'],
];

export const app = {
  session: null,
  /** Reloads the session (after login, org creation, ...). */
  async refresh() {
    try { app.session = await api.get('/session'); } catch (e) { if (e.status !== 401) throw e; app.session = null; }
    return app.session;
  },
  go(hash) { if (location.hash === hash) route(); else location.hash = hash; },
  role(orgId) { return app.session?.orgs.find((o) => o.id === orgId)?.role || null; },
};

/** Can the current user do `need` (viewer < editor < owner) in the org? */
export function can(orgId, need) {
  const rank = { viewer: 1, editor: 2, owner: 3 };
  return (rank[app.role(orgId)] || 0) >= rank[need];
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [p, q = ''] = raw.split('?');
  const query = Object.fromEntries(new URLSearchParams(q));
  for (const [pattern, fn, opts = {}] of ROUTES) {
    const names = [];
    const re = new RegExp('^' + pattern.replace(/:(\w+)/g, (_, n) => { names.push(n); return '([^/]+)'; }) + '/?$');
    const m = re.exec(p);
    if (m) {
      const params = Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1])]));
      return { fn, opts, params, query, path: p };
    }
  }
  return null;
}

let routeSeq = 0;
async function route() {
  const seq = ++routeSeq;
  const root = document.getElementById('app');
  root.classList.remove('boot');
  const r = parseHash();
  if (!app.session && !(r && r.opts.public)) {
    await app.refresh().catch(showError);
    if (seq !== routeSeq) return;
    if (!app.session) {
      const setup = await api.get('/setup').catch(() => ({}));
      if (setup.needed && setup.has_token) { clear(root, h('main.center', h('div.card.narrow', h('h1', 'Welcome to botyard'), h('p', 'Open the one-time setup link printed in the server console to create the first admin account.')))); return; }
      app.go('#/login');
      return;
    }
  }
  if (!r || r.path === '/') {
    const first = app.session?.orgs[0];
    app.go(first ? `#/o/${encodeURIComponent(first.id)}/bots` : '#/orgs');
    return;
  }
  if (r.opts.public) {
    clear(root);
    const main = h('main.center#main', { tabindex: '-1' });
    root.append(main);
    await r.fn({ main, params: r.params, query: r.query }).catch(showError);
    return;
  }
  const org = r.params.org ? app.session.orgs.find((o) => o.id === r.params.org) : null;
  if (r.params.org && !org) {
    clear(root, shell(null, null, h('div.card', h('h1', 'Organization not found'), h('p', 'It does not exist or you are not a member.'), h('a.button', { href: '#/orgs' }, 'Organizations'))));
    return;
  }
  const main = h('main#main', { tabindex: '-1' });
  clear(root, shell(org, r.opts.nav, main));
  document.title = 'botyard admin';
  try {
    await r.fn({ main, params: r.params, query: r.query, org, role: org?.role, opts: r.opts, isCurrent: () => seq === routeSeq });
  } catch (e) {
    if (seq !== routeSeq) return;
    clear(main, h('div.card', h('h1', 'Something went wrong'), h('p', e.message || String(e))));
    showError(e);
  }
  if (seq === routeSeq && document.activeElement === document.body) main.focus({ preventScroll: true });
}

function shell(org, active, main) {
  const user = app.session?.user;
  const orgSelect = app.session?.orgs.length ? h('select.org-switch', {
    'aria-label': 'Organization',
    onchange: (e) => { if (e.target.value === '__all') app.go('#/orgs'); else app.go(`#/o/${encodeURIComponent(e.target.value)}/bots`); },
  },
  app.session.orgs.map((o) => h('option', { value: o.id, selected: org && o.id === org.id }, o.name)),
  h('option', { value: '__all', selected: !org }, 'All organizations…')) : null;
  const nav = org ? h('nav.sidebar', { 'aria-label': 'Sections' },
    h('ul', NAV.map(([key, label]) => h('li', h('a', {
      href: `#/o/${encodeURIComponent(org.id)}/${key}`,
      'aria-current': key === active ? 'page' : null,
    }, label))))) : null;
  return [
    h('header.topbar',
      h('a.brand', { href: '#/' }, h('img', { src: 'favicon.svg', alt: '', width: 24, height: 24 }), h('span', 'botyard')),
      orgSelect,
      h('div.spacer'),
      user ? h('span.user', { title: org ? `Role: ${org.role}` : '' }, user.email, org ? h('span.badge', org.role) : null) : null,
      user ? h('button.ghost', { type: 'button', onclick: logout }, 'Log out') : null),
    h('div.layout', { class: nav ? '' : 'no-nav' }, nav, main),
  ];
}

async function logout() {
  try { await api.post('/logout'); } catch (e) { showError(e); }
  app.session = null;
  app.go('#/login');
}

setUnauthorizedHandler(() => { app.session = null; app.go('#/login'); });
window.addEventListener('hashchange', route);
route();
