// The console in a browser, against a real three-node cluster (see ../harness.ts).
import { request as playwrightRequest, type Page } from '@playwright/test';
import { ADMIN_USER, NODE_TIMEOUT_SECS, expect, test } from '../harness';
import { logIn, openLoginPage, watchConsole } from '../ui';

function treeNode(page: Page, name: string) {
  return page.locator(`[data-testid="tree-node"][data-node="${name}"]`);
}

test('the login page loads without console errors and shows the realm', async ({ page }) => {
  const problems = watchConsole(page);
  await openLoginPage(page);
  await expect(page).toHaveTitle('Kiln');
  await expect(page.getByTestId('login-username')).toHaveValue(ADMIN_USER);
  await expect(page.getByTestId('login-realm')).toContainText('Kiln authentication server');
  await expect(page.getByTestId('login-submit')).toBeEnabled();
  expect(problems).toEqual([]);
});

test('a wrong password shows the server error', async ({ page }) => {
  await openLoginPage(page);
  await page.getByTestId('login-password').fill('not-the-password');
  await page.getByTestId('login-submit').click();
  const error = page.getByRole('alert');
  await expect(error).toBeVisible();
  await expect(error).toHaveClass(/error/);
  await expect(error).toContainText('authentication failure');
  await expect(page.getByTestId('login-submit')).toBeEnabled();
  await expect(page.getByTestId('console')).toHaveCount(0);
});

test('login shows the console with user and cluster name', async ({ page, cluster }) => {
  const problems = watchConsole(page);
  await logIn(page, cluster.password);
  await expect(page.getByTestId('current-user')).toHaveText(ADMIN_USER);
  await expect(page.getByTestId('cluster-name')).not.toBeEmpty();
  await expect(page.getByTestId('tree-datacenter')).toBeVisible();
  await expect(page.getByTestId('logout')).toBeEnabled();
  // The session survives a reload: the server renders the console straight away.
  await page.reload();
  await expect(page.getByTestId('console')).toHaveAttribute('data-ready', 'true');
  await expect(page.getByTestId('login-form')).toHaveCount(0);
  expect(problems).toEqual([]);
});

test('the tree shows the three nodes online, sorted by name', async ({ page, cluster }) => {
  await logIn(page, cluster.password);
  const nodes = page.getByTestId('tree-node');
  await expect(nodes).toHaveCount(3);
  await expect(nodes.nth(0)).toHaveAttribute('data-node', 'n1');
  await expect(nodes.nth(1)).toHaveAttribute('data-node', 'n2');
  await expect(nodes.nth(2)).toHaveAttribute('data-node', 'n3');
  for (const name of ['n1', 'n2', 'n3']) {
    await expect(treeNode(page, name)).toHaveAttribute('data-status', 'online');
  }
  await expect(page.getByTestId('nodes-online')).toContainText('3 / 3');
  await expect(page.getByTestId('link-state')).toHaveText('live');
});

test('a node summary shows live figures from the node', async ({ page, cluster }) => {
  await logIn(page, cluster.password);
  await treeNode(page, 'n1').getByRole('button').click();
  const summary = page.getByTestId('node-summary');
  await expect(summary).toHaveAttribute('data-node', 'n1');
  await expect(summary.getByTestId('node-state')).toHaveText('online');
  await expect(summary.getByRole('meter', { name: 'CPU usage' })).toBeVisible();
  await expect(summary.getByRole('meter', { name: 'Memory usage' })).toBeVisible();
  await expect(summary).toContainText(/Kernel version/);
  await expect(summary.locator('dd', { hasText: /^(yes|no)$/ })).toHaveCount(1);
});

test('the task panel lists tasks and opens a task log', async ({ page, cluster }) => {
  await logIn(page, cluster.password);
  const rows = page.getByTestId('task-row');
  await expect(rows.first()).toBeVisible();
  await rows.first().click();
  const dialog = page.getByTestId('task-log-dialog');
  await expect(dialog).toBeVisible();
  await expect(dialog.getByRole('heading')).toContainText('Task viewer');
  await expect(dialog.getByTestId('task-log')).toHaveAttribute('aria-busy', 'false');
  await page.keyboard.press('Escape');
  await expect(dialog).toHaveCount(0);
});

test('the join dialog shows a token and the join command', async ({ page, cluster }) => {
  await logIn(page, cluster.password);
  await page.getByTestId('join-node').click();
  const dialog = page.getByTestId('join-dialog');
  await expect(dialog.getByTestId('join-token')).not.toBeEmpty();
  const token = (await dialog.getByTestId('join-token').textContent())?.trim() ?? '';
  await dialog.getByLabel('Node name').fill('n9');
  await dialog.getByLabel('Listen address').fill('127.0.0.1:9999');
  await expect(dialog.getByTestId('join-command')).toHaveText(
    `kiln-node join ${cluster.url} ${token} --name n9 --listen 127.0.0.1:9999`,
  );
  await dialog.getByRole('button', { name: 'Close' }).click();
  await expect(dialog).toHaveCount(0);
});

test('on a narrow window the tree sits above the content', async ({ page, cluster }) => {
  await page.setViewportSize({ width: 400, height: 800 });
  await logIn(page, cluster.password);
  const tree = await page.getByRole('navigation', { name: 'Resource tree' }).boundingBox();
  const content = await page.getByTestId('datacenter-summary').boundingBox();
  expect(tree && content).toBeTruthy();
  expect(tree!.y + tree!.height).toBeLessThanOrEqual(content!.y + 1);
  const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(scrollWidth).toBeLessThanOrEqual(400);
});

test('a killed node turns offline without a reload, and back online when restarted', async ({ page, cluster }) => {
  await logIn(page, cluster.password);
  await expect(treeNode(page, 'n2')).toHaveAttribute('data-status', 'online');
  // A marker on window proves the page is never reloaded.
  await page.evaluate(() => ((window as unknown as { kilnMarker: number }).kilnMarker = 42));

  await cluster.node('n2').kill();
  const offlineWithin = (NODE_TIMEOUT_SECS + 10) * 1000;
  await expect(treeNode(page, 'n2')).toHaveAttribute('data-status', 'offline', { timeout: offlineWithin });
  await expect(treeNode(page, 'n2')).toContainText('offline');
  await expect(treeNode(page, 'n1')).toHaveAttribute('data-status', 'online');
  await expect(page.getByTestId('nodes-online')).toContainText('2 / 3');
  const n2Status = page.getByTestId('cluster-status').locator('tr', { hasText: 'node/n2' });
  await expect(n2Status.locator('td').nth(3)).toHaveText('no');

  await treeNode(page, 'n2').getByRole('button').click();
  await expect(page.getByTestId('node-state')).toHaveText('offline');
  await expect(page.getByTestId('node-offline-notice')).toContainText('n2 is offline');

  cluster.node('n2').start();
  await expect(treeNode(page, 'n2')).toHaveAttribute('data-status', 'online', { timeout: 20_000 });
  await expect(page.getByTestId('node-state')).toHaveText('online');
  expect(await page.evaluate(() => (window as unknown as { kilnMarker?: number }).kilnMarker)).toBe(42);
});

test('logout returns to the login page and the old cookie stops working', async ({ page, context, cluster }) => {
  await logIn(page, cluster.password);
  const cookieHeader = (await context.cookies(cluster.url)).map((c) => `${c.name}=${c.value}`).join('; ');
  expect(cookieHeader).not.toBe('');

  const replay = await playwrightRequest.newContext({
    baseURL: cluster.url,
    ignoreHTTPSErrors: true,
    extraHTTPHeaders: { Cookie: cookieHeader },
  });
  try {
    expect((await replay.get('/api2/json/cluster/resources')).status()).toBe(200);

    await page.getByTestId('logout').click();
    await expect(page.getByTestId('login-form')).toBeVisible();
    await expect(page.getByTestId('console')).toHaveCount(0);

    expect((await replay.get('/api2/json/cluster/resources')).status()).toBe(401);
    // A reload stays logged out.
    await page.reload();
    await expect(page.getByTestId('login-form')).toHaveAttribute('data-ready', 'true');
  } finally {
    await replay.dispose();
  }
});

test('a session ended elsewhere sends the console back to the login page', async ({ page, context, cluster }) => {
  await logIn(page, cluster.password);
  const cookieHeader = (await context.cookies(cluster.url)).map((c) => `${c.name}=${c.value}`).join('; ');
  const other = await playwrightRequest.newContext({
    baseURL: cluster.url,
    ignoreHTTPSErrors: true,
    extraHTTPHeaders: { Cookie: cookieHeader },
  });
  try {
    // The same session, ended from another client (as an expiry or an admin would end it).
    const session = await (await other.get('/api/session')).json();
    expect(session.username).toBe(ADMIN_USER);
    const logout = await other.delete('/api2/json/access/ticket', {
      headers: { CSRFPreventionToken: session.csrf_token },
    });
    expect(logout.status()).toBe(200);
  } finally {
    await other.dispose();
  }
  // The event stream ends with the session; the UI notices the 401 without a reload.
  await expect(page.getByTestId('login-form')).toBeVisible({ timeout: 20_000 });
  await expect(page.getByRole('status')).toContainText('session has ended');
});
