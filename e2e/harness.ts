// A real Kiln cluster for the browser tests: one kiln-server and three kiln-node agents on
// loopback ports picked here, with their data in a temporary directory.
//
// `test` (exported below) gives every test a worker-scoped `cluster` and points `baseURL` at
// the server. The cluster lives as long as the worker: with one worker and no failures, one
// cluster serves the whole run; after a failure Playwright starts a fresh worker and so a fresh
// cluster. Binaries come from target/debug (override with KILN_BIN_DIR). Set KILN_E2E_KEEP=1
// to keep the temporary directory (logs, databases) for a post-mortem.
import { test as base, expect, request as playwrightRequest, type APIRequestContext } from '@playwright/test';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

const REPO_ROOT = path.resolve(__dirname, '..');
const BIN_DIR = process.env.KILN_BIN_DIR ?? path.join(REPO_ROOT, 'target', 'debug');
const NODE_COUNT = 3;
/** The Kiln test guest the nodes register as image `kiln-test-guest` (built by `make guest`). */
export const TEST_GUEST =
  process.env.KILN_TEST_GUEST ?? path.join(REPO_ROOT, 'target', 'guest', 'x86_64-unknown-none', 'release', 'kiln-test-guest');
/** How long the server waits for a heartbeat before it calls a node offline. */
export const NODE_TIMEOUT_SECS = 3;
export const ADMIN_USER = 'root@kiln';

/** One node agent of the test cluster. */
export class KilnNode {
  process: ChildProcess | null = null;

  constructor(
    readonly name: string,
    readonly listen: string,
    readonly dataDir: string,
    private readonly logFile: string,
  ) {}

  /** Starts `kiln-node run` (again, after `kill`). */
  start(): void {
    if (this.isRunning()) return;
    this.process = spawnLogged(bin('kiln-node'), ['run', '--data-dir', this.dataDir, ...vmArgs()], this.logFile, {});
  }

  /** Kills the agent abruptly (SIGKILL), as a crashed host would disappear. */
  async kill(): Promise<void> {
    await stopProcess(this.process, 'SIGKILL');
    this.process = null;
  }

  isRunning(): boolean {
    return this.process !== null && this.process.exitCode === null && this.process.signalCode === null;
  }
}

/** The running cluster handed to tests. */
export class Cluster {
  server: ChildProcess | null = null;
  readonly nodes: KilnNode[] = [];

  constructor(
    readonly dir: string,
    readonly port: number,
    readonly password: string,
  ) {}

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  get serverDataDir(): string {
    return path.join(this.dir, 'server');
  }

  get serverLog(): string {
    return path.join(this.dir, 'server.log');
  }

  node(name: string): KilnNode {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no node ${name} in the test cluster`);
    return node;
  }

  /** An API client logged in as the admin (cookie session, like the browser). */
  async adminApi(): Promise<APIRequestContext> {
    const api = await playwrightRequest.newContext({ baseURL: this.url, ignoreHTTPSErrors: true });
    const response = await api.post('/api2/json/access/ticket', {
      data: { username: ADMIN_USER, password: this.password },
    });
    if (!response.ok()) {
      throw new Error(`admin login failed: HTTP ${response.status()} ${await response.text()}`);
    }
    return api;
  }

  /** Last lines of every log, for error messages. */
  logTails(lines = 30): string {
    const files = [this.serverLog, ...this.nodes.map((n) => path.join(this.dir, `${n.name}.log`))];
    return files
      .filter((f) => fs.existsSync(f))
      .map((f) => `--- ${path.basename(f)} ---\n${fs.readFileSync(f, 'utf8').split('\n').slice(-lines).join('\n')}`)
      .join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => stopProcess(n.process, 'SIGTERM')));
    await stopProcess(this.server, 'SIGTERM');
    this.server = null;
    killStrays(this.dir);
    if (process.env.KILN_E2E_KEEP === '1') {
      console.log(`[harness] kept ${this.dir}`);
    } else {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/**
 * Kills what the node agents left running under `dir`: kiln-vmm processes outlive their agent
 * on purpose, so a failed VM test would otherwise leave its VM behind. Matches by PID on the
 * cluster's own temporary directory in the command line, nothing else.
 */
function killStrays(dir: string): void {
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return;
  }
  for (const pid of pids) {
    if (Number(pid) === process.pid) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.includes(dir)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Gone already, or not ours to read.
    }
  }
}

/** Every process the harness started, killed if the test runner exits early. */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function bin(name: string): string {
  const file = path.join(BIN_DIR, name);
  if (!fs.existsSync(file)) {
    throw new Error(`${file} does not exist: build it first (cargo leptos build), or set KILN_BIN_DIR`);
  }
  return file;
}

let vmArgsCache: string[] | undefined;

/** Whether this kiln-node can run VMs (it has the `--test-guest` and `--vmm-bin` flags). */
function nodeRunsVms(): boolean {
  const help = execFileSync(bin('kiln-node'), ['run', '--help'], { encoding: 'utf8', timeout: 30_000 });
  return help.includes('--test-guest') && help.includes('--vmm-bin');
}

/** `kiln-node run` flags giving the node its VMM and the test guest, when it supports VMs. */
function vmArgs(): string[] {
  if (vmArgsCache === undefined) {
    vmArgsCache = nodeRunsVms() ? ['--test-guest', TEST_GUEST, '--vmm-bin', path.join(BIN_DIR, 'kiln-vmm')] : [];
  }
  return vmArgsCache;
}

/**
 * Why this build cannot run the VM browser tests, or `null` when it can. A kiln-node without
 * VM support skips them (the feature has not landed); a missing guest, VMM or /dev/kvm fails.
 */
export function vmSupport(): { skip: string } | { missing: string } | null {
  let runsVms: boolean;
  try {
    runsVms = nodeRunsVms();
  } catch (e) {
    return { missing: String(e) };
  }
  if (!runsVms) return { skip: 'kiln-node has no --test-guest/--vmm-bin flags yet (VM support not built)' };
  const vmm = path.join(BIN_DIR, 'kiln-vmm');
  if (!fs.existsSync(vmm)) return { missing: `${vmm} does not exist: build it (cargo build -p kiln-vmm)` };
  if (!fs.existsSync(TEST_GUEST)) return { missing: `${TEST_GUEST} does not exist: run make guest (or set KILN_TEST_GUEST)` };
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return { missing: '/dev/kvm is not usable by this user' };
  }
  return null;
}

function spawnLogged(file: string, args: string[], logFile: string, env: NodeJS.ProcessEnv): ChildProcess {
  const log = fs.openSync(logFile, 'a');
  fs.writeSync(log, `\n$ ${path.basename(file)} ${args.join(' ')}\n`);
  const child = spawn(file, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', ...env },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

async function stopProcess(child: ChildProcess | null, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** HTTP status of a GET to the server (self-signed cluster CA, so no verification). */
function statusOf(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { rejectUnauthorized: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, cluster: Cluster): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} ${last}\n${cluster.logTails()}`);
}

async function run(file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync(file, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      timeout: 60_000,
    });
    return stdout;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${path.basename(file)} ${args.join(' ')} failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  }
}

/** Starts the server and three joined, running nodes; resolves once all are online. */
export async function startCluster(): Promise<Cluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-e2e-'));
  const password = `e2e-${Math.random().toString(36).slice(2)}-pw`;
  const cluster = new Cluster(dir, await freePort(), password);
  try {
    fs.mkdirSync(cluster.serverDataDir, { recursive: true });
    cluster.server = spawnLogged(
      bin('kiln-server'),
      [
        'run',
        '--listen', `127.0.0.1:${cluster.port}`,
        '--data-dir', cluster.serverDataDir,
        '--login-failure-delay-ms', '300',
        '--node-timeout-secs', String(NODE_TIMEOUT_SECS),
        // Labs' ends are checked every second, so a lab's end shows within the test's wait.
        '--lab-check-secs', '1',
      ],
      cluster.serverLog,
      { KILN_ADMIN_PASSWORD: password },
    );
    // /version needs authentication: a 401 means the API is up.
    await waitFor('the server to answer', 60_000, async () => {
      if (cluster.server?.exitCode !== null) throw new Error(`kiln-server exited with ${cluster.server?.exitCode}`);
      return (await statusOf(`${cluster.url}/api2/json/version`)) === 401 ? true : undefined;
    }, cluster);

    for (let i = 1; i <= NODE_COUNT; i++) {
      const name = `n${i}`;
      const nodeDir = path.join(dir, name);
      const node = new KilnNode(name, `127.0.0.1:${await freePort()}`, nodeDir, path.join(dir, `${name}.log`));
      const token = (await run(bin('kiln-server'), ['join-token', '--data-dir', cluster.serverDataDir]))
        .trim()
        .split('\n')
        .pop()
        ?.trim();
      if (!token) throw new Error('kiln-server join-token printed no token');
      await run(bin('kiln-node'), ['join', cluster.url, token, '--name', name, '--listen', node.listen, '--data-dir', nodeDir]);
      node.start();
      cluster.nodes.push(node);
    }

    const api = await cluster.adminApi();
    try {
      await waitFor('all nodes online', 30_000, async () => {
        const response = await api.get('/api2/json/nodes');
        if (!response.ok()) throw new Error(`GET /nodes: HTTP ${response.status()}`);
        const nodes: { node: string; status: string }[] = (await response.json()).data;
        const online = nodes.filter((n) => n.status === 'online').length;
        return online === NODE_COUNT ? true : undefined;
      }, cluster);
    } finally {
      await api.dispose();
    }
    return cluster;
  } catch (e) {
    await cluster.stop();
    throw e;
  }
}

type WorkerFixtures = { cluster: Cluster };

/** Playwright's `test` with a running cluster and `baseURL` pointing at it. */
export const test = base.extend<{}, WorkerFixtures>({
  cluster: [
    async ({}, use) => {
      const cluster = await startCluster();
      try {
        await use(cluster);
      } finally {
        await cluster.stop();
      }
    },
    { scope: 'worker', timeout: 180_000 },
  ],
  baseURL: async ({ cluster }, use) => {
    await use(cluster.url);
  },
});

export { expect };
