import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { JailHarness } from './helpers/jail-harness.js';

// Issue 14, finding 7: the jail's seccomp filter denies the kernel surface a step has no use for,
// and the runner's capability sets are empty after it drops to the thread's uid.

const harness = JailHarness.create({ seccomp: true });
const skip = typeof harness === 'string' ? harness : false;
afterAll(async () => {
  if (typeof harness !== 'string') await harness.close();
});

/** Each attempt prints its errno name ("ok" when the call succeeded). */
const ATTEMPTS = String.raw`
import ctypes, errno, json, os, platform, socket, threading, subprocess
libc = ctypes.CDLL(None, use_errno=True)
NUMBERS = {
    'x86_64': {'clone': 56, 'clone3': 435, 'io_uring_setup': 425, 'bpf': 321, 'keyctl': 250, 'perf_event_open': 298, 'userfaultfd': 323},
    'aarch64': {'clone': 220, 'clone3': 435, 'io_uring_setup': 425, 'bpf': 280, 'keyctl': 219, 'perf_event_open': 241, 'userfaultfd': 282},
}[platform.machine()]
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
results = {}
def outcome(value):
    return 'ok' if value >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def call(name, *args):
    ctypes.set_errno(0)
    results[name] = outcome(libc.syscall(NUMBERS[name], *args))
results['unshare(CLONE_NEWUSER)'] = outcome(libc.unshare(CLONE_NEWUSER))
ctypes.set_errno(0)
pid = libc.syscall(NUMBERS['clone'], CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
if pid == 0:
    os._exit(0)
results['clone(CLONE_NEWUSER)'] = outcome(pid)
if pid > 0:
    os.waitpid(pid, 0)
call('clone3', 0, 0)
call('io_uring_setup', 1, 0)
call('bpf', 0, 0, 0)
call('keyctl', 0, 0)
call('perf_event_open', 0, 0, -1, -1, 0)
call('userfaultfd', 0)
results['mount'] = outcome(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))
results['ioctl(TIOCSTI)'] = outcome(libc.ioctl(0, 0x5412, ctypes.c_char_p(b'x')))
results['ioctl(TIOCLINUX)'] = outcome(libc.ioctl(0, 0x541C, ctypes.c_char_p(b'x')))
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12).close()
    results['netlink-netfilter socket'] = 'ok'
except OSError as e:
    results['netlink-netfilter socket'] = errno.errorcode[e.errno]
# What ordinary code needs keeps working: fork, threads (clone without namespace flags), subprocesses.
child = os.fork()
if child == 0:
    os._exit(7)
results['fork'] = os.waitpid(child, 0)[1] >> 8
box = []
thread = threading.Thread(target=lambda: box.append('ran'))
thread.start(); thread.join()
results['thread'] = box[0]
results['subprocess'] = subprocess.run(['echo', 'hi'], capture_output=True, text=True).stdout.strip()
results['unshare -U'] = subprocess.run(['unshare', '-U', 'true'], capture_output=True, text=True).returncode
status = dict(line.split(':\t', 1) for line in open('/proc/self/status').read().splitlines() if ':\t' in line)
results['status'] = {key: status[key].strip() for key in ('Uid', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp')}
print(json.dumps(results))
`;

describe.skipIf(Boolean(skip))('seccomp filter and capabilities of the jail', () => {
  const jail = harness as JailHarness;

  test('new user namespaces, mounts, bpf, io_uring, keyrings, perf, userfaultfd, TIOCSTI and nfnetlink are denied', async () => {
    const slot = await jail.slot({ egress: false, cgroup: false });
    const found = await jail.probe(slot, ATTEMPTS);
    expect(found).toMatchObject({
      'unshare(CLONE_NEWUSER)': 'EPERM',
      'clone(CLONE_NEWUSER)': 'EPERM',
      clone3: 'ENOSYS', // so that glibc falls back to clone, whose flags the filter can read
      io_uring_setup: 'EPERM',
      bpf: 'EPERM',
      keyctl: 'EPERM',
      perf_event_open: 'EPERM',
      userfaultfd: 'EPERM',
      mount: 'EPERM',
      'ioctl(TIOCSTI)': 'EPERM',
      'ioctl(TIOCLINUX)': 'EPERM',
      'netlink-netfilter socket': 'EPERM',
      fork: 7,
      thread: 'ran',
      subprocess: 'hi',
    });
    expect(found['unshare -U']).not.toBe(0);
  });

  test('without the filter the same jail could create a user namespace (the filter is what denies it)', async (context) => {
    if (Number(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8')) === 0) context.skip('user namespaces are disabled on this kernel');
    const slot = await jail.slot({ egress: false, cgroup: false, seccomp: false });
    const found = await jail.probe(slot, ATTEMPTS);
    expect(found['unshare(CLONE_NEWUSER)']).toBe('ok');
    // Without a filter the kernel answers for itself: not a terminal, not a valid io_uring request.
    expect(found['ioctl(TIOCSTI)']).toBe('ENOTTY');
    expect(found.clone3).not.toBe('ENOSYS');
  });

  test("after the drop to the thread's uid every capability set, the bounding set included, is empty", async () => {
    const slot = await jail.slot({ egress: false, cgroup: false });
    const status = (await jail.probe(slot, ATTEMPTS)).status as Record<string, string>;
    const empty = '0000000000000000';
    expect(status).toStrictEqual({
      Uid: '1000123\t1000123\t1000123\t1000123',
      CapInh: empty,
      CapPrm: empty,
      CapEff: empty,
      CapBnd: empty,
      CapAmb: empty,
      NoNewPrivs: '1',
      Seccomp: '2',
    });
  });
});
