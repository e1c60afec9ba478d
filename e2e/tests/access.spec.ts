// Datacenter → Permissions and Pools, against a real cluster (see ../harness.ts).
import { request as playwrightRequest } from '@playwright/test';
import { ADMIN_USER, expect, test } from '../harness';
import { logIn, watchConsole } from '../ui';

test('Permissions lists users, groups and ACL entries; Pools shows quota bars', async ({ page, cluster }) => {
  // Set up through the API as an administrator would: a group, a user, a pool and a grant.
  const api = await playwrightRequest.newContext({ baseURL: cluster.url, ignoreHTTPSErrors: true });
  try {
    const login = await api.post('/api2/json/access/ticket', {
      data: { username: ADMIN_USER, password: cluster.password },
    });
    expect(login.status()).toBe(200);
    const csrf = (await login.json()).data.CSRFPreventionToken as string;
    const call = async (method: 'POST' | 'PUT', path: string, data: object) => {
      const res = await api.fetch(`/api2/json${path}`, { method, data, headers: { CSRFPreventionToken: csrf } });
      expect(res.status(), `${method} ${path}: ${await res.text()}`).toBe(200);
    };
    await call('POST', '/access/groups', { groupid: 'class1', comment: 'first years' });
    await call('POST', '/access/users', {
      userid: 'ada@kiln', password: 'ada-password-1', firstname: 'Ada', lastname: 'Lovelace', groups: 'class1',
    });
    await call('POST', '/pools', { poolid: 'lab1', comment: 'lab of class 1', 'max-vms': 10, 'max-vcpus': 4, 'max-memory': 1024 });
    await call('PUT', '/access/acl', { path: '/pool/lab1', roles: 'PVEVMUser', groups: 'class1' });
  } finally {
    await api.dispose();
  }

  const problems = watchConsole(page);
  await logIn(page, cluster.password);
  await page.getByTestId('dc-tab-permissions').click();
  const ada = page.locator('[data-testid="user-row"][data-userid="ada@kiln"]');
  await expect(ada).toContainText('Ada Lovelace');
  await expect(ada).toContainText('class1');
  await expect(page.getByTestId('groups-table')).toContainText('ada@kiln');
  const acl = page.getByTestId('acl-table');
  await expect(acl).toContainText('/pool/lab1');
  await expect(acl).toContainText('PVEVMUser');

  await page.getByTestId('dc-tab-pools').click();
  const pool = page.locator('[data-testid="pool"][data-pool="lab1"]');
  await expect(pool).toContainText('lab of class 1');
  await expect(pool).toContainText('0 of 10 VMs');
  await expect(pool).toContainText('0 of 4 vCPUs');
  await expect(pool.getByRole('meter', { name: 'Running vCPUs' })).toHaveAttribute('aria-valuenow', '0');

  // The audit log shows who made those changes, newest first, and filters by caller.
  await page.getByTestId('dc-tab-audit').click();
  const audit = page.getByTestId('audit-table');
  await expect(audit).toContainText('/api2/json/access/acl');
  await expect(audit).toContainText('/api2/json/pools');
  await expect(audit.getByTestId('audit-row').filter({ hasText: '/api2/json/access/acl' }).first()).toContainText(ADMIN_USER);
  await page.getByTestId('audit-user').fill('ada@kiln');
  await page.getByTestId('audit-filter').click();
  await expect(audit.getByTestId('audit-row')).toHaveCount(0);

  await page.getByTestId('dc-tab-summary').click();
  await expect(page.getByTestId('nodes-online')).toBeVisible();
  expect(problems).toEqual([]);
});
