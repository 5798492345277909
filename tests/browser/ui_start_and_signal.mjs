// Drive the Temporal Web UI (2.54) like an operator: start a run from the start form,
// find it in the workflow list, and send the `approve` signal from the signal dialog.
// Usage: node ui_start_and_signal.mjs <config.json>; prints one JSON line per step.
// Selectors and the CodeMirror focus rules come from shared/TEMPORAL_NOTES.md §10.
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const ns = encodeURIComponent(cfg.namespace);
const wid = cfg.workflowId;
const step = (name, extra = {}) => console.log(JSON.stringify({ step: name, ...extra }));

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
page.setDefaultTimeout(30000);

// CodeMirror auto-closes brackets when typed key by key: insert the text in one go.
async function typeJson(scope, json) {
  await scope.locator('.cm-content').first().click();
  await page.keyboard.insertText(json);
}

try {
  // 1. Start form: Workflow ID, Task Queue, Workflow Type, input {}.
  await page.goto(`${cfg.uiUrl}/namespaces/${ns}/workflows/start-workflow`);
  await page.fill('#workflowId', wid);
  await page.fill('#taskQueue', cfg.taskQueue);
  await page.fill('#workflowType', cfg.workflowType);
  await typeJson(page, cfg.input);
  // The editor reformats on blur, and a Start click that also blurs it is lost:
  // blur first by clicking the heading, then start.
  await page.click('h1');
  await page.waitForTimeout(500);
  const [startResp] = await Promise.all([
    page.waitForResponse(r => r.request().method() === 'POST'
      && r.url().includes(`/api/v1/namespaces/${ns}/workflows/${encodeURIComponent(wid)}`)),
    page.click('[data-testid=start-workflow-button]'),
  ]);
  step('started', { status: startResp.status() });
  if (startResp.status() !== 200) throw new Error(`start failed: ${await startResp.text()}`);

  // 2. The run is listed on the Workflows page.
  await page.goto(`${cfg.uiUrl}/namespaces/${ns}/workflows`);
  await page.getByText(wid, { exact: true }).first().waitFor();
  step('listed');

  // 3. Its page: More Actions -> Send a Signal -> approve, JSON payload, Submit.
  // Each control exists twice (desktop and mobile layouts): act on the visible one.
  await page.goto(`${cfg.uiUrl}/namespaces/${ns}/workflows/${encodeURIComponent(wid)}`);
  await page.locator('[data-testid=execution-status]:visible').first().waitFor();
  if (cfg.waitForText) await page.getByText(cfg.waitForText).first().waitFor({ timeout: 60000 });
  // The run's Current Details (workflow.set_current_details, served by the worker's
  // metadata query): the text must be on the page, expanding its section if folded.
  if (cfg.expectText) {
    // UI 2.54 shows Current Details on the run's "User Metadata" tab, rendered from
    // markdown inside an iframe: look in every frame of the page.
    await page.getByText('User Metadata', { exact: true }).first().click();
    let found = null;
    for (let i = 0; i < 120 && !found; i++) {
      for (const frame of page.frames()) {
        const hit = frame.getByText(cfg.expectText).first();
        if (await hit.count().catch(() => 0)) { found = hit; break; }
      }
      if (!found) await page.waitForTimeout(500);
    }
    if (!found) throw new Error(`Current Details never showed: ${cfg.expectText}`);
    if (cfg.artifactsDir) {
      mkdirSync(cfg.artifactsDir, { recursive: true });
      await page.screenshot({ path: `${cfg.artifactsDir}/current-details.png`, fullPage: true });
    }
    step('details', { text: await found.innerText() });
  }
  await page.getByRole('button', { name: 'More Actions' }).click();
  await page.locator('[data-testid=signal-button]:visible').click();
  const modal = page.locator('[data-testid=signal-confirmation-modal]:visible');
  await modal.waitFor();
  await modal.locator('[data-testid=signal-select-button]').click();
  // The options come from the worker's metadata query (signal names + descriptions).
  await page.locator('[role=option]:visible', { hasText: new RegExp(`^\\s*${cfg.signalName}\\b`) }).click();
  await typeJson(modal, cfg.signalInput);
  await modal.getByText('Single JSON payload supported.').first().click();  // blur the editor first
  await page.waitForTimeout(500);
  if (cfg.artifactsDir) {
    mkdirSync(cfg.artifactsDir, { recursive: true });
    await page.screenshot({ path: `${cfg.artifactsDir}/signal-dialog.png` });
  }
  const [sigResp] = await Promise.all([
    page.waitForResponse(r => r.request().method() === 'POST'
      && r.url().includes(`/signal/${cfg.signalName}`)),
    modal.locator('[data-testid=confirm-modal-button]').click(),
  ]);
  step('signalled', { status: sigResp.status() });
  if (sigResp.status() !== 200) throw new Error(`signal failed: ${await sigResp.text()}`);
} catch (err) {
  if (cfg.artifactsDir) {
    mkdirSync(cfg.artifactsDir, { recursive: true });
    await page.screenshot({ path: `${cfg.artifactsDir}/failure.png`, fullPage: true }).catch(() => {});
  }
  step('error', { message: String(err && err.stack || err), url: page.url() });
  await browser.close();
  process.exit(1);
}
await browser.close();
step('done');
