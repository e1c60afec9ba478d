// Teaching labs from the browser, on real KVM (see ../harness.ts): an instructor imports a
// three-student CSV and deploys a lab from a template; a student logs in, sees only their own
// VM, starts it and types into its console; ending the lab stops the VMs.
import type { APIRequestContext, Browser, Locator, Page } from '@playwright/test';
import { ADMIN_USER, expect, test, vmSupport } from '../harness';
import { logIn, logInAs, logInToSetup, watchConsole } from '../ui';

const support = vmSupport();
test.skip(support !== null && 'skip' in support, support !== null && 'skip' in support ? support.skip : '');
test.beforeAll(() => {
  if (support !== null && 'missing' in support) throw new Error(`cannot run the lab browser tests: ${support.missing}`);
});

const TEACHER = 'teacher@kiln';
const TEACHER_PW = 'teacher-password-1';
const LAB = 'course1';
const ROSTER = [
  'username,email,firstname,lastname',
  'hedy,hedy@example.org,Hedy,Lamarr',
  'grace,grace@example.org,Grace,Hopper',
  'alan,alan@example.org,Alan,Turing',
  '',
].join('\n');

/** An admin API session: `call` sends a request with the CSRF token and checks the answer. */
async function adminCalls(api: APIRequestContext, password: string) {
  const login = await api.post('/api2/json/access/ticket', { data: { username: ADMIN_USER, password } });
  expect(login.status()).toBe(200);
  const csrf = (await login.json()).data.CSRFPreventionToken as string;
  const call = async (method: 'POST' | 'PUT' | 'DELETE', path: string, data?: object) => {
    const res = await api.fetch(`/api2/json${path}`, { method, data, headers: { CSRFPreventionToken: csrf } });
    const body = await res.text();
    expect(res.status(), `${method} ${path}: ${body}`).toBe(200);
    return JSON.parse(body).data;
  };
  const waitTask = async (upid: string) => {
    const node = upid.split(':')[1];
    await expect
      .poll(async () => (await (await api.get(`/api2/json/nodes/${node}/tasks/${upid}/status`)).json()).data.exitstatus, {
        timeout: 30_000,
      })
      .toBe('OK');
  };
  return { call, waitTask, csrf };
}

function terminalLine(scope: Locator, text: string): Locator {
  const exact = new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`);
  return scope.locator('.xterm-rows > div').filter({ hasText: exact });
}

function studentRow(page: Page, userid: string): Locator {
  return page.locator(`[data-testid="lab-student"][data-userid="${userid}"]`);
}

test('an instructor deploys a lab from a CSV; a student uses only their VM; the end stops it', async ({ page, browser, cluster, playwright }) => {
  test.setTimeout(240_000);
  const api = await playwright.request.newContext({ baseURL: cluster.url, ignoreHTTPSErrors: true });
  try {
    await labTest(page, browser, api, cluster.password);
  } finally {
    await api.dispose();
  }
});

async function labTest(page: Page, browser: Browser, api: APIRequestContext, password: string): Promise<void> {
  const admin = await adminCalls(api, password);
  // The administrator's part, through the API: a VM for the template, the lab's pool with a
  // quota, and an instructor who holds KilnLabInstructor on the pool and may clone the VM.
  await admin.waitTask(await admin.call('POST', '/nodes/n1/qemu', { vmid: 900, name: 'lab-template', memory: 64 }));
  await admin.call('POST', '/pools', { poolid: LAB, comment: 'Networks 101', 'max-vcpus': 3, 'max-memory': 256 });
  await admin.call('POST', '/access/users', { userid: TEACHER, password: TEACHER_PW });
  await admin.call('PUT', '/access/acl', { path: `/pool/${LAB}`, roles: 'KilnLabInstructor', users: TEACHER });
  await admin.call('PUT', '/access/acl', { path: '/vms/900', roles: 'PVETemplateUser', users: TEACHER });

  // The administrator makes the VM a template in the UI; Datacenter → Labs lists labs.
  await logIn(page, password);
  await page.locator('[data-testid="tree-vm"][data-vmid="900"]').getByRole('button').click();
  await page.getByTestId('vm-template').click();
  await page.getByTestId('vm-template-dialog').getByTestId('vm-template-confirm').click();
  await expect(page.getByTestId('vm-template-dialog')).toHaveCount(0);
  await expect(page.getByTestId('vm-view').locator('h2.summary-title')).toContainText('Template 900 (lab-template)', { timeout: 15_000 });
  await expect(page.getByTestId('vm-action-start')).toBeDisabled();
  await expect(page.getByTestId('vm-template')).toBeDisabled();
  await page.getByTestId('tree-datacenter').getByRole('button').first().click();
  await page.getByTestId('dc-tab-labs').click();
  await expect(page.getByTestId('labs-view')).toBeVisible();
  await page.getByTestId('logout').click();
  await expect(page.getByTestId('login-form')).toBeVisible();

  // The instructor sees no nodes, so the console is their labs page.
  const problems = watchConsole(page);
  // No request of the instructor's pages may fail (the console only says "404", not where).
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  await logInAs(page, TEACHER, TEACHER_PW);
  await expect(page.getByTestId('lab-home')).toBeVisible();
  await expect(page.getByTestId('tree-datacenter')).toHaveCount(0);
  await page.getByTestId('lab-create').click();
  const wizard = page.getByTestId('lab-wizard');
  await expect(wizard).toBeVisible();
  await wizard.getByTestId('lab-wizard-id').fill(LAB);
  await expect(wizard.getByTestId('lab-wizard-template')).toHaveValue('900');
  // A roster with a mistake is reported by line before anything is sent.
  await wizard.getByTestId('lab-wizard-file').setInputFiles({
    name: 'roster.csv',
    mimeType: 'text/csv',
    buffer: Buffer.from(`${ROSTER}hedy,again@example.org,Hedy,Again\n`),
  });
  await expect(wizard.getByTestId('lab-error-csv')).toContainText('line 5: user hedy@kiln is already on line 2');
  await wizard.getByTestId('lab-wizard-file').setInputFiles({ name: 'roster.csv', mimeType: 'text/csv', buffer: Buffer.from(ROSTER) });
  await expect(wizard.getByTestId('lab-wizard-csv-preview')).toHaveText('3 student(s): hedy@kiln, grace@kiln, alan@kiln');
  await expect(wizard.getByTestId('lab-error-csv')).toHaveCount(0);
  await expect(wizard.getByTestId('lab-wizard-vcpus')).toHaveValue('1');
  await expect(wizard.getByTestId('lab-wizard-memory')).toHaveValue('64');
  await wizard.getByTestId('lab-wizard-submit').click();

  // The accounts and their one-time passwords, shown once.
  const accounts = page.getByTestId('lab-accounts-dialog');
  await expect(accounts.getByTestId('lab-account')).toHaveCount(3);
  const hedyPassword = (await accounts.locator('[data-userid="hedy@kiln"]').getByTestId('lab-account-password').textContent())?.trim() ?? '';
  expect(hedyPassword).toMatch(/^[A-Za-z0-9]{12}$/);
  await accounts.getByRole('button', { name: 'Done' }).click();

  // The dashboard: deploy, with the task's progress and a line per student.
  const dashboard = page.getByTestId('lab-dashboard');
  await expect(dashboard).toHaveAttribute('data-labid', LAB);
  await expect(page.getByTestId('lab-student')).toHaveCount(3);
  await page.getByTestId('lab-deploy').click();
  const viewer = page.getByTestId('task-log-dialog');
  await expect(viewer).toContainText(`labdeploy ${LAB}`);
  await expect(viewer.getByTestId('task-log-status')).toHaveText('OK', { timeout: 60_000 });
  await expect(viewer.getByTestId('task-log')).toContainText('hedy@kiln: VM');
  await page.keyboard.press('Escape');
  for (const user of ['hedy@kiln', 'grace@kiln', 'alan@kiln']) {
    await expect(studentRow(page, user)).toHaveAttribute('data-vmid', /^\d+$/, { timeout: 15_000 });
    await expect(studentRow(page, user)).toHaveAttribute('data-status', 'stopped');
  }
  const hedyVm = await studentRow(page, 'hedy@kiln').getAttribute('data-vmid');

  // A student logs in (another browser context): their lab and their VM, nothing else.
  const studentContext = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  try {
    const student = await studentContext.newPage();
    const studentProblems = watchConsole(student);
    // The one-time password must be replaced by one of the student's own before anything else.
    await logInToSetup(student, 'hedy@kiln', hedyPassword, 'setup-password');
    await expect(student.getByTestId('lab-home')).toHaveCount(0);
    const form = student.getByTestId('password-form');
    await form.getByTestId('password-current').fill(hedyPassword);
    await form.getByTestId('password-new').fill('hedy-own-password');
    await form.getByTestId('password-repeat').fill('hedy-own-password');
    await form.getByTestId('password-submit').click();
    await expect(student.getByTestId('console')).toHaveAttribute('data-ready', 'true');
    await expect(student.getByTestId('lab-home')).toBeVisible();
    await expect(student.getByTestId('tree-datacenter')).toHaveCount(0);
    await expect(student.getByTestId('create-vm')).toHaveCount(0);
    await expect(student.getByTestId('student-lab')).toHaveCount(1);
    await expect(student.getByTestId('labs-view')).toHaveCount(0);
    const vm = student.getByTestId('student-vm');
    await expect(vm).toHaveCount(1);
    await expect(vm).toHaveAttribute('data-vmid', hedyVm ?? '');
    await expect(vm).toHaveAttribute('data-status', 'stopped');
    await vm.getByTestId('student-vm-start').click();
    await expect(vm).toHaveAttribute('data-status', 'running', { timeout: 30_000 });
    // The instructor's dashboard follows.
    await expect(studentRow(page, 'hedy@kiln')).toHaveAttribute('data-status', 'running', { timeout: 30_000 });

    // The console: the guest's prompt, then a command typed into it.
    await vm.getByTestId('student-vm-console').click();
    await expect(vm.getByTestId('console-state')).toHaveAttribute('data-state', 'connected', { timeout: 30_000 });
    const terminal = vm.getByTestId('vm-console');
    await expect(terminal.locator('.xterm-rows')).toContainText('kiln>', { timeout: 30_000 });
    await terminal.click();
    await student.keyboard.type('echo hello');
    await student.keyboard.press('Enter');
    await expect(terminalLine(terminal, 'hello')).toHaveCount(1, { timeout: 15_000 });

    // The instructor ends the lab: the schedule stops the VMs, and the student cannot start
    // theirs again.
    await page.getByTestId('lab-end-now').click();
    await expect(vm).toHaveAttribute('data-status', 'stopped', { timeout: 30_000 });
    await expect(studentRow(page, 'hedy@kiln')).toHaveAttribute('data-status', 'stopped', { timeout: 30_000 });
    await expect(page.getByTestId('lab-state')).toHaveText('ended', { timeout: 15_000 });
    await expect(student.getByTestId('student-lab')).toHaveAttribute('data-state', 'ended', { timeout: 15_000 });
    await expect(student.getByTestId('student-vm-start')).toBeDisabled();
    expect(studentProblems).toEqual([]);
  } finally {
    await studentContext.close();
  }

  // Tear down: the students' VMs go.
  await page.getByTestId('lab-teardown').click();
  const confirm = page.getByTestId('lab-teardown-dialog');
  await confirm.getByTestId('lab-teardown-input').fill(LAB);
  await confirm.getByTestId('lab-teardown-confirm').click();
  await expect(page.getByTestId('task-log-dialog').getByTestId('task-log-status')).toHaveText('OK', { timeout: 60_000 });
  await page.keyboard.press('Escape');
  await expect(page.getByTestId('lab-row')).toHaveCount(0);
  expect(problems).toEqual([]);
  // Leave the cluster as it was for the other tests: the template goes too.
  await admin.waitTask(await admin.call('DELETE', '/nodes/n1/qemu/900'));
}
