// The demo's dashboard: "Make it fail" on app1 makes its health checks fail (the row shows it
// down and offers "Recover"), and "Recover" brings it back. Usage: node demo_test.js URL SCREENSHOT
const { chromium } = require('playwright-core');

(async () => {
  const [url, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(url);
    const fail = page.locator('button[data-action="demo-fail"][data-server="app1"]').first();
    await fail.waitFor({ timeout: 15000 });
    await fail.click();
    const recover = page.locator('button[data-action="demo-recover"][data-server="app1"]').first();
    await recover.waitFor({ timeout: 15000 });  // app1's checks failed: it is down
    await page.screenshot({ path: shot });
    await recover.click();
    await page.locator('button[data-action="demo-fail"][data-server="app1"]').first().waitFor({ timeout: 15000 });
    console.log('ok');
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
