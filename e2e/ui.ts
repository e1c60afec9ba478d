// Steps the browser tests share: logging in and watching the page for errors.
import type { Page } from '@playwright/test';
import { ADMIN_USER, expect } from './harness';

/** Opens the login page and waits until it is hydrated (the Login button is enabled then). */
export async function openLoginPage(page: Page): Promise<void> {
  await page.goto('/');
  await expect(page.getByTestId('login-form')).toHaveAttribute('data-ready', 'true');
}

/** Logs in as the admin and waits for the hydrated console. */
export async function logIn(page: Page, password: string): Promise<void> {
  await logInAs(page, ADMIN_USER, password);
}

/** Logs in as `user` and waits for the hydrated console. */
export async function logInAs(page: Page, user: string, password: string): Promise<void> {
  await openLoginPage(page);
  await page.getByTestId('login-username').fill(user);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  await expect(page.getByTestId('console')).toHaveAttribute('data-ready', 'true');
}

/** Logs in as `user` whose account asks for a first-login step (`setup-password` or
 *  `setup-tfa`), and waits for that step's hydrated page. */
export async function logInToSetup(page: Page, user: string, password: string, step: string): Promise<void> {
  await openLoginPage(page);
  await page.getByTestId('login-username').fill(user);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  const setup = page.getByTestId('setup-page');
  await expect(setup).toHaveAttribute('data-ready', 'true');
  await expect(setup).toHaveAttribute('data-step', step);
}

/** Collects console errors and failed requests, which hydration bugs and 404s show up as. */
export function watchConsole(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  return problems;
}
