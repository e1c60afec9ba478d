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

test('a user enrols TOTP with the QR code; the login then asks for a code or a recovery key', async ({ browser, cluster, playwright }) => {
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

test('a password an administrator set must be replaced at the first login', async ({ browser, cluster, playwright }) => {
  const api = await playwright.request.newContext({ baseURL: cluster.url, ignoreHTTPSErrors: true });
  try {
    const call = await adminCalls(api, cluster.password);
    await call('POST', '/access/users', { userid: 'sam@kiln', password: 'sam-password-1' });
    await call('PUT', '/access/password', {
      userid: 'sam@kiln', password: 'given-by-admin', 'confirmation-password': cluster.password,
    });
  } finally {
    await api.dispose();
  }
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
