// Headless-Chromium test of fulcrum's admin dashboard, run by tests/integration/test_dashboard.py
// against a fulcrum it started. Debian's /usr/bin/chromium is driven by playwright-core (which
// downloads no browser of its own):
//   1. the page loads (asking for the admin token first when one is set) with no script errors;
//   2. every expected server is listed with a state;
//   3. a click on "Drain" changes that server's state on the page, and the API agrees;
//   4. a screenshot goes to the path given.
// Usage: node dashboard_test.js --url URL --servers b/s1,b/s2 --drain b/s1 --screenshot PNG [--token T]
//        [--scheme dark] [--settle MS]
// Prints one JSON line with what it saw; exit code 0 on success, 1 on failure.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

function args() {
  const out = {};
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 2) out[a[i].replace(/^--/, '')] = a[i + 1];
  for (const k of ['url', 'servers', 'drain', 'screenshot'])
    if (!out[k]) throw new Error(`missing --${k}`);
  return out;
}

async function api(base, p, token) {
  const res = await fetch(base + p, { headers: token ? { Authorization: 'Bearer ' + token } : {} });
  if (!res.ok) throw new Error(`${p}: HTTP ${res.status}`);
  return res.json();
}

async function main() {
  const opt = args();
  const expected = opt.servers.split(',');
  const [drainBackend, drainServer] = opt.drain.split('/');
  const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'fulcrum-chromium-'));
  const errors = [];
  const context = await chromium.launchPersistentContext(userData, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1440, height: 1000 },
    colorScheme: opt.scheme === 'dark' ? 'dark' : 'light',
    deviceScaleFactor: 1,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
  const result = { ok: false };
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(15000);
    page.on('pageerror', (e) => errors.push('page error: ' + e.message));
    page.on('console', (m) => {
      // A 401 before the token is given is the page working as meant; anything else is not.
      if (m.type() === 'error' && !/401/.test(m.text())) errors.push('console: ' + m.text());
    });
    await page.goto(opt.url, { waitUntil: 'load' });

    if (opt.token) {
      await page.waitForSelector('#token-bar:not(.hidden)');
      result.asked_for_token = true;
      await page.fill('#token-input', 'not-the-token');
      await page.click('#token-form button[type=submit]');
      await page.waitForFunction(() => /refused/.test(document.getElementById('token-error').textContent));
      result.wrong_token_refused = true;
      await page.fill('#token-input', opt.token);
      await page.click('#token-form button[type=submit]');
      await page.waitForSelector('#token-bar.hidden', { state: 'attached' });
    }

    // Every server listed, each with a state.
    await page.waitForFunction((n) => document.querySelectorAll('tr[data-server][data-state]').length >= n, expected.length);
    result.listed = await page.$$eval('tr[data-server]', (rows) =>
      rows.map((r) => r.closest('.backend').dataset.backend + '/' + r.dataset.server + '=' + r.dataset.state));
    for (const e of expected)
      if (!result.listed.some((l) => l.startsWith(e + '=')))
        throw new Error(`server ${e} not listed (saw ${result.listed.join(', ')})`);

    // Drain one with a click; the page shows it, and so does the API.
    const row = `.backend[data-backend="${drainBackend}"] tr[data-server="${drainServer}"]`;
    result.before = await page.getAttribute(row, 'data-state');
    await page.click(`${row} button[data-action="drain"]`);
    await page.waitForSelector(`${row}[data-state="drain"]`);
    await page.waitForSelector(`${row} button[data-action="up"]`);
    result.after = 'drain';
    const backends = await api(new URL(opt.url).origin, '/api/v1/backends', opt.token);
    const s = backends.backends.find((b) => b.name === drainBackend).servers.find((x) => x.name === drainServer);
    result.api_state = s.state;
    if (s.state !== 'drain') throw new Error(`API says ${drainBackend}/${drainServer} is ${s.state}, not drain`);
    // The state change shows in the events list.
    await page.waitForFunction((name) => document.getElementById('events').textContent.includes(name), `${drainBackend}/${drainServer}`);

    // Let the charts gather a few points of the test's traffic, then keep a picture.
    await page.waitForFunction(() => document.querySelectorAll('#chart-rps path.series').length > 0, null, { timeout: 20000 });
    await page.waitForTimeout(Number(opt.settle || 4000));
    fs.mkdirSync(path.dirname(opt.screenshot), { recursive: true });
    await page.screenshot({ path: opt.screenshot, fullPage: true });
    result.screenshot = opt.screenshot;
    if (errors.length) throw new Error(errors.join('; '));
    result.ok = true;
  } catch (e) {
    result.error = String(e && e.message ? e.message : e);
    result.errors = errors;
  } finally {
    await context.close();
    fs.rmSync(userData, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: String(e) }));
  process.exit(1);
});
