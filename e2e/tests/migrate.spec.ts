// Live migration from the browser: the Migrate dialog, the task with its progress, the VM moving
// to its new node in the tree without a reload, and the open console following it.
import type { Locator, Page } from '@playwright/test';
import { expect, test, vmSupport } from '../harness';
import { logIn } from '../ui';

const support = vmSupport();
test.skip(support !== null && 'skip' in support, support !== null && 'skip' in support ? support.skip : '');
test.beforeAll(() => {
  if (support !== null && 'missing' in support) throw new Error(`cannot run the VM browser tests: ${support.missing}`);
});

function treeVm(page: Page, vmid: string): Locator {
  return page.locator(`[data-testid="tree-vm"][data-vmid="${vmid}"]`);
}

function terminalLine(page: Page, text: string): Locator {
  const exact = new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`);
  return page.getByTestId('vm-console').locator('.xterm-rows > div').filter({ hasText: exact });
}

test('migrate a running VM from the dialog; the tree, the summary and the console follow it', async ({ page, cluster }) => {
  test.setTimeout(180_000);
  // A running VM on n1, made through the API.
  const api = await cluster.adminApi();
  const ticket = await (await api.post('/api2/json/access/ticket', {
    data: { username: 'root@kiln', password: cluster.password },
  })).json();
  const headers = { CSRFPreventionToken: ticket.data.CSRFPreventionToken };
  const vmid = String((await (await api.get('/api2/json/cluster/nextid')).json()).data);
  const created = await api.post('/api2/json/nodes/n1/qemu', {
    headers,
    data: { vmid: Number(vmid), name: 'e2e-mig', memory: 64 },
  });
  expect(created.ok(), await created.text()).toBeTruthy();
  await expect.poll(async () => (await api.get(`/api2/json/nodes/n1/qemu/${vmid}/status/current`)).status(), { timeout: 30_000 }).toBe(200);
  await expect.poll(async () => {
    const r = await api.post(`/api2/json/nodes/n1/qemu/${vmid}/status/start`, { headers });
    return r.status();
  }, { timeout: 30_000 }).toBe(200);
  await api.dispose();

  await logIn(page, cluster.password);
  const entry = treeVm(page, vmid);
  await expect(entry).toHaveAttribute('data-status', 'running', { timeout: 30_000 });
  await entry.click();
  await expect(page.getByTestId('vm-node')).toHaveText('n1');

  // The console is open and works before the move.
  await page.getByTestId('vm-tab-console').click();
  await expect(page.getByTestId('console-state')).toHaveAttribute('data-state', 'connected', { timeout: 30_000 });
  const terminal = page.getByTestId('vm-console');
  await expect(terminal.locator('.xterm-rows')).toContainText('kiln>', { timeout: 30_000 });
  await terminal.click();
  await page.keyboard.type('echo before');
  await page.keyboard.press('Enter');
  await expect(terminalLine(page, 'before')).toHaveCount(1, { timeout: 15_000 });

  // The dialog lists the other nodes; online is set for a running VM.
  await page.getByTestId('vm-migrate').click();
  const dialog = page.getByTestId('migrate-dialog');
  await expect(dialog).toBeVisible();
  await expect(dialog.getByTestId('migrate-online')).toBeChecked();
  await expect(dialog.getByTestId('migrate-confirm')).toBeEnabled({ timeout: 15_000 });
  await dialog.getByTestId('migrate-target').selectOption('n2');
  await dialog.getByTestId('migrate-confirm').click();
  await expect(dialog).toHaveCount(0);

  // The task viewer shows the migration task and its log, ending OK.
  const viewer = page.getByTestId('task-log-dialog');
  await expect(viewer).toContainText(`qmigrate ${vmid}`);
  await expect(viewer.getByTestId('task-log-status')).toHaveText('OK', { timeout: 60_000 });
  await expect(viewer.getByTestId('task-log')).toContainText('migration finished: downtime');
  // (Escape would go to the focused terminal.)
  await viewer.getByRole('button', { name: 'Close' }).click();
  await expect(viewer).toHaveCount(0);

  // The tree and the summary show the new node, without a reload.
  await expect(page.locator('[data-testid="tree-node"][data-node="n2"]').locator(`[data-testid="tree-vm"][data-vmid="${vmid}"]`)).toHaveCount(1, { timeout: 15_000 });
  await expect(entry).toHaveAttribute('data-status', 'running');
  await page.getByTestId('vm-tab-summary').click();
  await expect(page.getByTestId('vm-node')).toHaveText('n2', { timeout: 15_000 });

  // The console reconnected to the VM on its new node: the same guest answers (its earlier
  // output is gone with the old connection, the shell is the same).
  await page.getByTestId('vm-tab-console').click();
  await expect(page.getByTestId('console-state')).toHaveAttribute('data-state', 'connected', { timeout: 30_000 });
  await terminal.click();
  await page.keyboard.type('echo after');
  await page.keyboard.press('Enter');
  await expect(terminalLine(page, 'after')).toHaveCount(1, { timeout: 15_000 });
});
