// High availability from the browser: a VM under HA with a node-affinity rule, its node
// killed (agent and VM), and the UI showing it fenced, then running on the next node by
// priority — live, without a reload. Real processes and real KVM, default HA timings
// (lease 8 s, margin 2 s), so the failover takes about 10 s.
import { request as playwrightRequest, type APIRequestContext, type Page } from '@playwright/test';
import { ADMIN_USER, expect, test, vmSupport } from '../harness';
import { logIn } from '../ui';

const support = vmSupport();
test.skip(support !== null && 'skip' in support, support !== null && 'skip' in support ? support.skip : '');
test.beforeAll(() => {
  if (support !== null && 'missing' in support) throw new Error(`cannot run the HA browser test: ${support.missing}`);
});

const VMID = 900;

/** An API client with the admin's session and CSRF token. */
async function api(url: string, password: string): Promise<{ api: APIRequestContext; csrf: string }> {
  const api = await playwrightRequest.newContext({ baseURL: url, ignoreHTTPSErrors: true });
  const login = await api.post('/api2/json/access/ticket', { data: { username: ADMIN_USER, password } });
  expect(login.ok()).toBeTruthy();
  const csrf: string = (await login.json()).data.CSRFPreventionToken;
  return { api, csrf };
}

async function call(c: { api: APIRequestContext; csrf: string }, method: 'post' | 'put' | 'delete', path: string, data?: object) {
  const response = await c.api[method](path, { data, headers: { CSRFPreventionToken: c.csrf } });
  expect(response.ok(), `${method} ${path}: ${await response.text()}`).toBeTruthy();
  return (await response.json()).data;
}

function haRow(page: Page) {
  return page.locator(`[data-testid="ha-resource"][data-sid="vm:${VMID}"]`);
}

function vmUnder(page: Page, node: string) {
  return page.locator(`[data-testid="tree-node"][data-node="${node}"] [data-testid="tree-vm"][data-vmid="${VMID}"]`);
}

test('an HA VM whose node is killed comes back on the next node by priority, live in the UI', async ({ page, cluster }) => {
  test.setTimeout(180_000);
  const c = await api(cluster.url, cluster.password);
  try {
    const upid = await call(c, 'post', '/api2/json/nodes/n3/qemu', { vmid: VMID, name: 'ha-e2e', memory: 64 });
    await expect
      .poll(async () => (await (await c.api.get(`/api2/json/nodes/n3/tasks/${encodeURIComponent(upid)}/status`)).json()).data.exitstatus, { timeout: 30_000 })
      .toBe('OK');
    await call(c, 'post', '/api2/json/cluster/ha/resources', { sid: `vm:${VMID}`, state: 'stopped' });
    await call(c, 'post', '/api2/json/cluster/ha/rules', {
      rule: 'e2e-prefer', type: 'node-affinity', resources: `vm:${VMID}`, nodes: 'n3:3,n2:2,n1:1',
    });
    await call(c, 'put', `/api2/json/cluster/ha/resources/vm:${VMID}`, { state: 'started' });

    await logIn(page, cluster.password);
    // The Datacenter row itself (the tree item also holds the nodes).
    await page.getByTestId('tree-datacenter').locator('> button').click();
    await expect(page.getByTestId('datacenter-summary')).toBeVisible();
    await expect(haRow(page).getByTestId('ha-resource-state')).toHaveText('started', { timeout: 30_000 });
    await expect(haRow(page).getByTestId('ha-resource-node')).toHaveText('n3');
    await expect(vmUnder(page, 'n3')).toHaveAttribute('data-status', 'running', { timeout: 30_000 });

    // The host dies: its agent and its VM.
    const status = (await (await c.api.get(`/api2/json/nodes/n3/qemu/${VMID}/status/current`)).json()).data;
    await cluster.node('n3').kill();
    process.kill(status.pid, 'SIGKILL');

    // Fenced first (nothing starts while n3's lease may still run), then running on n2.
    await expect(haRow(page).getByTestId('ha-resource-state')).toHaveText(/fence|recovery/, { timeout: 30_000 });
    await expect(vmUnder(page, 'n2')).toHaveAttribute('data-status', 'running', { timeout: 60_000 });
    await expect(haRow(page).getByTestId('ha-resource-state')).toHaveText('started');
    await expect(haRow(page).getByTestId('ha-resource-node')).toHaveText('n2');
    await expect(vmUnder(page, 'n3')).toHaveCount(0);

    // The recovery is a task with a log.
    await expect(page.getByTestId('task-row').filter({ hasText: `harecover ${VMID}` }).first()).toBeVisible();
  } finally {
    // Leave the shared cluster as it was: the VM out of HA, stopped and removed, n3 back.
    await c.api.delete(`/api2/json/cluster/ha/rules/e2e-prefer`, { headers: { CSRFPreventionToken: c.csrf } });
    await c.api.delete(`/api2/json/cluster/ha/resources/vm:${VMID}`, { headers: { CSRFPreventionToken: c.csrf } });
    const resources = (await (await c.api.get('/api2/json/cluster/resources?type=vm')).json()).data as { vmid: number; node: string }[];
    const vm = resources.find((r) => r.vmid === VMID);
    if (vm) {
      await c.api.post(`/api2/json/nodes/${vm.node}/qemu/${VMID}/status/stop`, { headers: { CSRFPreventionToken: c.csrf } });
      await expect
        .poll(async () => (await (await c.api.get(`/api2/json/nodes/${vm.node}/qemu/${VMID}/status/current`)).json()).data?.status, { timeout: 30_000 })
        .toBe('stopped');
      await c.api.delete(`/api2/json/nodes/${vm.node}/qemu/${VMID}`, { headers: { CSRFPreventionToken: c.csrf } });
    }
    await c.api.dispose();
    cluster.node('n3').start();
  }
});
