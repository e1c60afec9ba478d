// The HA page and the maintenance toggle from the browser: an HA resource and a node-affinity
// rule made in the UI (the resource then starts on the rule's preferred node), a conflicting
// rule refused with the server's message next to the fields and nothing typed lost, and a node
// put in maintenance from its summary, its HA VM leaving it live in the tree. Real processes
// and real KVM.
import { request as playwrightRequest, type APIRequestContext, type Page } from '@playwright/test';
import { ADMIN_USER, expect, test, vmSupport } from '../harness';
import { logIn, watchConsole } from '../ui';

const support = vmSupport();
test.skip(support !== null && 'skip' in support, support !== null && 'skip' in support ? support.skip : '');
test.beforeAll(() => {
  if (support !== null && 'missing' in support) throw new Error(`cannot run the HA browser tests: ${support.missing}`);
});

type Client = { api: APIRequestContext; csrf: string };

/** An API client with the admin's session and CSRF token. */
async function client(url: string, password: string): Promise<Client> {
  const api = await playwrightRequest.newContext({ baseURL: url, ignoreHTTPSErrors: true });
  const login = await api.post('/api2/json/access/ticket', { data: { username: ADMIN_USER, password } });
  expect(login.ok()).toBeTruthy();
  return { api, csrf: (await login.json()).data.CSRFPreventionToken };
}

async function call(c: Client, method: 'post' | 'put' | 'delete', path: string, data?: object) {
  const response = await c.api[method](path, { data, headers: { CSRFPreventionToken: c.csrf } });
  expect(response.ok(), `${method} ${path}: ${await response.text()}`).toBeTruthy();
  return (await response.json()).data;
}

/** Creates VM `vmid` (64 MiB, stopped) on `node` and waits for the task. */
async function createVm(c: Client, node: string, vmid: number): Promise<void> {
  const upid = await call(c, 'post', `/api2/json/nodes/${node}/qemu`, { vmid, name: `ha-ui-${vmid}`, memory: 64 });
  await expect
    .poll(async () => (await (await c.api.get(`/api2/json/nodes/${node}/tasks/${encodeURIComponent(upid)}/status`)).json()).data.exitstatus, { timeout: 30_000 })
    .toBe('OK');
}

/** Takes the VMs out of HA (rules too), stops and removes them: the cluster is shared. */
async function cleanUp(c: Client, vmids: number[], rules: string[]): Promise<void> {
  const headers = { CSRFPreventionToken: c.csrf };
  for (const rule of rules) await c.api.delete(`/api2/json/cluster/ha/rules/${rule}`, { headers });
  for (const vmid of vmids) await c.api.delete(`/api2/json/cluster/ha/resources/vm:${vmid}`, { headers });
  const resources = (await (await c.api.get('/api2/json/cluster/resources?type=vm')).json()).data as { vmid: number; node: string; status: string }[];
  for (const vmid of vmids) {
    const vm = resources.find((r) => r.vmid === vmid);
    if (!vm) continue;
    if (vm.status !== 'stopped') {
      await c.api.post(`/api2/json/nodes/${vm.node}/qemu/${vmid}/status/stop`, { headers });
      await expect
        .poll(async () => (await (await c.api.get(`/api2/json/nodes/${vm.node}/qemu/${vmid}/status/current`)).json()).data?.status, { timeout: 30_000 })
        .toBe('stopped');
    }
    await c.api.delete(`/api2/json/nodes/${vm.node}/qemu/${vmid}`, { headers });
  }
}

async function openHaPage(page: Page): Promise<void> {
  await page.getByTestId('tree-datacenter').locator('> button').click();
  await page.getByTestId('dc-tab-ha').click();
  await expect(page.getByTestId('ha-view')).toBeVisible();
}

function configRow(page: Page, sid: string) {
  return page.locator(`[data-testid="ha-config-row"][data-sid="${sid}"]`);
}

function vmUnder(page: Page, node: string, vmid: number) {
  return page.locator(`[data-testid="tree-node"][data-node="${node}"] [data-testid="tree-vm"][data-vmid="${vmid}"]`);
}

test('HA resources and rules are made in the UI; a conflicting rule is refused next to its fields', async ({ page, cluster }) => {
  test.setTimeout(180_000);
  const c = await client(cluster.url, cluster.password);
  const problems = watchConsole(page);
  try {
    await createVm(c, 'n1', 910);
    await createVm(c, 'n1', 911);

    await logIn(page, cluster.password);
    await openHaPage(page);

    // A resource for VM 910, stopped for now. A bad count is refused before sending and
    // nothing else typed is lost.
    await page.getByTestId('ha-add-resource').click();
    const dialog = page.getByTestId('ha-resource-dialog');
    await dialog.getByTestId('ha-resource-vm').selectOption('910');
    await dialog.getByTestId('ha-resource-state').selectOption('stopped');
    await dialog.getByTestId('ha-resource-comment').fill('web front end');
    await dialog.getByTestId('ha-resource-max-restart').fill('11');
    await expect(dialog.getByTestId('ha-resource-error-max_restart')).toContainText('0 to 10');
    await expect(dialog.getByTestId('ha-resource-submit')).toBeDisabled();
    await dialog.getByTestId('ha-resource-max-restart').fill('2');
    await expect(dialog.getByTestId('ha-resource-error-max_restart')).toHaveCount(0);
    await expect(dialog.getByTestId('ha-resource-comment')).toHaveValue('web front end');
    await dialog.getByTestId('ha-resource-submit').click();
    await expect(dialog).toHaveCount(0);
    const row910 = configRow(page, 'vm:910');
    await expect(row910.getByTestId('ha-config-requested')).toHaveText('stopped');
    await expect(row910).toContainText('web front end');

    // And VM 911. The server refuses a comment over 4096 characters: its message shows
    // under the comment, and the other fields keep what was chosen.
    await page.getByTestId('ha-add-resource').click();
    await dialog.getByTestId('ha-resource-vm').selectOption('911');
    await dialog.getByTestId('ha-resource-state').selectOption('stopped');
    await dialog.getByTestId('ha-resource-comment').fill('x'.repeat(4100));
    await dialog.getByTestId('ha-resource-submit').click();
    await expect(dialog.getByTestId('ha-resource-error-comment')).toContainText('at most 4096');
    await expect(dialog.getByTestId('ha-resource-error')).toContainText('refused');
    await expect(dialog.getByTestId('ha-resource-vm')).toHaveValue('911');
    await expect(dialog.getByTestId('ha-resource-state')).toHaveValue('stopped');
    await dialog.getByTestId('ha-resource-comment').fill('database');
    await expect(dialog.getByTestId('ha-resource-error-comment')).toHaveCount(0);
    await dialog.getByTestId('ha-resource-submit').click();
    await expect(configRow(page, 'vm:911').getByTestId('ha-config-requested')).toHaveText('stopped');

    // A node-affinity rule: VM 910 prefers n2, then n3.
    await page.getByTestId('ha-add-rule').click();
    const rule = page.getByTestId('ha-rule-dialog');
    await rule.getByTestId('ha-rule-id').fill('ui-prefer');
    await rule.getByTestId('ha-rule-type').selectOption('node-affinity');
    await rule.locator('[data-testid="ha-rule-resource"][data-sid="vm:910"]').check();
    await rule.locator('[data-testid="ha-rule-node-use"][data-node="n2"]').check();
    await rule.locator('[data-testid="ha-rule-node-priority"][data-node="n2"]').fill('2');
    await rule.locator('[data-testid="ha-rule-node-use"][data-node="n3"]').check();
    await rule.getByTestId('ha-rule-submit').click();
    await expect(rule).toHaveCount(0);
    const ruleRow = page.locator('[data-testid="ha-rule-row"][data-rule="ui-prefer"]');
    await expect(ruleRow.getByTestId('ha-rule-effect')).toHaveText('prefer n2:2,n3:1');

    // A second node-affinity rule for VM 910 conflicts: the server's message shows by the
    // fields, the dialog stays open with everything as typed.
    await page.getByTestId('ha-add-rule').click();
    await rule.getByTestId('ha-rule-id').fill('ui-twice');
    await rule.locator('[data-testid="ha-rule-resource"][data-sid="vm:910"]').check();
    await rule.locator('[data-testid="ha-rule-node-use"][data-node="n1"]').check();
    await rule.getByTestId('ha-rule-comment').fill('second try');
    await rule.getByTestId('ha-rule-submit').click();
    await expect(rule.getByTestId('ha-rule-error-rule')).toContainText('vm:910 is in node-affinity rules ui-prefer and ui-twice');
    await expect(rule.getByTestId('ha-rule-error')).toContainText('refused');
    await expect(rule.getByTestId('ha-rule-id')).toHaveValue('ui-twice');
    await expect(rule.getByTestId('ha-rule-comment')).toHaveValue('second try');
    await expect(rule.locator('[data-testid="ha-rule-node-use"][data-node="n1"]')).toBeChecked();
    // Changing the resources withdraws the conflict message; with VM 911 instead it is saved.
    await rule.locator('[data-testid="ha-rule-resource"][data-sid="vm:910"]').uncheck();
    await expect(rule.getByTestId('ha-rule-error-rule')).toHaveCount(0);
    await rule.locator('[data-testid="ha-rule-resource"][data-sid="vm:911"]').check();
    await rule.getByTestId('ha-rule-submit').click();
    await expect(rule).toHaveCount(0);
    await expect(page.locator('[data-testid="ha-rule-row"][data-rule="ui-twice"]').getByTestId('ha-rule-effect')).toHaveText('prefer n1:1');
    await expect(page.locator('[data-testid="ha-rule-row"][data-rule="ui-twice"]').getByTestId('ha-rule-conflicts')).toHaveText('');

    // Keep-together and keep-apart for the same pair conflict too.
    await page.getByTestId('ha-add-rule').click();
    await rule.getByTestId('ha-rule-id').fill('ui-apart');
    await rule.getByTestId('ha-rule-type').selectOption('resource-affinity');
    await rule.getByTestId('ha-rule-affinity').selectOption('negative');
    await rule.locator('[data-testid="ha-rule-resource"][data-sid="vm:910"]').check();
    await expect(rule.getByTestId('ha-rule-error-resources')).toContainText('at least 2');
    await rule.locator('[data-testid="ha-rule-resource"][data-sid="vm:911"]').check();
    await rule.getByTestId('ha-rule-submit').click();
    await expect(rule).toHaveCount(0);
    await page.getByTestId('ha-add-rule').click();
    await rule.getByTestId('ha-rule-id').fill('ui-together');
    await rule.getByTestId('ha-rule-type').selectOption('resource-affinity');
    await rule.getByTestId('ha-rule-affinity').selectOption('positive');
    await rule.locator('[data-testid="ha-rule-resource"][data-sid="vm:910"]').check();
    await rule.locator('[data-testid="ha-rule-resource"][data-sid="vm:911"]').check();
    await rule.getByTestId('ha-rule-submit').click();
    await expect(rule.getByTestId('ha-rule-error-rule')).toContainText('ui-together (keep together) and ui-apart (keep apart)');
    await rule.getByRole('button', { name: 'Cancel' }).click();
    await expect(page.locator('[data-testid="ha-rule-row"][data-rule="ui-together"]')).toHaveCount(0);

    // Edit VM 910's resource to started: HA starts it on the rule's first node, n2.
    await row910.getByTestId('ha-resource-edit').click();
    await expect(dialog.getByTestId('ha-resource-comment')).toHaveValue('web front end');
    await expect(dialog.getByTestId('ha-resource-max-restart')).toHaveValue('2');
    await dialog.getByTestId('ha-resource-state').selectOption('started');
    await dialog.getByTestId('ha-resource-submit').click();
    await expect(dialog).toHaveCount(0);
    await expect(row910.getByTestId('ha-config-requested')).toHaveText('started');
    await expect(row910.getByTestId('ha-config-state')).toHaveText('started', { timeout: 60_000 });
    await expect(row910.getByTestId('ha-config-node')).toHaveText('n2', { timeout: 60_000 });
    await expect(vmUnder(page, 'n2', 910)).toHaveAttribute('data-status', 'running', { timeout: 30_000 });

    // The manager's view of the nodes.
    await expect(page.locator('[data-testid="ha-manager-node"][data-node="n2"]').getByTestId('ha-manager-node-state')).toHaveText('online');

    // Remove a rule and a resource through the UI.
    await page.locator('[data-testid="ha-rule-row"][data-rule="ui-apart"]').getByTestId('ha-rule-remove').click();
    await page.getByTestId('ha-remove-confirm').click();
    await expect(page.locator('[data-testid="ha-rule-row"][data-rule="ui-apart"]')).toHaveCount(0);
    await configRow(page, 'vm:911').getByTestId('ha-resource-remove').click();
    await page.getByTestId('ha-remove-confirm').click();
    await expect(configRow(page, 'vm:911')).toHaveCount(0);
    // The three refusals above are the only failed requests, and nothing else went wrong.
    expect(problems.filter((p) => !p.includes('status of 400'))).toEqual([]);
    expect(problems.filter((p) => p.includes('status of 400'))).toHaveLength(3);
  } finally {
    await cleanUp(c, [910, 911], ['ui-prefer', 'ui-twice', 'ui-apart', 'ui-together']);
    await c.api.dispose();
  }
});

test('maintenance from the node summary moves the node\'s HA VM away and shows it', async ({ page, cluster }) => {
  test.setTimeout(180_000);
  const c = await client(cluster.url, cluster.password);
  try {
    await createVm(c, 'n2', 912);
    await call(c, 'post', '/api2/json/cluster/ha/resources', { sid: 'vm:912', state: 'stopped' });
    await call(c, 'post', '/api2/json/cluster/ha/rules', {
      rule: 'ui-maint', type: 'node-affinity', resources: 'vm:912', nodes: 'n2:2,n1:1',
    });
    await call(c, 'put', '/api2/json/cluster/ha/resources/vm:912', { state: 'started' });

    await logIn(page, cluster.password);
    await expect(vmUnder(page, 'n2', 912)).toHaveAttribute('data-status', 'running', { timeout: 60_000 });
    await page.locator('[data-testid="tree-node"][data-node="n2"] > button').click();
    const summary = page.getByTestId('node-summary');
    await expect(summary).toHaveAttribute('data-node', 'n2');
    const state = summary.getByTestId('node-maintenance');
    await expect(state).toHaveAttribute('data-state', 'off');
    await expect(summary.getByTestId('node-maintenance-drain')).toContainText('HA VMs (1)');

    await summary.getByTestId('node-maintenance-toggle').click();
    await expect(state).toHaveAttribute('data-state', 'on');
    await expect(state).toContainText('since');
    // The HA VM leaves n2 (live migration to n1, the rule's next node), live in the tree.
    await expect(vmUnder(page, 'n1', 912)).toHaveAttribute('data-status', 'running', { timeout: 60_000 });
    await expect(vmUnder(page, 'n2', 912)).toHaveCount(0);
    await expect(summary.getByTestId('node-maintenance-drain')).toContainText('No HA VM is left on this node');
    await expect(summary.getByTestId('node-maintenance-toggle')).toHaveText('Leave maintenance');

    // The HA page shows n2 in maintenance.
    await openHaPage(page);
    await expect(page.locator('[data-testid="ha-manager-node"][data-node="n2"]').getByTestId('ha-manager-node-state')).toHaveText('maintenance');

    // Leaving maintenance: failback brings the VM home to n2 (priority 2).
    await page.locator('[data-testid="tree-node"][data-node="n2"] > button').click();
    await summary.getByTestId('node-maintenance-toggle').click();
    await expect(state).toHaveAttribute('data-state', 'off');
    await expect(vmUnder(page, 'n2', 912)).toHaveAttribute('data-status', 'running', { timeout: 60_000 });
  } finally {
    await c.api.post('/api2/kiln/nodes/n2/maintenance', { data: { enable: 0 }, headers: { CSRFPreventionToken: c.csrf } });
    await cleanUp(c, [912], ['ui-maint']);
    await c.api.dispose();
  }
});
