"""The trainer's log kept in the run's bucket folder on GKE, so `gpuctl jobs --gke` can say how
many steps each restart lost.

A preempted pod's log goes with its node (the kubelet keeps container logs on the node), so the
trainer of a Job with `checkpoints:` runs under a few lines of POSIX sh (the shell gpuctl's
start command already needs) that write what the VM's checkpoint syncer writes, through the
bucket folder the pod already mounts at /gpuctl/checkpoints (Cloud Storage FUSE: a file becomes
an object when it is closed):
  .gpuctl/resumed/<pod>.json  the newest finished checkpoint in the folder when the pod starts
                              (what a trainer resumes from: checkpoint-N with trainer_state.json,
                              or any folder holding .gpuctl-complete), and its step;
  .gpuctl/logs/<pod>.log      the output's last 8 MiB, every 30 s and once more when it ends
                              (the 30 s grace after a spot node's notice).
Only rank 0 (JOB_COMPLETION_INDEX 0, or no index) writes them: its log speaks for the job. The
output still goes to the container's stdout (`gpuctl logs --gke`); the command's exit status is
the container's, and SIGTERM reaches the command (the shell forwards it).
recovery/view.py reads both the same way for VMs and pods.
"""

from __future__ import annotations

POD_ENV = "GPUCTL_POD"  # the pod's name (downward API): a rank's hostname repeats across restarts

SCRIPT = r"""log="$1"; shift
d="$GPUCTL_CHECKPOINT_DIR"; rec="$d/.gpuctl"; me="$GPUCTL_POD"
if [ "${JOB_COMPLETION_INDEX:-0}" != 0 ] || [ -z "$d" ] || [ -z "$me" ]; then exec "$@"; fi
{ mkdir -p "$rec/logs" "$rec/resumed"; } 2>/dev/null
step=0; entry=null
for c in "$d"/*/; do
  c="${c%/}"; n="${c##*[!0-9]}"; [ -n "$n" ] || continue
  while [ "${n#0}" != "$n" ] && [ "$n" != 0 ]; do n="${n#0}"; done  # step-000120: 120, not octal
  { [ -e "$c/trainer_state.json" ] || [ -e "$c/.gpuctl-complete" ]; } || continue
  if [ "$entry" = null ] || [ "$n" -gt "$step" ]; then step=$n; entry="\"${c##*/}\""; fi
done
{ printf '{"checkpoint": %s, "step": %s, "at": "%s"}\n' "$entry" "$step" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  > "$rec/resumed/$me.json"; } 2>/dev/null
fifo="$log.fifo"; rm -f "$fifo"
mkfifo "$fifo" 2>/dev/null || exec "$@"
pid=; term=
trap 'term=1; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' TERM INT
tee -a "$log" < "$fifo" &
teepid=$!
"$@" > "$fifo" 2>&1 &
pid=$!
[ -n "$term" ] && kill -TERM "$pid" 2>/dev/null  # a SIGTERM that came before $pid was known
copy() { { tail -c 8388608 "$log" > "$rec/logs/$me.log"; } 2>/dev/null; }
( trap - TERM; while sleep 30; do copy; done ) </dev/null >/dev/null 2>&1 &
keeper=$!
wait "$pid"; code=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; code=$?; done
kill "$keeper" 2>/dev/null
# tee ends when every writer of the fifo has closed it: a child the trainer left running (a
# tensorboard started with &) would hold it, and the pod, forever. Drain 5 s, then stop tee.
( sleep 5; kill "$teepid" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
drainer=$!
wait "$teepid" 2>/dev/null
kill "$drainer" 2>/dev/null
rm -f "$fifo"
copy
exit "$code"
"""


def wrap(command: list[str], local_log: str) -> list[str]:
    """The trainer's command under the keeper; `local_log`: the output's copy on the pod's scratch."""
    return ["/bin/sh", "-c", SCRIPT, "gpuctl-log", local_log, *command]
