// End-to-end test of the admin UI in a real headless Chromium, driven by playwright-core.
// Run by tests/admin_e2e.rs, which starts the real server and passes:
//   BASE_URL (http://127.0.0.1:PORT), SETUP_LINK (the console's one-time link),
//   SCREENSHOTS (directory for PNGs), CHROMIUM (browser executable).
// The story: create the first admin through the setup link, log out, log in with the keyboard,
// create a bot, type a flow with an error and see it inline, fix it, save, build, chat in the
// try-it panel (buttons, card, image), find the conversation in the transcript list, end it,
// then visit every page (desktop and phone width) for screenshots. Any console error, page
// error or CSP violation fails the run.

import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BASE = process.env.BASE_URL;
const SETUP = process.env.SETUP_LINK;
const SHOTS = process.env.SCREENSHOTS;
const EMAIL = 'e2e-admin@example.com';
const PASSWORD = 'correct horse battery staple';

const FLOW_WITH_ERROR = 'start:\n  say "Hello from e2e\n  goto end\n';
const IMAGE = 'data:image/svg+xml;base64,' + Buffer.from(
  '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="60"><rect width="120" height="60" fill="#0f766e"/></svg>').toString('base64');
const GOOD_FLOW = `// A flow written by the e2e test.
start:
  say "Hello from e2e"
  say Question("Pick a color", buttons = [Button("Red"), Button("Blue")])
  hold
  say "You picked {{event}}"
  say Card("A card", subtitle = "with a subtitle", buttons = [Button("OK")])
  say Image("${IMAGE}")
  goto end
`;

const problems = [];
let step = 'start';
const log = (m) => console.log(`[e2e] ${m}`);

function fail(message) {
  throw new Error(`${step}: ${message}`);
}

async function shot(page, name) {
  await page.waitForTimeout(150);
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
  log(`screenshot ${name}.png`);
}

async function main() {
  if (!BASE || !SETUP || !SHOTS) throw new Error('BASE_URL, SETUP_LINK and SCREENSHOTS are required');
  mkdirSync(SHOTS, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'botyard-e2e-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
    timeout: 60_000,
  });
  try {
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`console error at ${step}: ${m.text()}`);
      if (/Content Security Policy/i.test(m.text())) problems.push(`CSP violation at ${step}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error at ${step}: ${e.message}`));
    await run(page);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  if (problems.length) throw new Error('browser problems:\n' + problems.join('\n'));
  log('all steps passed');
}

async function run(page) {
  // 1. First admin through the one-time setup link.
  step = 'setup';
  await page.goto(SETUP);
  await page.getByRole('heading', { name: 'Create the first admin' }).waitFor();
  await shot(page, '01-setup');
  await page.getByLabel('Email').fill(EMAIL);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Repeat password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Bots' }).waitFor();
  log('first admin created');

  // The link works once.
  step = 'setup-again';
  const again = await page.evaluate(async (token) => {
    const r = await fetch('/_/api/setup', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token, email: 'x@example.com', password: 'another password 1' }) });
    return r.status;
  }, SETUP.split('/setup/')[1]);
  if (again !== 403) fail(`a second setup answered ${again}, want 403`);

  // 2. Log out, then log in with the keyboard only (wrong password first).
  step = 'logout';
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Log in to the admin' }).waitFor();
  step = 'login';
  await page.keyboard.type(EMAIL); // the email field has focus
  await page.keyboard.press('Tab');
  await page.keyboard.type('wrong password!');
  await page.keyboard.press('Enter');
  await page.getByText('wrong e-mail or password').waitFor();
  await shot(page, '02-login-error');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByLabel('Password').press('Enter');
  await page.getByRole('heading', { name: 'Bots' }).waitFor();
  const cookies = await page.context().cookies();
  const sess = cookies.find((c) => c.name === 'botyard_session');
  if (!sess || !sess.httpOnly || sess.sameSite !== 'Strict') fail(`session cookie not HttpOnly+Strict: ${JSON.stringify(sess)}`);
  await shot(page, '03-bots');

  // 3. Create a bot.
  step = 'create-bot';
  await page.getByRole('button', { name: 'New bot' }).click();
  await page.getByRole('dialog').getByLabel('Name').fill('E2E bot');
  await page.getByRole('button', { name: 'Create bot' }).click();
  await page.getByRole('heading', { name: 'E2E bot' }).waitFor();
  await page.locator('.problems').getByText('No errors').waitFor();
  log('bot created; the default flow validates');

  // 4. A flow with an error: the error shows inline at its line.
  step = 'flow-error';
  const editor = page.getByLabel('CSML source of flow Default');
  await editor.fill(FLOW_WITH_ERROR);
  await page.locator('.line.has-error').first().waitFor();
  const inline = await page.locator('.inline-msg').first().textContent();
  if (!/expecting '"' to end string/.test(inline)) fail(`inline message: ${inline}`);
  const errLine = await page.locator('.line').evaluateAll((ls) => ls.findIndex((l) => l.classList.contains('has-error')) + 1);
  if (errLine !== 2) fail(`error shown on line ${errLine}, want 2`);
  const loc = await page.locator('.problems .loc').first().textContent();
  if (!loc.startsWith('Default:2:')) fail(`problem location ${loc}`);
  if (await page.locator('.gl.error').count() !== 1) fail('no gutter marker');
  await page.locator('.save-status', { hasText: 'Unsaved changes' }).waitFor();
  await shot(page, '04-flow-error');

  // Clicking the problem moves the caret to the error.
  await page.locator('.problems button').first().click();
  const caret = await editor.evaluate((t) => t.selectionStart);
  if (caret !== FLOW_WITH_ERROR.indexOf('"')) fail(`caret at ${caret}, want ${FLOW_WITH_ERROR.indexOf('"')}`);

  // 5. Fix it, save with Ctrl+S.
  step = 'flow-fix';
  await editor.fill(GOOD_FLOW);
  await page.locator('.problems').getByText('No errors').waitFor();
  if (await page.locator('.line.has-error').count() !== 0) fail('error still shown');
  await editor.press('Control+s');
  await page.locator('.save-status', { hasText: /^Saved$/ }).waitFor();
  const kinds = await page.locator('pre.hl span').evaluateAll((s) => [...new Set(s.map((x) => x.className.split(' ')[0]))]);
  for (const k of ['tok-step', 'tok-keyword', 'tok-string', 'tok-fn', 'tok-comment', 'tok-interp']) {
    if (!kinds.includes(k)) fail(`no ${k} highlighting (have ${kinds})`);
  }
  await shot(page, '05-flow-ok');

  // 6. Build.
  step = 'build';
  await page.getByRole('button', { name: 'Build', exact: true }).click();
  await page.getByRole('heading', { name: 'Versions' }).waitFor();
  await page.locator('tr.live').getByText('#1').waitFor();
  await shot(page, '06-versions');

  // 7. Try it: text, buttons, card, image.
  step = 'try-it';
  await page.getByRole('navigation', { name: 'Bot sections' }).getByRole('link', { name: 'Flows' }).click();
  const chat = page.getByRole('complementary', { name: 'Try it' });
  await chat.getByLabel('Message to the bot').fill('hi');
  await chat.getByLabel('Message to the bot').press('Enter');
  await chat.getByText('Hello from e2e').waitFor();
  await chat.getByText('Pick a color').waitFor();
  await chat.getByRole('button', { name: 'Blue' }).click();
  await chat.getByText('You picked Blue').waitFor();
  await chat.locator('.msg-card .card-title', { hasText: 'A card' }).waitFor();
  await chat.locator('.msg-media img').waitFor();
  const imgOk = await chat.locator('.msg-media img').evaluate((i) => i.complete && i.naturalWidth > 0);
  if (!imgOk) fail('the image did not load');
  await shot(page, '07-try-it');

  // 8. The conversation in the transcript list.
  step = 'conversations';
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Conversations' }).click();
  await page.getByRole('heading', { name: 'Conversations' }).waitFor();
  const row = page.locator('tbody tr', { hasText: `admin:${EMAIL}` });
  await row.first().waitFor();
  await shot(page, '08-conversations');
  // Filtering by status keeps it (closed: the flow reached `goto end`).
  await page.getByLabel('Status').selectOption('closed');
  await page.locator('tbody tr', { hasText: `admin:${EMAIL}` }).first().waitFor();
  await page.getByLabel('Status').selectOption('open');
  await page.getByText('No conversations').waitFor();
  await page.getByLabel('Status').selectOption('');
  await page.locator('tbody tr', { hasText: `admin:${EMAIL}` }).first().getByRole('link').click();
  const transcript = page.getByRole('log', { name: 'Transcript' });
  await transcript.getByText('Hello from e2e').waitFor();
  await transcript.getByText('You picked Blue').waitFor();
  await transcript.locator('.msg.user', { hasText: 'hi' }).first().waitFor();
  await transcript.locator('.msg-card', { hasText: 'A card' }).waitFor();
  await shot(page, '09-transcript');

  // 9. A conversation left open (hold) can be ended from the UI.
  step = 'end-conversation';
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Bots' }).click();
  await page.getByRole('link', { name: 'E2E bot' }).click();
  const chat2 = page.getByRole('complementary', { name: 'Try it' });
  await chat2.getByLabel('Message to the bot').fill('again');
  await chat2.getByRole('button', { name: 'Send' }).click();
  await chat2.getByText('Pick a color').waitFor();
  await chat2.getByRole('link', { name: 'transcript' }).click();
  await page.getByRole('button', { name: 'End conversation' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'End conversation' }).click();
  await page.locator('.page-head .badge', { hasText: 'closed' }).waitFor();

  // 10. Every other page, for screenshots (and console checks).
  step = 'pages';
  const org = new URL(page.url()).hash.split('/')[2];
  const botId = await page.evaluate(async (o) => (await (await fetch(`/_/api/orgs/${o}/bots`)).json()).find((b) => b.name === 'E2E bot').id, org);
  const visit = async (hash, heading, name) => {
    step = `page ${name}`;
    await page.goto(`${BASE}/_/#${hash}`);
    await page.getByRole('heading', { name: heading, exact: true }).first().waitFor();
    await shot(page, name);
  };
  await visit(`/o/${org}/bots/${botId}/channels`, 'Studio API channels', '10-channels');
  // A new API channel shows its secret once.
  step = 'channel-create';
  await page.getByRole('button', { name: 'New API channel' }).click();
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'Channel created' }).waitFor();
  const secret = await page.getByLabel('Copy value').nth(1).inputValue();
  if (!secret) fail('no secret shown');
  await shot(page, '11-channel-secret');
  await page.getByRole('button', { name: 'Done' }).click();
  await page.locator('tbody tr', { hasText: 'API' }).first().waitFor();
  // A web chat embed with allowed origins.
  step = 'web-embed';
  await page.getByRole('button', { name: 'New embed' }).click();
  await page.getByRole('dialog').getByLabel('Allowed origins').fill('example.com\n*.example.org');
  await page.getByRole('dialog').getByRole('button', { name: 'Create' }).click();
  await page.getByRole('cell', { name: 'example.com, *.example.org' }).waitFor();
  await shot(page, '11b-channels-filled');
  // A Telegram connector channel: its fields come from the plugin's manifest; the answer is
  // the webhook URL to paste into the platform.
  step = 'connector';
  await page.getByRole('button', { name: 'Connect telegram' }).click();
  await page.getByRole('dialog').getByLabel('bot_token (secret)').fill('123:e2e-token');
  await page.getByRole('dialog').getByRole('button', { name: 'Connect', exact: true }).click();
  await page.getByRole('heading', { name: 'Connected' }).waitFor();
  const hookUrl = await page.getByRole('dialog').getByLabel('Copy value').inputValue();
  if (!/\/hooks\/[\w-]+$/.test(hookUrl)) fail(`webhook URL ${hookUrl}`);
  await shot(page, '11c-connector-webhook');
  await page.getByRole('button', { name: 'Done' }).click();
  await page.getByRole('cell', { name: 'bot_token' }).waitFor();
  if (await page.getByText('123:e2e-token').count() !== 0) fail('the secret is shown');
  await visit(`/o/${org}/bots/${botId}/settings`, 'Environment variables', '12-settings');
  await visit(`/o/${org}/bots/${botId}/usage`, 'Messages per day', '13-bot-usage');
  const bars = await page.locator('svg.chart rect.bar:not(.zero)').count();
  if (bars < 1) fail('the usage chart has no bar for today');
  await visit(`/o/${org}/usage`, 'Usage', '14-org-usage');
  await visit(`/o/${org}/members`, 'Members', '15-members');
  await visit(`/o/${org}/apikeys`, 'API keys', '16-apikeys');
  await visit(`/o/${org}/participants`, 'Participants', '17-participants');
  await visit(`/o/${org}/plugins`, 'Plugins', '18-plugins');
  await page.getByRole('article', { name: 'telegram plugin' }).getByRole('button', { name: 'Settings' }).waitFor();
  await visit('/orgs', 'Organizations', '19-orgs');
  // A second build, the diff between the two, and a roll back to #1.
  step = 'versions';
  await visit(`/o/${org}/bots/${botId}`, 'E2E bot', '20a-flow');
  const ed = page.getByLabel('CSML source of flow Default');
  await ed.fill(GOOD_FLOW.replace('Hello from e2e', 'Hello again'));
  await page.locator('.problems').getByText('No errors').waitFor();
  await page.getByRole('button', { name: 'Build', exact: true }).click();
  await page.locator('tr.live').getByText('#2').waitFor();
  await page.locator('pre.diff .ddel', { hasText: 'Hello from e2e' }).waitFor();
  await page.locator('pre.diff .dadd', { hasText: 'Hello again' }).waitFor();
  await shot(page, '20-versions-diff');
  await page.getByRole('button', { name: 'Roll back to this' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Roll back' }).click();
  await page.locator('tr.live').getByText('#1').waitFor();
  await page.locator('.bot-head .badge', { hasText: 'serving build #1' }).waitFor();

  // 11. Phone width.
  step = 'phone';
  await page.setViewportSize({ width: 390, height: 844 });
  await visit(`/o/${org}/bots`, 'Bots', '21-phone-bots');
  await visit(`/o/${org}/bots/${botId}`, 'E2E bot', '22-phone-flow');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 2) fail(`the flow page scrolls sideways by ${overflow}px at phone width`);
  await visit(`/o/${org}/conversations`, 'Conversations', '23-phone-conversations');

  // 12. Dark color scheme (follows the system setting).
  step = 'dark';
  await page.setViewportSize({ width: 1280, height: 860 });
  await page.emulateMedia({ colorScheme: 'dark' });
  await visit(`/o/${org}/bots/${botId}`, 'E2E bot', '24-dark-flow');
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  if (bg === 'rgb(246, 247, 249)') fail('the dark scheme did not apply');
}

main().catch((e) => {
  console.error(`[e2e] FAILED: ${e.stack || e}`);
  if (problems.length) console.error(problems.join('\n'));
  process.exit(1);
});
