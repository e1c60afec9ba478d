// A virtual machine's life from the browser, on real KVM: the node agents run kiln-vmm with the
// Kiln test guest (see ../harness.ts for the flags they get).
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

/** The task panel row of the newest task of this type on this VM. */
function taskRow(page: Page, type: string, vmid: string): Locator {
  return page.getByTestId('task-row').filter({ hasText: `${type} ${vmid}` }).first();
}

/** The terminal's rows whose whole text is `text` (xterm pads rows with spaces). */
function terminalLine(page: Page, text: string): Locator {
  const exact = new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`);
  return page.getByTestId('vm-console').locator('.xterm-rows > div').filter({ hasText: exact });
}

test('create a VM in the wizard, start it, use its console, stop it and remove it', async ({ page, cluster }) => {
  test.setTimeout(180_000);
  await logIn(page, cluster.password);

  // The wizard: a free VM id is proposed, and fields are checked as the user types.
  await page.getByTestId('create-vm').click();
  const wizard = page.getByTestId('create-vm-dialog');
  await expect(wizard).toBeVisible();
  await expect(wizard.getByTestId('wizard-vmid')).toHaveValue(/^\d+$/);
  const vmid = await wizard.getByTestId('wizard-vmid').inputValue();
  await wizard.getByTestId('wizard-node').selectOption('n1');
  await expect(wizard.getByTestId('wizard-image')).toHaveValue('kiln-test-guest');

  await wizard.getByTestId('wizard-name').fill('bad_name');
  await expect(wizard.getByTestId('wizard-error-name')).toContainText("'_'");
  await wizard.getByTestId('wizard-name').fill('e2e-vm');
  await expect(wizard.getByTestId('wizard-error-name')).toHaveCount(0);

  await expect(wizard.getByTestId('wizard-memory-free')).toContainText(/\d+ MiB free on n1/);
  await wizard.getByTestId('wizard-memory').fill('99999999');
  await expect(wizard.getByTestId('wizard-error-memory')).toContainText('MiB');
  await wizard.getByTestId('wizard-memory').fill('64');
  await expect(wizard.getByTestId('wizard-error-memory')).toHaveCount(0);
  await wizard.getByTestId('wizard-cores').fill('1');
  await wizard.getByTestId('wizard-start').uncheck();
  await wizard.getByTestId('wizard-submit').click();

  // The wizard closes and shows the create task, which succeeds.
  await expect(wizard).toHaveCount(0);
  const viewer = page.getByTestId('task-log-dialog');
  await expect(viewer).toContainText(`qmcreate ${vmid}`);
  await expect(viewer.getByTestId('task-log-status')).toHaveText('OK', { timeout: 30_000 });
  await page.keyboard.press('Escape');
  await expect(viewer).toHaveCount(0);

  // The VM is in the tree under n1, stopped, and its view is open.
  const entry = treeVm(page, vmid);
  await expect(page.locator('[data-testid="tree-node"][data-node="n1"]').getByTestId('tree-vm')).toHaveCount(1);
  await expect(entry).toHaveAttribute('data-status', 'stopped');
  await expect(entry).toContainText(`${vmid} (e2e-vm)`);
  const view = page.getByTestId('vm-view');
  await expect(view).toHaveAttribute('data-vmid', vmid);
  await expect(page.getByTestId('vm-action-stop')).toBeDisabled();
  await expect(page.getByTestId('vm-remove')).toBeEnabled();

  // Start: the tree, the summary and the task panel follow.
  await page.getByTestId('vm-action-start').click();
  await expect(entry).toHaveAttribute('data-status', 'running', { timeout: 30_000 });
  await expect(taskRow(page, 'qmstart', vmid)).toHaveAttribute('data-status', 'ok', { timeout: 30_000 });
  await expect(page.getByTestId('vm-state')).toHaveText('running');
  await expect(page.getByTestId('vm-node')).toHaveText('n1');
  await expect(page.getByTestId('vm-action-start')).toBeDisabled();
  await expect(page.getByTestId('vm-remove')).toBeDisabled();
  await expect(page.getByTestId('vm-action-stop')).toBeEnabled();

  // The console: the guest's prompt, then a command typed into xterm.js reaches its shell.
  await page.getByTestId('vm-tab-console').click();
  await expect(page.getByTestId('console-state')).toHaveAttribute('data-state', 'connected', { timeout: 30_000 });
  const terminal = page.getByTestId('vm-console');
  await expect(terminal.locator('.xterm-rows')).toContainText('kiln>', { timeout: 30_000 });
  await terminal.click();
  await page.keyboard.type('echo hello');
  await page.keyboard.press('Enter');
  await expect(terminalLine(page, 'hello')).toHaveCount(1, { timeout: 15_000 });

  // Pause and resume: the buttons follow the state.
  await page.getByTestId('vm-action-suspend').click();
  await expect(entry).toHaveAttribute('data-status', 'paused', { timeout: 30_000 });
  await expect(page.getByTestId('vm-action-resume')).toBeEnabled();
  await expect(page.getByTestId('vm-action-suspend')).toBeDisabled();
  await page.getByTestId('vm-action-resume').click();
  await expect(entry).toHaveAttribute('data-status', 'running', { timeout: 30_000 });

  // Stop: the console says so, and the VM is stopped everywhere.
  await page.getByTestId('vm-action-stop').click();
  await expect(entry).toHaveAttribute('data-status', 'stopped', { timeout: 30_000 });
  await expect(taskRow(page, 'qmstop', vmid)).toHaveAttribute('data-status', 'ok', { timeout: 30_000 });
  await expect(page.getByTestId('console-state')).toHaveAttribute('data-state', 'idle');

  // Started again, the open console reconnects and shows the new boot only.
  await page.getByTestId('vm-action-start').click();
  await expect(page.getByTestId('console-state')).toHaveAttribute('data-state', 'connected', { timeout: 30_000 });
  await expect(terminal.locator('.xterm-rows')).toContainText('kiln>', { timeout: 30_000 });
  await expect(terminalLine(page, 'hello')).toHaveCount(0);
  await page.getByTestId('vm-action-stop').click();
  await expect(entry).toHaveAttribute('data-status', 'stopped', { timeout: 30_000 });

  // Clone the stopped VM to another node: a free id is proposed, the name is checked as typed.
  await page.getByTestId('vm-clone').click();
  const clone = page.getByTestId('clone-dialog');
  await expect(clone.getByTestId('clone-newid')).toHaveValue(/^\d+$/);
  const cloneId = await clone.getByTestId('clone-newid').inputValue();
  expect(cloneId).not.toBe(vmid);
  await clone.getByTestId('clone-name').fill('bad_name');
  await expect(clone.getByTestId('clone-name-error')).toContainText("'_'");
  await expect(clone.getByTestId('clone-confirm')).toBeDisabled();
  await clone.getByTestId('clone-name').fill('e2e-clone');
  await clone.getByTestId('clone-target').selectOption('n2');
  await clone.getByTestId('clone-confirm').click();
  await expect(clone).toHaveCount(0);
  await expect(viewer).toContainText(`qmclone ${vmid}`);
  await expect(viewer.getByTestId('task-log-status')).toHaveText('OK', { timeout: 30_000 });
  await page.keyboard.press('Escape');
  const cloned = treeVm(page, cloneId);
  await expect(page.locator('[data-testid="tree-node"][data-node="n2"]').locator(`[data-testid="tree-vm"][data-vmid="${cloneId}"]`)).toHaveCount(1);
  await expect(cloned).toHaveAttribute('data-status', 'stopped');
  await expect(cloned).toContainText(`${cloneId} (e2e-clone)`);

  // Remove: only after typing the VM id.
  await page.getByTestId('vm-remove').click();
  const confirm = page.getByTestId('vm-remove-dialog');
  await expect(confirm.getByTestId('vm-remove-confirm')).toBeDisabled();
  await confirm.getByTestId('vm-remove-input').fill('1');
  await expect(confirm.getByTestId('vm-remove-confirm')).toBeDisabled();
  await confirm.getByTestId('vm-remove-input').fill(vmid);
  await confirm.getByTestId('vm-remove-confirm').click();
  await expect(confirm).toHaveCount(0);
  await expect(page.getByTestId('node-summary')).toHaveAttribute('data-node', 'n1');
  await expect(taskRow(page, 'qmdestroy', vmid)).toHaveAttribute('data-status', 'ok', { timeout: 30_000 });
  await expect(entry).toHaveCount(0);
});
