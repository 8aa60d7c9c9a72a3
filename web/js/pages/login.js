// Login, and the one-time setup page that creates the first admin account.

import { h, field, showError } from '../dom.js';
import { api } from '../api.js';
import { app } from '../app.js';

export async function render({ main }) {
  document.title = 'Log in · botyard';
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const error = h('p.form-error', { role: 'alert' });
  const submit = h('button.primary', { type: 'submit' }, 'Log in');
  main.append(h('div.card.narrow.login',
    h('div.brand-big', h('img', { src: 'favicon.svg', alt: '', width: 40, height: 40 }), h('span', 'botyard')),
    h('h1', 'Log in to the admin'),
    h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        error.textContent = '';
        submit.disabled = true;
        try {
          await api.post('/login', { email: email.value, password: password.value });
          await app.refresh();
          app.go('#/');
        } catch (e) {
          error.textContent = e.status === 429 ? `Too many attempts. ${e.message}` : (e.message || 'Login failed');
          password.select();
        } finally { submit.disabled = false; }
      },
    }, field('Email', email), field('Password', password), error, submit)));
  email.focus();
}

export async function renderSetup({ main, params }) {
  document.title = 'Set up · botyard';
  const email = h('input', { type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: 10 });
  const again = h('input', { type: 'password', autocomplete: 'new-password', required: true, minlength: 10 });
  const error = h('p.form-error', { role: 'alert' });
  main.append(h('div.card.narrow.login',
    h('div.brand-big', h('img', { src: 'favicon.svg', alt: '', width: 40, height: 40 }), h('span', 'botyard')),
    h('h1', 'Create the first admin'),
    h('p.muted', 'This account will own every organization on this server. The link works once.'),
    h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        error.textContent = '';
        if (password.value !== again.value) { error.textContent = 'The passwords do not match.'; return; }
        try {
          await api.post('/setup', { token: params.token, email: email.value, password: password.value });
          await app.refresh();
          history.replaceState(null, '', '#/');
          app.go('#/');
        } catch (e) { error.textContent = e.message; showError(e); }
      },
    }, field('Email', email), field('Password', password, 'At least 10 characters.'), field('Repeat password', again), error,
    h('button.primary', { type: 'submit' }, 'Create account'))));
  email.focus();
}
