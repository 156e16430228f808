// Drives the real headless Chromium (Debian's /usr/bin/chromium) through the admin page behind
// a real Apache with basic auth: log in, add a metric, test it, save it, deploy it, see it in
// the scrape. Started by tests/browser.rs, which sets up Apache, the exporter and the database
// and checks the results again from its side.
//
// Environment: BASE (http://127.0.0.1:PORT), ADMIN and METRICS (paths), AUTH_USER, AUTH_PASS,
// METRIC (name to create), SQL, SCREENSHOT_DIR. Exits non-zero with a message on any failure.
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing environment variable ${k}`);
  return v;
};
const base = env('BASE');
const admin = base + env('ADMIN');
const metrics = base + env('METRICS');
const metric = env('METRIC');
const shots = env('SCREENSHOT_DIR');

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // Root in CI: Chromium's sandbox needs an unprivileged user.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let page;
try {
  // Without credentials Apache answers 401.
  const anon = await browser.newContext();
  const r401 = await anon.request.get(admin);
  check(r401.status() === 401, 'without credentials the admin page asks for basic auth (401)');
  await anon.close();

  const ctx = await browser.newContext({
    httpCredentials: { username: env('AUTH_USER'), password: env('AUTH_PASS') },
    viewport: { width: 1200, height: 800 },
    javaScriptEnabled: false, // the page must work without it
  });
  page = await ctx.newPage();
  const first = await page.goto(admin);
  check(first.status() === 200, 'logged in: admin page 200');
  check((await page.locator('h1').innerText()).includes('Custom SQL metrics'), 'list page shown');
  const csp = first.headers()['content-security-policy'] || '';
  check(csp.includes("frame-ancestors 'none'"), 'Content-Security-Policy sent');

  // Add a metric and test it from the form.
  await page.click('text=Add metric');
  await page.fill('#name', metric);
  await page.fill('#help', 'Tickets per queue, from the browser test.');
  await page.fill('#sql', env('SQL'));
  await page.click('button[value=test]');
  const out = await page.locator('#test-output').innerText();
  check(out.includes(`${metric}{queue=`), `test shows the series: ${out.split('\n')[2]}`);
  await page.screenshot({ path: `${shots}/admin-test.png`, fullPage: true });

  // Save: back on the list (Post/Redirect/Get) with a success message.
  await page.click('button[value=save]');
  check(page.url() === admin, 'redirected to the list after saving');
  check((await page.locator('.flash.ok').innerText()).includes(`Saved ${metric}`), 'saved message');
  check((await page.locator('table').innerText()).includes('not deployed'), 'listed as not deployed');

  // Not in the scrape before the deploy.
  let scrape = await (await ctx.request.get(metrics)).text();
  check(!scrape.includes(`${metric}{`), 'not scraped before deploy');

  await page.click('button:has-text("Deploy")');
  check((await page.locator('.flash.ok').innerText()).includes('Deployed 1 metric'), 'deployed message');
  check((await page.locator('table').innerText()).includes('deployed'), 'listed as deployed');

  scrape = await (await ctx.request.get(metrics)).text();
  const line = scrape.split('\n').find((l) => l.startsWith(`${metric}{`));
  check(line !== undefined, `scraped after deploy: ${line}`);

  // The list now shows the last result of the deployed metric.
  await page.goto(admin);
  check((await page.locator('table').innerText()).includes('series'), 'last result shown');
  await page.screenshot({ path: `${shots}/admin.png`, fullPage: true });

  // Invalid SQL: the test shows the database's error (escaped), nothing is saved.
  await page.click('text=Add metric');
  await page.fill('#name', 'otrs_site_broken');
  await page.fill('#help', 'Broken on purpose.');
  await page.fill('#sql', 'SELECT <b>1</b> FROM ticket');
  await page.click('button[value=test]');
  const err = await page.locator('#test-error').innerText();
  check(err.includes('syntax error at or near "<"'), `database error shown as text: ${err}`);
  check((await page.locator('#test-error b').count()) === 0, 'no markup from the input');
  await page.screenshot({ path: `${shots}/admin-error.png`, fullPage: true });
  console.log('browser test passed');
} catch (e) {
  if (page) await page.screenshot({ path: `${shots}/admin-failure.png`, fullPage: true }).catch(() => {});
  console.error(String(e && e.stack || e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
