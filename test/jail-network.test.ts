import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { blockedRouteCommands, hostIpv4Addresses } from '../controller/sandbox/local/jail-network.js';
import { JailHarness } from './helpers/jail-harness.js';

// Issue 14, finding 5: the jail never shares the host's network namespace. With egress, a user-mode
// stack (pasta here) is its only way out, and loopback, link-local, private ranges and the host's own
// addresses are unreachable. No test traffic leaves this machine: every destination tried is either
// on this host or answered "unreachable" by the jail's own routing table.

test('the blocked routes cover private, link-local and the host addresses, and all of IPv6', () => {
  const commands = blockedRouteCommands(['192.0.2.2']);
  for (const range of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16']) {
    expect(commands).toContain(`route add unreachable ${range}`);
  }
  expect(commands).toContain('route replace unreachable 192.0.2.2/32');
  expect(commands).toContain('route add unreachable ::/0');
});

const harness = JailHarness.create({ network: true });
const skip = typeof harness === 'string' ? harness : false;

const servers: Server[] = [];
async function listen(host: string | { path: string }): Promise<Server> {
  const server = createServer((socket) => socket.end('host service\n'));
  await new Promise<void>((resolve) => (typeof host === 'string' ? server.listen(0, host, resolve) : server.listen(host.path, resolve)));
  servers.push(server);
  return server;
}
afterAll(async () => {
  for (const server of servers) server.close();
  if (typeof harness !== 'string') await harness.close();
});

/** Python that tries each (host, port) and prints {"host:port": "connected" | errno name}. */
function connectAttempts(targets: [string, number][], extra = ''): string {
  return [
    'import errno, json, socket',
    'results = {}',
    `for host, port in ${JSON.stringify(targets)}:`,
    '    s = socket.socket(); s.settimeout(5)',
    '    try:',
    '        s.connect((host, port)); results[f"{host}:{port}"] = "connected"',
    '    except OSError as e:',
    '        results[f"{host}:{port}"] = errno.errorcode.get(e.errno, type(e).__name__)',
    '    finally:',
    '        s.close()',
    extra,
    'print(json.dumps(results))',
  ].join('\n');
}

const OWN_LOOPBACK = [
  'own = socket.socket(); own.bind(("127.0.0.1", 0)); own.listen(1)',
  'probe = socket.create_connection(own.getsockname(), timeout=5)',
  'results["own loopback"] = "connected"; probe.close(); own.close()',
].join('\n');

describe.skipIf(Boolean(skip))('jail network namespace', () => {
  const jail = harness as JailHarness;
  let loopbackPort = 0;
  let anyAddressPort = 0;
  const abstractName = `oi-jail-test-${process.pid}`;

  beforeAll(async () => {
    loopbackPort = ((await listen('127.0.0.1')).address() as AddressInfo).port;
    anyAddressPort = ((await listen('0.0.0.0')).address() as AddressInfo).port;
    await listen({ path: `\0${abstractName}` });
  });

  test('egress: host loopback, host addresses, metadata and private ranges are unreachable; the jail has its own loopback', async () => {
    const slot = await jail.slot({ egress: true });
    const hostAddress = hostIpv4Addresses()[0];
    const targets: [string, number][] = [
      ['127.0.0.1', loopbackPort],
      ['169.254.169.254', 80],
      ['10.1.2.3', 80],
      ['172.16.0.1', 80],
      ['192.168.1.1', 80],
      ['100.64.0.1', 80],
    ];
    if (hostAddress !== undefined) targets.push([hostAddress, anyAddressPort]);
    const found = await jail.probe(slot, connectAttempts(targets, OWN_LOOPBACK));
    expect(found[`127.0.0.1:${loopbackPort}`], "the host's loopback service").toBe('ECONNREFUSED');
    for (const [host, port] of targets.slice(1)) {
      expect(['EHOSTUNREACH', 'ENETUNREACH'], `${host}:${port}`).toContain(found[`${host}:${port}`]);
    }
    expect(found['own loopback']).toBe('connected');
  });

  test('egress is wired through pasta: a default route via its tap device, its DNS forwarder, the stack process alive', async () => {
    const slot = await jail.slot({ egress: true });
    const found = await jail.probe(
      slot,
      [
        'import json, os',
        'routes = [line.split() for line in open("/proc/net/route").read().splitlines()[1:]]',
        'default = [r[0] for r in routes if r[1] == "00000000" and r[2] != "00000000"]',
        'print(json.dumps({"default": default, "resolv": open("/etc/resolv.conf").read(), "interfaces": sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:])}))',
      ].join('\n'),
    );
    expect(found).toStrictEqual({ default: ['tap0'], resolv: 'nameserver 198.51.100.3\n', interfaces: ['lo', 'tap0'] });
    const stackPid = slot.launcher.stackPid!;
    expect(readFileSync(`/proc/${stackPid}/comm`, 'utf8').trim()).toMatch(/^(pasta|passt)/);
    // The stack runs in the session's cgroup, so kill-the-group ends it too.
    expect(slot.cgroup?.processes() ?? [stackPid]).toContain(stackPid);
  });

  test("the code cannot undo the routes, see the host's listeners or reach its abstract unix sockets", async () => {
    const slot = await jail.slot({ egress: true });
    const found = await jail.probe(
      slot,
      [
        'import json, socket, subprocess',
        'delete = subprocess.run(["ip", "route", "del", "unreachable", "169.254.0.0/16"], capture_output=True, text=True)',
        'ports = {int(line.split()[1].split(":")[1], 16) for line in open("/proc/net/tcp").read().splitlines()[1:]}',
        's = socket.socket(socket.AF_UNIX)',
        'try:',
        `    s.connect("\\0${abstractName}"); abstract = "connected"`,
        'except OSError as e:',
        '    abstract = type(e).__name__',
        'print(json.dumps({"delete": delete.returncode, "ports": sorted(ports), "abstract": abstract}))',
      ].join('\n'),
    );
    expect(found.delete).not.toBe(0);
    expect(found.ports).not.toContain(loopbackPort);
    expect(found.ports).not.toContain(anyAddressPort);
    expect(found.abstract).toBe('ConnectionRefusedError');
  });

  test("two threads' jails never see each other's listeners", async () => {
    const [first, second] = [await jail.slot({ egress: true }), await jail.slot({ egress: true })];
    const marker = join(jail.workspace, 'listener-up');
    const listener = jail.run(first, 'import socket, time\ns = socket.socket(); s.bind(("0.0.0.0", 8765)); s.listen(1)\nopen("listener-up", "w").close()\ntime.sleep(30)');
    for (let attempt = 0; attempt < 400 && !existsSync(marker); attempt += 1) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(existsSync(marker), 'the first jail is listening').toBe(true);
    const found = await jail.probe(second, connectAttempts([['127.0.0.1', 8765], ['198.51.100.100', 8765]]));
    expect(found).toStrictEqual({ '127.0.0.1:8765': 'ECONNREFUSED', '198.51.100.100:8765': 'ECONNREFUSED' });
    await first.cgroup?.kill();
    await listener;
  });

  test('the slirp4netns fallback: the same routes, and its gateway does not lead to the host loopback', async (context) => {
    const tools = jail.tools!;
    const slirp = ['/usr/bin/slirp4netns', '/usr/local/bin/slirp4netns'].find((path) => existsSync(path));
    if (slirp === undefined) context.skip('slirp4netns is not installed');
    const slot = await jail.slot({ egress: true, tools: { ...tools, stack: 'slirp4netns', stackPath: slirp! } });
    const found = await jail.probe(slot, connectAttempts([['127.0.0.1', loopbackPort], ['198.51.100.2', loopbackPort], ['169.254.169.254', 80], ['10.1.2.3', 80]]));
    expect(found[`127.0.0.1:${loopbackPort}`]).toBe('ECONNREFUSED');
    // slirp4netns maps its gateway to the host's loopback unless --disable-host-loopback.
    expect(found[`198.51.100.2:${loopbackPort}`]).not.toBe('connected');
    expect(found['169.254.169.254:80']).toBe('EHOSTUNREACH');
    expect(found['10.1.2.3:80']).toBe('EHOSTUNREACH');
  });

  test('off: no interface but loopback, nothing reachable', async () => {
    const slot = await jail.slot({ egress: false });
    const found = await jail.probe(
      slot,
      connectAttempts([['127.0.0.1', loopbackPort], ['10.1.2.3', 80]], 'import os\nresults["interfaces"] = sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:])'),
    );
    expect(found).toStrictEqual({ [`127.0.0.1:${loopbackPort}`]: 'ECONNREFUSED', '10.1.2.3:80': 'ENETUNREACH', interfaces: ['lo'] });
  });
});
