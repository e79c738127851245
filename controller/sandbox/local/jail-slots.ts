import { randomBytes } from 'node:crypto';
import type { Logger } from '../../logger.js';
import type { CgroupParent } from './cgroup-parent.js';
import { JailLauncher } from './jail-launcher.js';
import type { NetworkTools } from './jail-network.js';
import type { CgroupLimits, SessionCgroup } from './session-cgroup.js';

/**
 * What one jail (a session's runner, or one step's with SANDBOX_SESSION=off) runs inside: its cgroup,
 * its first process (JailLauncher) and, with egress, its network namespace. Preparing a namespace costs
 * ~80 ms of CPU (pasta's start) and each wrapper exec a few ms, far over the +15 ms a cold step may pay
 * for its protections (issue 14), so slots are prepared ahead, off the critical path: a new jail takes
 * a ready one and the pool refills behind it.
 */

const REFILL_DELAY_MS = 500;

export interface JailSlot {
  readonly name: string;
  readonly cgroup?: SessionCgroup;
  readonly launcher: JailLauncher;
  /** True when the launcher made a network namespace with a stack attached (egress). */
  readonly egress: boolean;
  /** True when the launcher holds the seccomp program for bwrap on its fd 5. */
  readonly seccomp: boolean;
}

export interface JailSlotPoolOptions {
  /** The controller's sandbox cgroup parent, or undefined without usable cgroups. */
  cgroups?: CgroupParent;
  limits: CgroupLimits;
  /** Set with SANDBOX_NETWORK=egress: every slot gets a namespace. */
  network?: { tools: NetworkTools; rootless: boolean };
  /** The seccomp program every jail's bwrap reads (--seccomp 5). */
  seccompProgram?: Buffer;
  /** The environment of a jail's first process. */
  environment: Record<string, string>;
  /** Private folder for the stack's pid files. */
  runDir: string;
  /** Slots kept ready (default 1). */
  spare?: number;
  logger: Logger;
}

export class JailSlotPool {
  private readonly spares: Promise<JailSlot>[] = [];
  private readonly live = new Set<JailSlot>();
  private closed = false;
  private refillTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: JailSlotPoolOptions) {}

  /** Starts filling the pool (call once at start-up; take() works without it). */
  warm(): void {
    while (!this.closed && this.spares.length < (this.options.spare ?? 1)) this.spares.push(this.prepareQuietly());
  }

  /** Refills now and resolves once the spare slots are ready (benchmarks: measure with a warm pool). */
  async ready(): Promise<void> {
    this.cancelRefill();
    this.warm();
    await Promise.allSettled(this.spares);
  }

  /** A ready slot (a prepared one when there is one); the caller release()s it. */
  async take(): Promise<JailSlot> {
    if (this.closed) throw new Error('the sandbox is closed');
    const next = this.spares.shift() ?? this.prepareQuietly();
    // Refill a little later, never at once: preparing a slot spawns processes and pasta burns ~80 ms
    // of CPU, which would otherwise compete with the jail that is starting now (on two busy cores that
    // doubled a cold step). A refill already scheduled is not postponed, so steps back to back
    // (SANDBOX_SESSION=off, two spares) still find the pool refilled within the delay.
    this.refillTimer ??= setTimeout(() => {
      this.refillTimer = undefined;
      this.warm();
    }, REFILL_DELAY_MS);
    this.refillTimer.unref();
    const slot = await next;
    this.live.add(slot);
    return slot;
  }

  /** Kills everything that ran in the slot and removes its cgroup. */
  async release(slot: JailSlot): Promise<void> {
    this.live.delete(slot);
    slot.launcher.stop();
    if (slot.cgroup !== undefined) await this.options.cgroups!.release(slot.cgroup);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cancelRefill();
    const spares = await Promise.allSettled(this.spares.splice(0));
    const slots = [...this.live, ...spares.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []))];
    await Promise.all(slots.map((slot) => this.release(slot)));
  }

  private cancelRefill(): void {
    clearTimeout(this.refillTimer);
    this.refillTimer = undefined;
  }

  private prepareQuietly(): Promise<JailSlot> {
    const preparing = this.prepare();
    // A spare nobody awaits yet must not become an unhandled rejection; take() still sees the failure.
    preparing.catch((error: unknown) => this.options.logger.warn('sandbox slot not prepared', { error: String(error) }));
    return preparing;
  }

  private async prepare(): Promise<JailSlot> {
    const name = `jail-${randomBytes(6).toString('hex')}`;
    const cgroup = this.options.cgroups?.createSession(name, this.options.limits);
    try {
      const network = this.options.network;
      const launcher = await JailLauncher.start({
        cgroup,
        network: network === undefined ? undefined : { ...network, unshare: network.tools.unshare },
        seccompProgram: this.options.seccompProgram,
        environment: this.options.environment,
        runDir: this.options.runDir,
        name,
      });
      return { name, cgroup, launcher, egress: network !== undefined, seccomp: this.options.seccompProgram !== undefined };
    } catch (error) {
      if (cgroup !== undefined) await this.options.cgroups!.release(cgroup);
      throw error;
    }
  }
}
