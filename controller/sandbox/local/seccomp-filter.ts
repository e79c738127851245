import { spawnSync } from 'node:child_process';

/**
 * The seccomp filter of the jail (issue 14), handed to bubblewrap with `--seccomp FD`: bwrap installs
 * it right before it execs the command, so it covers the runner and everything it starts.
 *
 * Built with libseccomp (Debian's python3-seccomp, `export_bpf`) once at start-up rather than a
 * hand-written BPF assembler: libseccomp owns the syscall tables of every architecture (x86_64 and
 * aarch64 here), the architecture check (a foreign ABI — i386 `int 0x80` or x32 on x86_64 — is
 * killed, so it cannot dodge the rules) and the 64-bit argument comparisons. Start-up pays ~50 ms once;
 * each jail only reads the finished program from a pipe.
 * Reference: https://github.com/seccomp/libseccomp/blob/main/src/python/seccomp.pyx (SyscallFilter,
 * Arg, MASKED_EQ, export_bpf) and https://docs.kernel.org/userspace-api/seccomp_filter.html.
 *
 * What is denied (EPERM unless noted), everything else allowed:
 * - new namespaces: unshare/clone with any CLONE_NEW* flag (user namespaces above all: full
 *   capabilities inside one), setns; clone3 with ENOSYS (its flags are in a struct seccomp cannot
 *   read, and ENOSYS makes glibc fall back to clone, which is checked);
 * - mounts: mount, umount2, pivot_root, chroot and the new mount API (fsopen … mount_setattr);
 * - kernel attack surface: bpf, io_uring_*, keyctl/add_key/request_key, perf_event_open,
 *   userfaultfd, open_by_handle_at/name_to_handle_at, netlink-netfilter sockets;
 * - terminal injection: ioctl TIOCSTI and TIOCLINUX.
 */

/** The Python interpreter that has python3-seccomp (Debian's), not SANDBOX_PYTHON (often a virtualenv). */
const SECCOMP_PYTHON = '/usr/bin/python3';

const GENERATOR = String.raw`
import errno, socket, sys
import seccomp

CLONE_NEW_FLAGS = {
    'CLONE_NEWNS': 0x00020000, 'CLONE_NEWCGROUP': 0x02000000, 'CLONE_NEWUTS': 0x04000000,
    'CLONE_NEWIPC': 0x08000000, 'CLONE_NEWUSER': 0x10000000, 'CLONE_NEWPID': 0x20000000,
    'CLONE_NEWNET': 0x40000000, 'CLONE_NEWTIME': 0x00000080,
}
DENIED = [
    'setns', 'mount', 'umount2', 'pivot_root', 'chroot', 'fsopen', 'fsconfig', 'fsmount', 'fspick',
    'move_mount', 'open_tree', 'mount_setattr', 'bpf', 'io_uring_setup', 'io_uring_enter',
    'io_uring_register', 'keyctl', 'add_key', 'request_key', 'perf_event_open', 'userfaultfd',
    'open_by_handle_at', 'name_to_handle_at',
]
TIOCSTI, TIOCLINUX, NETLINK_NETFILTER = 0x5412, 0x541C, 12

deny = seccomp.ERRNO(errno.EPERM)
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
for name in DENIED:
    try:
        f.add_rule(deny, name)
    except (RuntimeError, ValueError):
        pass  # not a syscall on this architecture (e.g. a legacy one)
for flag in CLONE_NEW_FLAGS.values():
    f.add_rule(deny, 'unshare', seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    f.add_rule(deny, 'clone', seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
f.add_rule(seccomp.ERRNO(errno.ENOSYS), 'clone3')
for request in (TIOCSTI, TIOCLINUX):
    f.add_rule(deny, 'ioctl', seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
f.add_rule(deny, 'socket', seccomp.Arg(0, seccomp.EQ, socket.AF_NETLINK), seccomp.Arg(2, seccomp.EQ, NETLINK_NETFILTER))
f.export_bpf(sys.stdout)
`;

export class SeccompFilter {
  private constructor(
    /** The BPF program (struct sock_filter[]) as bwrap --seccomp reads it. */
    readonly program: Buffer,
  ) {}

  /** Builds the filter for this machine's architecture; the reason when it cannot. */
  static build(python = SECCOMP_PYTHON): SeccompFilter | string {
    const result = spawnSync(python, ['-c', GENERATOR], {
      timeout: 20_000,
      env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
      maxBuffer: 1024 * 1024,
    });
    if (result.error !== undefined) return `${python}: ${result.error.message}`;
    if (result.status !== 0) {
      const last = result.stderr.toString().trim().split('\n').pop() ?? `exit status ${result.status}`;
      return /No module named .?seccomp/.test(last) ? 'python3-seccomp is not installed (apt-get install python3-seccomp)' : last;
    }
    // One BPF instruction is 8 bytes; an empty or ragged program means the generator broke.
    if (result.stdout.length === 0 || result.stdout.length % 8 !== 0) return `unexpected filter of ${result.stdout.length} bytes`;
    return new SeccompFilter(result.stdout);
  }

  get instructions(): number {
    return this.program.length / 8;
  }
}
