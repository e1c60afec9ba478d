// Access in the web UI, against a real cluster (see ../harness.ts): two-factor enrolment with a
// QR code and the login's second step, the first-login steps the server enforces (a password
// to replace, a second factor the account requires), and Datacenter → Permissions editing.
import { createHmac } from 'node:crypto';
import type { APIRequestContext, Browser, Page } from '@playwright/test';
import { ADMIN_USER, expect, test } from '../harness';
import { logIn, logInAs, logInToSetup, openLoginPage, watchConsole } from '../ui';

/** RFC 4648 base32 (no padding) → bytes. */
function base32Decode(text: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const ch of text.replace(/[\s=]/g, '').toUpperCase()) {
    const index = alphabet.indexOf(ch);
    if (index < 0) throw new Error(`not base32: ${ch}`);
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** The TOTP code (RFC 6238: HMAC-SHA1, 30 s, 6 digits) of `secret` at `unixSecs`. */
function totp(secret: string, unixSecs: number): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSecs / 30)));
  const mac = createHmac('sha1', base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return code.toString().padStart(6, '0');
}

const now = () => Date.now() / 1000;

/** An admin API session: `call` sends a request with the CSRF token and checks the answer. */
async function adminCalls(api: APIRequestContext, password: string) {
  const login = await api.post('/api2/json/access/ticket', { data: { username: ADMIN_USER, password } });
  expect(login.status()).toBe(200);
  const csrf = (await login.json()).data.CSRFPreventionToken as string;
  return async (method: 'POST' | 'PUT' | 'DELETE', path: string, data?: object) => {
    const res = await api.fetch(`/api2/json${path}`, { method, data, headers: { CSRFPreventionToken: csrf } });
    const body = await res.text();
    expect(res.status(), `${method} ${path}: ${body}`).toBe(200);
    return JSON.parse(body).data;
  };
}

/** Runs `body` with a page in a fresh browser context (another user's browser). */
async function asAnotherBrowser(browser: Browser, body: (page: Page) => Promise<void>): Promise<void> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  try {
    await body(await context.newPage());
  } finally {
    await context.close();
  }
}

/** Enrols an authenticator in the open enrolment form; returns its secret and the recovery keys. */
async function enrolTotp(page: Page, password: string): Promise<{ secret: string; keys: string[] }> {
  const form = page.getByTestId('tfa-enrolment');
  await expect(form.getByTestId('tfa-qr').locator('svg')).toBeVisible();
  const secret = (await form.getByTestId('tfa-secret').getAttribute('data-secret')) ?? '';
  expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  await expect(form.getByTestId('tfa-secret')).toContainText(secret.slice(0, 4));
  // A wrong code is refused with the server's message at the field.
  await form.getByTestId('tfa-enrol-code').fill(totp(secret, now() + 300));
  await form.getByTestId('tfa-enrol-password').fill(password);
  await form.getByTestId('tfa-enrol-submit').click();
  await expect(form.getByTestId('tfa-enrol-code-error')).toContainText('not the current code');
  await form.getByTestId('tfa-enrol-code').fill(totp(secret, now()));
  await form.getByTestId('tfa-enrol-submit').click();
  const keys = page.getByTestId('recovery-keys').getByTestId('recovery-key');
  await expect(keys).toHaveCount(10);
  return { secret, keys: (await keys.allTextContents()).map((k) => k.trim()) };
}

/** The password step of a login that must lead to the second-factor form. */
async function passwordStep(page: Page, user: string, password: string): Promise<void> {
  await openLoginPage(page);
  await page.getByTestId('login-username').fill(user);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  await expect(page.getByTestId('tfa-form')).toBeVisible();
}

async function logOut(page: Page): Promise<void> {
  await page.getByTestId('logout').click();
  await expect(page.getByTestId('login-form')).toBeVisible();
}

test('a user enrols TOTP with the QR code; the login then asks for a code or a recovery key', async ({ page, browser, cluster, playwright }) => {
  const api = await playwright.request.newContext({ baseURL: cluster.url, ignoreHTTPSErrors: true });
  try {
    const call = await adminCalls(api, cluster.password);
    await call('POST', '/access/users', { userid: 'tia@kiln', password: 'tia-password-1' });
  } finally {
    await api.dispose();
  }
  await asAnotherBrowser(browser, async (tia) => {
    const problems = watchConsole(tia);
    await logInAs(tia, 'tia@kiln', 'tia-password-1');
    await tia.getByTestId('open-tfa').click();
    const dialog = tia.getByTestId('tfa-dialog');
    await expect(dialog.getByTestId('tfa-none')).toBeVisible();
    await dialog.getByTestId('tfa-add-totp').click();
    const { secret, keys } = await enrolTotp(tia, 'tia-password-1');
    await dialog.getByTestId('tfa-enrol-done').click();
    await expect(dialog.locator('[data-testid="tfa-factor"][data-id="totp"]')).toBeVisible();
    await expect(dialog.locator('[data-testid="tfa-factor"][data-id="recovery"]')).toContainText('10');
    await dialog.getByRole('button', { name: 'Close' }).click();
    await logOut(tia);

    // The next login asks for the code: a wrong one is refused with the server's message, the
    // right one (the next step's: the enrolment used the current one) opens the console.
    await passwordStep(tia, 'tia@kiln', 'tia-password-1');
    await tia.getByTestId('tfa-code').fill(totp(secret, now() + 300));
    await tia.getByTestId('tfa-submit').click();
    await expect(tia.getByTestId('login-error')).toContainText('authentication failure');
    await expect(tia.getByTestId('tfa-form')).toBeVisible();
    await tia.getByTestId('tfa-code').fill(totp(secret, now() + 30));
    await tia.getByTestId('tfa-submit').click();
    await expect(tia.getByTestId('console')).toHaveAttribute('data-ready', 'true');
    await expect(tia.getByTestId('current-user')).toHaveText('tia@kiln');
    await logOut(tia);

    // A recovery key works once.
    await passwordStep(tia, 'tia@kiln', 'tia-password-1');
    await tia.getByTestId('tfa-switch').click();
    await tia.getByTestId('tfa-code').fill(keys[0]);
    await tia.getByTestId('tfa-submit').click();
    await expect(tia.getByTestId('console')).toHaveAttribute('data-ready', 'true');
    await logOut(tia);
    await passwordStep(tia, 'tia@kiln', 'tia-password-1');
    await tia.getByTestId('tfa-switch').click();
    await tia.getByTestId('tfa-code').fill(keys[0]);
    await tia.getByTestId('tfa-submit').click();
    await expect(tia.getByTestId('login-error')).toContainText('authentication failure');
    await expect(tia.getByTestId('console')).toHaveCount(0);
    // The refused code (400) and answers (401) are expected; nothing else may fail.
    expect(problems.filter((p) => !/status of 40[01]/.test(p))).toEqual([]);
  });

  // A lost phone: the administrator removes tia's factors in Permissions (and cannot enrol
  // any for her); the password alone logs her in again.
  await logIn(page, cluster.password);
  await page.getByTestId('dc-tab-permissions').click();
  await page.locator('[data-testid="user-row"][data-userid="tia@kiln"]').getByTestId('user-tfa').click();
  const factors = page.getByTestId('tfa-dialog');
  await expect(factors.getByTestId('tfa-add-totp')).toHaveCount(0);
  for (const id of ['totp', 'recovery']) {
    await factors.locator(`[data-testid="tfa-factor"][data-id="${id}"]`).getByTestId('tfa-remove').click();
    await expect(factors.locator(`[data-testid="tfa-factor"][data-id="${id}"]`)).toHaveCount(0);
  }
  await expect(factors.getByTestId('tfa-none')).toBeVisible();
  await asAnotherBrowser(browser, async (tia) => {
    await logInAs(tia, 'tia@kiln', 'tia-password-1');
  });
});

test('a user who must have a second factor is sent to enrolment first', async ({ browser, cluster, playwright }) => {
  const api = await playwright.request.newContext({ baseURL: cluster.url, ignoreHTTPSErrors: true });
  try {
    const call = await adminCalls(api, cluster.password);
    await call('POST', '/access/users', { userid: 'ron@kiln', password: 'ron-password-1', 'tfa-required': 1 });
  } finally {
    await api.dispose();
  }
  await asAnotherBrowser(browser, async (ron) => {
    const problems = watchConsole(ron);
    await logInToSetup(ron, 'ron@kiln', 'ron-password-1', 'setup-tfa');
    await expect(ron.getByTestId('console')).toHaveCount(0);
    const { secret } = await enrolTotp(ron, 'ron-password-1');
    await ron.getByTestId('tfa-enrol-done').click();
    await expect(ron.getByTestId('console')).toHaveAttribute('data-ready', 'true');
    await expect(ron.getByTestId('current-user')).toHaveText('ron@kiln');
    await logOut(ron);
    await passwordStep(ron, 'ron@kiln', 'ron-password-1');
    await ron.getByTestId('tfa-code').fill(totp(secret, now() + 30));
    await ron.getByTestId('tfa-submit').click();
    await expect(ron.getByTestId('console')).toHaveAttribute('data-ready', 'true');
    expect(problems.filter((p) => !/status of 400/.test(p))).toEqual([]);
  });
});

test('a password an administrator set must be replaced at the first login', async ({ page, browser, cluster, playwright }) => {
  const api = await playwright.request.newContext({ baseURL: cluster.url, ignoreHTTPSErrors: true });
  try {
    const call = await adminCalls(api, cluster.password);
    await call('POST', '/access/users', { userid: 'sam@kiln', password: 'sam-password-1' });
  } finally {
    await api.dispose();
  }
  // The administrator sets a new password in Permissions (confirmed with its own).
  await logIn(page, cluster.password);
  await page.getByTestId('dc-tab-permissions').click();
  await page.locator('[data-testid="user-row"][data-userid="sam@kiln"]').getByTestId('user-edit').click();
  const edit = page.getByTestId('user-dialog');
  await edit.getByTestId('user-new-password').fill('given-by-admin');
  await edit.getByTestId('user-confirmation').fill('not-my-password');
  await edit.getByTestId('user-save').click();
  await expect(edit.getByTestId('user-confirmation-error')).toContainText('not the current password');
  await edit.getByTestId('user-confirmation').fill(cluster.password);
  await edit.getByTestId('user-save').click();
  await expect(edit).toHaveCount(0);
  await asAnotherBrowser(browser, async (sam) => {
    const problems = watchConsole(sam);
    await logInToSetup(sam, 'sam@kiln', 'given-by-admin', 'setup-password');
    const form = sam.getByTestId('password-form');
    await form.getByTestId('password-current').fill('not-the-password');
    await form.getByTestId('password-new').fill('sam-own-password');
    await form.getByTestId('password-repeat').fill('sam-own-password');
    await form.getByTestId('password-submit').click();
    await expect(form.getByTestId('password-error')).toContainText('not the current password');
    await form.getByTestId('password-current').fill('given-by-admin');
    await form.getByTestId('password-submit').click();
    await expect(sam.getByTestId('console')).toHaveAttribute('data-ready', 'true');
    await logOut(sam);
    await logInAs(sam, 'sam@kiln', 'sam-own-password');
    expect(problems.filter((p) => !/status of 400/.test(p))).toEqual([]);
  });
});

test('an administrator manages users, groups, roles, ACL entries and tokens in Permissions; the user sees only what was granted', async ({ page, browser, cluster }) => {
  const problems = watchConsole(page);
  await logIn(page, cluster.password);
  await page.getByTestId('dc-tab-permissions').click();
  const view = page.getByTestId('permissions-view');

  // A group.
  await view.getByTestId('group-add').click();
  let dialog = page.getByTestId('group-dialog');
  await dialog.getByTestId('group-id').fill('bad id');
  await expect(dialog.getByTestId('group-id-error')).toContainText('letters, digits');
  await dialog.getByTestId('group-id').fill('ops9');
  await expect(dialog.getByTestId('group-id-error')).toHaveCount(0);
  await dialog.getByTestId('group-comment').fill('night shift');
  await dialog.getByTestId('group-save').click();
  await expect(dialog).toHaveCount(0);
  const group = view.locator('[data-testid="group-row"][data-groupid="ops9"]');
  await expect(group).toContainText('night shift');

  // A user in that group, checked as typed; the server's refusal shows in the dialog.
  await view.getByTestId('user-add').click();
  dialog = page.getByTestId('user-dialog');
  await dialog.getByTestId('user-id').fill('uma');
  await expect(dialog.getByTestId('user-id-error')).toContainText('name@kiln');
  await dialog.getByTestId('user-id').fill('root@kiln');
  await dialog.getByTestId('user-password').fill('short');
  await expect(dialog.getByTestId('user-password-error')).toContainText('8 to 1024');
  await dialog.getByTestId('user-password').fill('uma-password-1');
  await dialog.getByTestId('user-password-repeat').fill('uma-password-1');
  await dialog.getByTestId('user-save').click();
  await expect(dialog.getByTestId('user-dialog-error')).toContainText('already exists');
  await dialog.getByTestId('user-id').fill('uma@kiln');
  await dialog.getByTestId('user-firstname').fill('Uma');
  await dialog.getByTestId('user-lastname').fill('Ops');
  await dialog.locator('[data-testid="user-group"][data-groupid="ops9"]').check();
  await dialog.getByTestId('user-save').click();
  await expect(dialog).toHaveCount(0);
  const uma = view.locator('[data-testid="user-row"][data-userid="uma@kiln"]');
  await expect(uma).toContainText('Uma Ops');
  await expect(uma).toContainText('ops9');
  await expect(group).toContainText('uma@kiln');

  // Edit: a comment and the e-mail (checked as typed).
  await uma.getByTestId('user-edit').click();
  dialog = page.getByTestId('user-dialog');
  await dialog.getByTestId('user-email').fill('nope');
  await expect(dialog.getByTestId('user-email-error')).toContainText('e-mail');
  await dialog.getByTestId('user-email').fill('uma@example.org');
  await dialog.getByTestId('user-save').click();
  await expect(dialog).toHaveCount(0);

  // A custom role: built-ins are read-only, a custom one can be edited and removed.
  await expect(view.locator('[data-testid="role-row"][data-roleid="PVEAuditor"]').getByTestId('role-edit')).toHaveCount(0);
  await view.getByTestId('role-add').click();
  dialog = page.getByTestId('role-dialog');
  await dialog.getByTestId('role-id').fill('NodeWatcher');
  await dialog.locator('[data-testid="role-priv"][data-priv="Sys.Audit"]').check();
  await dialog.getByTestId('role-save').click();
  await expect(dialog).toHaveCount(0);
  const role = view.locator('[data-testid="role-row"][data-roleid="NodeWatcher"]');
  await expect(role).toContainText('Sys.Audit');

  // The grant: the group may watch node n1 only.
  await view.getByTestId('acl-add').click();
  dialog = page.getByTestId('acl-dialog');
  await dialog.getByTestId('acl-path').fill('nodes/n1');
  await expect(dialog.getByTestId('acl-path-error')).toContainText('/nodes/<node>');
  await dialog.getByTestId('acl-path').fill('/nodes/n1');
  await dialog.getByTestId('acl-type').selectOption('group');
  await dialog.getByTestId('acl-who').selectOption('ops9');
  await dialog.getByTestId('acl-role').selectOption('NodeWatcher');
  await dialog.getByTestId('acl-save').click();
  await expect(dialog).toHaveCount(0);
  const grant = view.locator('[data-testid="acl-row"][data-path="/nodes/n1"][data-ugid="ops9"]');
  await expect(grant).toContainText('NodeWatcher');

  // An API token: its secret is shown once, then it is revoked.
  await uma.getByTestId('user-tokens').click();
  dialog = page.getByTestId('tokens-dialog');
  await dialog.getByTestId('token-id').fill('1ci');
  await expect(dialog.getByTestId('token-id-error')).toContainText('starting with a letter');
  await dialog.getByTestId('token-id').fill('ci');
  await dialog.getByTestId('token-create').click();
  await expect(dialog.getByTestId('token-full-id')).toHaveText('uma@kiln!ci');
  await expect(dialog.getByTestId('token-secret')).toHaveText(/^[0-9a-f-]{16,}$/);
  const token = dialog.locator('[data-testid="token-row"][data-tokenid="ci"]');
  await expect(token).toContainText('yes');
  await token.getByTestId('token-revoke').click();
  await page.getByTestId('perm-remove-confirm').click();
  await expect(token).toHaveCount(0);
  await dialog.getByRole('button', { name: 'Close' }).click();

  // Uma sees node n1 and nothing else of the cluster.
  await asAnotherBrowser(browser, async (umaPage) => {
    const refused: string[] = [];
    umaPage.on('response', (res) => {
      if (res.status() >= 400) refused.push(`${res.status()} ${new URL(res.url()).pathname}`);
    });
    await logInAs(umaPage, 'uma@kiln', 'uma-password-1');
    await expect(umaPage.locator('[data-testid="tree-node"][data-node="n1"]')).toBeVisible();
    await expect(umaPage.getByTestId('tree-node')).toHaveCount(1);
    await expect(umaPage.getByTestId('console')).toHaveAttribute('data-ready', 'true');
    // The Datacenter summary leaves out the cluster and HA status (Sys.Audit on / only):
    // nothing is refused.
    await expect(umaPage.getByTestId('datacenter-summary')).toBeVisible();
    await expect(umaPage.getByTestId('cluster-status')).toHaveCount(0);
    expect(refused).toEqual([]);
  });

  // Removing the grant, the role, the user and the group.
  await grant.getByTestId('acl-remove').click();
  await page.getByTestId('perm-remove-confirm').click();
  await expect(grant).toHaveCount(0);
  await role.getByTestId('role-remove').click();
  await page.getByTestId('perm-remove-confirm').click();
  await expect(role).toHaveCount(0);
  await uma.getByTestId('user-remove').click();
  await page.getByTestId('perm-remove-confirm').click();
  await expect(uma).toHaveCount(0);
  await group.getByTestId('group-remove').click();
  await page.getByTestId('perm-remove-confirm').click();
  await expect(group).toHaveCount(0);
  // The refused user (it exists) answered 409 or 400; nothing else may fail.
  expect(problems.filter((p) => !/status of 4(00|09)/.test(p))).toEqual([]);
});

test('an administrator adds a pool with quotas, changes them and removes the pool', async ({ page, cluster }) => {
  const problems = watchConsole(page);
  await logIn(page, cluster.password);
  await page.getByTestId('dc-tab-pools').click();
  await page.getByTestId('pool-add').click();
  let dialog = page.getByTestId('pool-dialog');
  await dialog.getByTestId('pool-id').fill('team9');
  await dialog.getByTestId('pool-comment').fill('team nine');
  await dialog.getByTestId('pool-max-vms').fill('0');
  await expect(dialog.getByTestId('pool-max-vms-error')).toContainText('1 to 1000000');
  await dialog.getByTestId('pool-max-vms').fill('5');
  await dialog.getByTestId('pool-max-vcpus').fill('8');
  await dialog.getByTestId('pool-max-memory').fill('2048');
  await dialog.getByTestId('pool-save').click();
  await expect(dialog).toHaveCount(0);
  const pool = page.locator('[data-testid="pool"][data-pool="team9"]');
  await expect(pool).toContainText('team nine');
  await expect(pool).toContainText('0 of 5 VMs');
  await expect(pool).toContainText('0 of 8 vCPUs');

  // The same id again: the server's refusal shows in the dialog.
  await page.getByTestId('pool-add').click();
  dialog = page.getByTestId('pool-dialog');
  await dialog.getByTestId('pool-id').fill('team9');
  await dialog.getByTestId('pool-save').click();
  await expect(dialog.getByTestId('pool-dialog-error')).toContainText('already exists');
  await dialog.getByRole('button', { name: 'Cancel' }).click();

  // Edit: more vCPUs, no VM limit.
  await pool.getByTestId('pool-edit').click();
  dialog = page.getByTestId('pool-dialog');
  await expect(dialog.getByTestId('pool-max-vms')).toHaveValue('5');
  await dialog.getByTestId('pool-max-vms').fill('');
  await dialog.getByTestId('pool-max-vcpus').fill('16');
  await dialog.getByTestId('pool-save').click();
  await expect(dialog).toHaveCount(0);
  await expect(pool).toContainText('0 of 16 vCPUs');
  await expect(pool).toContainText('0 VMs (no limit)');

  await pool.getByTestId('pool-remove').click();
  await page.getByTestId('pool-remove-confirm').click();
  await expect(pool).toHaveCount(0);
  expect(problems.filter((p) => !/status of 409/.test(p))).toEqual([]);
});
