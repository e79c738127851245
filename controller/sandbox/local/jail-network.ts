import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import { killQuietly } from './session-cgroup.js';

/**
 * The network of a jail that may reach the internet (SANDBOX_NETWORK=egress, issue 14): its own
 * network namespace — never the host's — connected through a user-mode network stack (pasta, else
 * slirp4netns) that turns the jail's TCP/UDP into ordinary sockets of the host. From inside, the
 * host's loopback, link-local (169.254.0.0/16: the metadata server), private ranges and the host's
 * own addresses are unreachable: `unreachable` routes set before any code runs, by a process the
 * code never meets (the code has no CAP_NET_ADMIN over this namespace to undo them).
 * pasta: https://passt.top/builds/latest/web/passt.1.html; slirp4netns:
 * https://github.com/rootless-containers/slirp4netns/blob/master/slirp4netns.1.md
 */

/** Addresses inside the namespace: TEST-NET-2 (RFC 5737), never routed, so no real destination is shadowed. */
export const JAIL_ADDRESSES = { address: '198.51.100.100', prefixLength: 24, gateway: '198.51.100.2', dns: '198.51.100.3' };

/** IPv4 ranges no step may reach (besides every address of the host itself). */
const BLOCKED_IPV4_RANGES = [
  '0.0.0.0/8', // "this network"
  '10.0.0.0/8', // private
  '100.64.0.0/10', // carrier-grade NAT (also used inside clouds)
  '169.254.0.0/16', // link-local: the cloud metadata server
  '172.16.0.0/12', // private
  '192.168.0.0/16', // private
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, broadcast
];

export type NetworkStack = 'pasta' | 'slirp4netns';

export interface NetworkTools {
  stack: NetworkStack;
  stackPath: string;
  ip: string;
  nsenter: string;
  unshare: string;
}

const SEARCH_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function findTool(name: string, searchPath: string): string | undefined {
  const dirs = [...searchPath.split(':').filter(Boolean), ...SEARCH_DIRS];
  return dirs.map((dir) => join(dir, name)).find((path) => existsSync(path));
}

/** pasta when installed, else slirp4netns; with iproute2's ip and util-linux's nsenter/unshare (searchPath, then the sbin folders). */
export function findNetworkTools(searchPath: string): NetworkTools | string {
  const ip = findTool('ip', searchPath);
  const nsenter = findTool('nsenter', searchPath);
  const unshare = findTool('unshare', searchPath);
  const pasta = findTool('pasta', searchPath);
  const slirp = findTool('slirp4netns', searchPath);
  const missing = [ip ? '' : 'ip (iproute2)', nsenter && unshare ? '' : 'nsenter/unshare (util-linux)', pasta || slirp ? '' : 'pasta (passt) or slirp4netns'];
  if (missing.some(Boolean)) return `missing ${missing.filter(Boolean).join(', ')}`;
  return { stack: pasta ? 'pasta' : 'slirp4netns', stackPath: (pasta ?? slirp)!, ip: ip!, nsenter: nsenter!, unshare: unshare! };
}

/** `ip -batch` lines that make the blocked destinations unreachable inside the namespace. */
export function blockedRouteCommands(hostAddresses = hostIpv4Addresses()): string[] {
  return [
    ...BLOCKED_IPV4_RANGES.map((range) => `route add unreachable ${range}`),
    ...hostAddresses.map((address) => `route replace unreachable ${address}/32`),
    'route add unreachable ::/0', // egress is IPv4 only (pasta -4; slirp4netns without --enable-ipv6)
  ];
}

/** Every IPv4 address of this host but loopback: the stack would otherwise connect to them from the host. */
export function hostIpv4Addresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((entries) => entries ?? [])
    .filter((entry) => entry.family === 'IPv4' && !entry.internal)
    .map((entry) => entry.address);
}

function stackArguments(tools: NetworkTools, rootless: boolean, pidFile: string): string[] {
  const { address, prefixLength, gateway, dns } = JAIL_ADDRESSES;
  if (tools.stack === 'pasta') {
    return [
      '--quiet', '--log-file', '/dev/null', '--pid', pidFile,
      // pasta as root otherwise switches to "nobody" before joining the namespace, and fails (Debian 2023-03).
      ...(rootless ? ['--userns', '/proc/self/fd/4', '--netns', '/proc/self/fd/3'] : ['--runas', '0:0', '--netns', '/proc/self/fd/3', '--netns-only']),
      '--config-net', '--ipv4-only', '--ns-ifname', 'tap0',
      '--address', address, '--netmask', String(prefixLength), '--gateway', gateway, '--dns-forward', dns,
      '--no-map-gw', // else the gateway address is the host's loopback
      '-t', 'none', '-u', 'none', // no host port forwarded into the jail
      '-T', 'none', '-U', 'none', // and, above all, no jail loopback port forwarded to the host's loopback
    ];
  }
  return [
    '--configure', '--mtu=65520', '--disable-host-loopback', `--cidr=${address.replace(/\d+$/, '0')}/${prefixLength}`,
    '--enable-sandbox', '--enable-seccomp', '--ready-fd=5', '--netns-type=path',
    ...(rootless ? ['--userns-path=/proc/self/fd/4'] : []),
    '/proc/self/fd/3', 'tap0',
  ];
}

function waitForExit(child: ChildProcess, what: string): Promise<void> {
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-2000)));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${what} failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').pop() ?? ''}`)),
    );
  });
}

export type Wrap = (command: string, args: string[]) => { command: string; args: string[] };

/** The stack attached to a namespace: its process (killed at the slot's end). */
export interface AttachedStack {
  pid: number | undefined;
  /** slirp4netns runs in the foreground: its ChildProcess. */
  child: ChildProcess | undefined;
}

/**
 * Attaches the stack to the network namespace of process `pid` and sets the routes (both before any
 * code of the jail runs). `wrap` starts the stack inside the slot's cgroup.
 */
export async function attachNetwork(
  tools: NetworkTools,
  options: { pid: number; rootless: boolean; runDir: string; name: string; wrap: Wrap },
): Promise<AttachedStack> {
  const { pid } = options;
  const pidFile = join(options.runDir, `${options.name}.pasta.pid`);
  const nsFds = [openSync(`/proc/${pid}/ns/net`, 'r'), ...(options.rootless ? [openSync(`/proc/${pid}/ns/user`, 'r')] : [])];
  const stackCommand = options.wrap(tools.stackPath, stackArguments(tools, options.rootless, pidFile));
  let stack: ChildProcess;
  try {
    stack = spawn(stackCommand.command, stackCommand.args, {
      stdio: ['ignore', 'ignore', 'pipe', nsFds[0]!, nsFds[1] ?? 'ignore', tools.stack === 'slirp4netns' ? 'pipe' : 'ignore'],
    });
  } finally {
    for (const fd of nsFds) closeSync(fd);
  }
  try {
    const ready =
      tools.stack === 'pasta'
        ? waitForExit(stack, 'pasta') // pasta forks into the background once the namespace is configured
        : new Promise<void>((resolve, reject) => {
            stack.once('exit', (code) => reject(new Error(`slirp4netns exited (${code}) before it was ready`)));
            (stack.stdio as unknown as (Readable | null)[])[5]!.once('data', () => resolve());
          });
    await Promise.all([ready, setRoutes(tools, pid, options.rootless)]);
  } catch (error) {
    if (stack.pid !== undefined) killQuietly(stack.pid);
    throw error;
  }
  if (tools.stack === 'pasta') return { pid: Number(readFileSync(pidFile, 'utf8').trim()), child: undefined };
  return { pid: stack.pid, child: stack };
}

async function setRoutes(tools: NetworkTools, pid: number, rootless: boolean): Promise<void> {
  const namespaces = rootless ? ['--user', '--preserve-credentials', '--net'] : ['--net'];
  const child = spawn(tools.nsenter, [...namespaces, '--target', String(pid), tools.ip, '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
  child.stdin!.end(blockedRouteCommands().join('\n') + '\n');
  await waitForExit(child, 'setting the jail routes (ip -batch)');
}

/** Ends an attached stack. */
export function stopStack(stack: AttachedStack): void {
  if (stack.pid !== undefined) killQuietly(stack.pid);
  if (stack.child?.pid !== undefined) killQuietly(stack.child.pid);
}
