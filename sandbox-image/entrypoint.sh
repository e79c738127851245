#!/bin/bash
# Entrypoint of the sandbox image (Dockerfile.sandbox). One Cloud Run Job execution serves one thread:
# one step (OI_STEP_ID, SANDBOX_SESSION=off), or a session of many steps (OI_SESSION_ID, issue 13).
#
# Runs as root only to set up, then the user's code runs as the unprivileged `sandbox` user:
#   1. a token broker (token_broker.py) serves the downscoped token on a unix socket in a
#      root-only directory; the token never appears on a command line and is removed from the
#      environment that the code gets;
#   2. gcsfuse mounts gs://$OI_BUCKET/$OI_PREFIX (only that prefix) at /workspace, owned by `sandbox`;
#   3. one step: runner.py runs it as `sandbox` (no capabilities, no-new-privs, a fixed environment);
#      a session: session_relay.py (root) starts `runner.py --session` the same way and relays the
#      thread's mailbox (.oi/session/$OI_SESSION_ID/) to it until the session ends (idle, deadline,
#      an exit request, or the runner's end);
#   4. leftover processes of `sandbox` are killed and /workspace is unmounted, which waits for
#      gcsfuse to finish uploading; the exit code is the runner's or the relay's (non-zero if the
#      unmount failed).
#
# Why the broker is out of the code's reach: the token is downscoped to this thread's prefix, so a
# loopback port would leak nothing beyond what the mount already gives the code. A root-only unix
# socket (gcsfuse supports `--token-url unix:///path`) keeps even that token away from the code,
# which then can use the thread's files only through the mount. The metadata server is reachable,
# but the job's own service account has no roles, so its token is worth nothing.
#
# Needs the Cloud Run execution environment gen2 (FUSE) and must start as root (no USER in the image).
# Environment (set per execution by CloudRunSandbox): OI_BUCKET, OI_PREFIX, OI_TOKEN,
# OI_TOKEN_EXPIRES_AT (epoch seconds), and either OI_STEP_ID, or OI_SESSION_ID with
# OI_SESSION_IDLE_SEC (seconds without a step before the session ends), OI_SESSION_END_AT (epoch seconds:
# the session ends then, before its token expires) and OI_LIMITS (the step limits, JSON, applied before
# the checkpoint is restored). OI_TIMINGS=1 (the post-deploy check, `npm run smoke`) also writes
# .oi/steps/<step>/entrypoint-timings.json (a session: .oi/session/<id>/entrypoint-timings.json):
# {"started","brokerReady","mounted"} in epoch seconds.
#
# `entrypoint.sh --print-gcsfuse-command` checks the environment like a real start, prints the gcsfuse
# command line it would run (one argument per line) and exits 0 without touching anything: the tests
# read it (test/sandbox-entrypoint.test.ts), and an operator can check an image with
# `docker run --rm -e OI_BUCKET=b -e OI_PREFIX=workspaces/T/C/1.2/ -e OI_STEP_ID=s -e OI_TOKEN=x IMAGE --print-gcsfuse-command`.
set -euo pipefail

readonly MOUNT=/workspace
readonly BROKER_DIR=/run/oi-token
readonly SOCKET="$BROKER_DIR/token.sock"
readonly RUNNER_DIR=/opt/oi
readonly SANDBOX_USER=sandbox

log() { echo "entrypoint: $*" >&2; }
now() { date +%s.%N; }
started_at="$(now)"

: "${OI_BUCKET:?OI_BUCKET is required}" "${OI_PREFIX:?OI_PREFIX is required}" "${OI_TOKEN:?OI_TOKEN is required}"
[[ -n "${OI_STEP_ID:-}" || -n "${OI_SESSION_ID:-}" ]] || { log "OI_STEP_ID or OI_SESSION_ID is required"; exit 64; }
[[ -z "${OI_STEP_ID:-}" || -z "${OI_SESSION_ID:-}" ]] || { log "OI_STEP_ID and OI_SESSION_ID exclude each other"; exit 64; }
# The same shapes the controller produces; anything else is refused before it reaches a flag.
[[ "$OI_BUCKET" =~ ^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$ ]] || { log "invalid OI_BUCKET"; exit 64; }
[[ "$OI_PREFIX" =~ ^workspaces/[A-Za-z0-9._-]+/[A-Za-z0-9._-]+/[A-Za-z0-9._-]+/$ && "$OI_PREFIX" != *..* ]] \
  || { log "invalid OI_PREFIX"; exit 64; }
[[ "${OI_TIMINGS:-0}" =~ ^[01]$ ]] || { log "invalid OI_TIMINGS"; exit 64; }
if [[ -n "${OI_SESSION_ID:-}" ]]; then
  [[ "$OI_SESSION_ID" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || { log "invalid OI_SESSION_ID"; exit 64; }
  [[ "${OI_SESSION_IDLE_SEC:-}" =~ ^[1-9][0-9]{0,5}$ ]] || { log "invalid OI_SESSION_IDLE_SEC"; exit 64; }
  [[ "${OI_SESSION_END_AT:-}" =~ ^[1-9][0-9]{9}$ ]] || { log "invalid OI_SESSION_END_AT"; exit 64; }
  [[ "${OI_LIMITS:-}" =~ ^\{\"memoryMb\":[0-9]{1,7},\"cpuSec\":[0-9]{1,6},\"maxProcesses\":[0-9]{1,6},\"maxFileMb\":[0-9]{1,7}\}$ ]] \
    || { log "invalid OI_LIMITS"; exit 64; }
else
  [[ "$OI_STEP_ID" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || { log "invalid OI_STEP_ID"; exit 64; }
fi

sandbox_uid="$(id -u "$SANDBOX_USER")"
sandbox_gid="$(id -g "$SANDBOX_USER")"

# The mount of the thread's prefix (gcsfuse 3.x flags: https://cloud.google.com/storage/docs/cloud-storage-fuse/cli-options).
# --enable-hns=false: gcsfuse otherwise asks the bucket for its storage layout (GetStorageLayout) when it
#   mounts, with an empty prefix even under --only-dir (gcsfuse 3.11.2, internal/storage/storage_handle.go;
#   fixed only after 3.11.2 by https://github.com/GoogleCloudPlatform/gcsfuse/pull/4980). That call needs
#   storage.objects.list on the whole bucket (https://cloud.google.com/storage/docs/getting-storage-layout),
#   which the thread's downscoped token rightly lacks, and its failure aborts the mount ("storageLayout call
#   failed"). With the flag gcsfuse creates no control client and treats the bucket as flat, which it must
#   be (docs/deploy.md, step 1); see also https://github.com/GoogleCloudPlatform/gcsfuse/issues/3705.
# --only-dir: only the thread's prefix is visible; every listing the kernel asks for carries that prefix,
#   which is what the token's access boundary allows (controller/sandbox/downscoped-token.ts).
# --implicit-dirs: folders are prefixes of uploaded objects, not placeholder objects.
# --rename-dir-limit: a flat bucket renames a folder object by object; allow it for working folders.
# --token-url unix://: the token broker's root-only socket (token_broker.py); no credentials on disk.
# One step keeps gcsfuse's metadata caches: one execution writes the prefix, and the controller reads it
# only after the execution ended. A session's mount lives for many steps, and between two of them the
# controller writes into the prefix (the files of a later mention) and another runner may write the
# checkpoint (runner_state compares its stamp). gcsfuse caches an object's metadata for 60 s and a "not
# found" for 5 s by default, so a step could miss a file just uploaded, see the old size of a replaced one,
# or load a stale checkpoint. A session therefore turns them off
# (https://cloud.google.com/storage/docs/cloud-storage-fuse/caching):
#   --metadata-cache-ttl-secs 0            stat and type caches (one TTL since gcsfuse 2.0), also the kernel's
#                                          attribute cache: a replaced file shows its new size at once
#   --metadata-cache-negative-ttl-secs 0   "not found" answers: a new file is seen at once
#   --kernel-list-cache-ttl-secs 0         listings (already the default; written out because `ls` and the
#                                          runner's list of changed files must see new files)
# The cost is a GCS metadata request per file lookup. The mailbox does not go through the mount
# (session_relay.py reads it with the JSON API), and a file reaches GCS when it is closed
# (runner_open_files.py closes what the code left open after each step).
gcsfuse_args=(
  --foreground
  --only-dir "${OI_PREFIX%/}"
  --implicit-dirs
  --enable-hns=false
  --rename-dir-limit 10000
  --token-url "unix://$SOCKET"
  --uid "$sandbox_uid" --gid "$sandbox_gid"
  --file-mode 644 --dir-mode 755
  -o allow_other
)
if [[ -n "${OI_SESSION_ID:-}" ]]; then
  gcsfuse_args+=(--metadata-cache-ttl-secs 0 --metadata-cache-negative-ttl-secs 0 --kernel-list-cache-ttl-secs 0)
fi
gcsfuse_args+=("$OI_BUCKET" "$MOUNT")
if [[ "${1:-}" == "--print-gcsfuse-command" ]]; then
  printf '%s\n' gcsfuse "${gcsfuse_args[@]}"
  exit 0
fi

# 1. The token broker (inherits OI_TOKEN, reads it, removes it from its own environment).
install -d -m 0700 -o root -g root "$BROKER_DIR"
python3 "$RUNNER_DIR/token_broker.py" "$SOCKET" &
broker_pid=$!
unset OI_TOKEN OI_TOKEN_EXPIRES_AT
for _ in $(seq 100); do [[ -S "$SOCKET" ]] && break; sleep 0.05; done
[[ -S "$SOCKET" ]] || { log "the token broker did not start"; exit 70; }
broker_ready_at="$(now)"

# 2. Mount only the thread's prefix. --foreground in the background lets us wait for gcsfuse to
# exit after the unmount, i.e. until every write has been uploaded.
mkdir -p "$MOUNT"
gcsfuse "${gcsfuse_args[@]}" &
gcsfuse_pid=$!
for _ in $(seq 600); do
  mountpoint -q "$MOUNT" && break
  kill -0 "$gcsfuse_pid" 2>/dev/null || { log "gcsfuse exited before mounting"; exit 70; }
  sleep 0.1
done
mountpoint -q "$MOUNT" || { log "gcsfuse did not mount $MOUNT in time"; exit 70; }
mounted_at="$(now)"
log "mounted $(awk -v a="$started_at" -v b="$mounted_at" 'BEGIN { printf "%.2f", b - a }') s after start"
if [[ "${OI_TIMINGS:-0}" == 1 ]]; then
  # Best effort: a failure here must not fail the step. The controller removes the step's (or the session's)
  # folder after reading it.
  timings_dir="$MOUNT/.oi/steps/${OI_STEP_ID:-}"
  if [[ -n "${OI_SESSION_ID:-}" ]]; then timings_dir="$MOUNT/.oi/session/$OI_SESSION_ID"; mkdir -p "$timings_dir" 2>/dev/null || true; fi
  printf '{"started": %s, "brokerReady": %s, "mounted": %s}\n' "$started_at" "$broker_ready_at" "$mounted_at" \
    > "$timings_dir/entrypoint-timings.json" 2>/dev/null || log "could not write the timings file"
fi

# 3. The runner, as the unprivileged user with a fixed environment (nothing of ours leaks in): one step,
# or a session behind the relay (root: it reads the token from the broker to reach the mailbox).
runner=(
  setpriv --reuid "$sandbox_uid" --regid "$sandbox_gid" --init-groups --inh-caps=-all --bounding-set=-all --no-new-privs
  env -i
    HOME="/home/$SANDBOX_USER" USER="$SANDBOX_USER" LOGNAME="$SANDBOX_USER"
    PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 LC_ALL=C.UTF-8
    MPLBACKEND=Agg MPLCONFIGDIR="/home/$SANDBOX_USER/.cache/matplotlib" PYTHONUNBUFFERED=1 TMPDIR=/tmp
    python3 "$RUNNER_DIR/runner.py" --workspace "$MOUNT"
)
set +e
if [[ -n "${OI_SESSION_ID:-}" ]]; then
  python3 "$RUNNER_DIR/session_relay.py" --bucket "$OI_BUCKET" --prefix "$OI_PREFIX" --session "$OI_SESSION_ID" \
    --idle-sec "$OI_SESSION_IDLE_SEC" --end-at "$OI_SESSION_END_AT" --token-url "unix://$SOCKET" \
    -- "${runner[@]}" --session --limits "$OI_LIMITS"
else
  "${runner[@]}" --step "$OI_STEP_ID"
fi
runner_status=$?
set -e

# 4. Stop what the code left running (it may hold files open), then flush and unmount.
# kill(-1) as that user reaches exactly its own processes (bash's builtin kill: the image has no procps).
setpriv --reuid "$sandbox_uid" --regid "$sandbox_gid" --clear-groups bash -c 'kill -KILL -1' 2>/dev/null || true
sleep 0.2
unmount_status=0
if ! fusermount3 -u "$MOUNT"; then
  sleep 1
  fusermount3 -u "$MOUNT" || umount "$MOUNT" || unmount_status=$?
fi
if [[ $unmount_status -eq 0 ]]; then
  wait "$gcsfuse_pid" || unmount_status=$?   # gcsfuse exits once every write is uploaded
else
  kill "$gcsfuse_pid" 2>/dev/null || true
fi
kill "$broker_pid" 2>/dev/null || true

if [[ $unmount_status -ne 0 ]]; then
  log "unmounting $MOUNT failed ($unmount_status): the step's files may not all be saved"
  exit 75
fi
exit "$runner_status"
