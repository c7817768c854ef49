#!/usr/bin/env python3
"""gpuctl checkpoint syncer: the host side of `checkpoints:` (stdlib only, Python 3.8+).

    push --dir D --url gs://B/P [--settle S] [--every S --while-pid PID] [--final] [--budget S]
         [--log F]                                            upload finished checkpoints
    pull --dir D --url gs://B/P                               fetch the newest finished one

A checkpoint is a first-level entry of D (a folder such as checkpoint-500/, or one file). It is
uploaded once it is *finished*, file by file, then a marker object <entry>/.gpuctl-complete
listing its files and sizes. `pull` only trusts entries with a marker, so a VM preempted in the
middle of an upload never leaves a half checkpoint for its replacement to resume from.

Finished means, first, the writer says so:
  * a Hugging Face `checkpoint-<N>` folder holding trainer_state.json (the Trainer writes it
    after the weights, optimizer and scheduler), or
  * a folder holding the file .gpuctl-complete, which any trainer can create as its last step
    (and must remove before it writes into that folder again);
and nothing in the folder changed for QUIET_S while the writer still runs (older Trainers
write rng_state*.pth just after trainer_state.json). Once the writer has ended (--final),
that evidence is enough. Without evidence, the fallback is age: nothing changed for --settle
seconds (30). Finished entries go up at once, newest first; with --budget, what does not fit
in the time is named on stderr and in the --final summary, never marked complete. The
trainer's own .gpuctl-complete is a signal, not data: it is not uploaded (gpuctl's manifest
takes its name in the bucket), and `pull` writes the manifest there, so a resumed trainer finds
its marker on the checkpoint it resumes from.

The VM's disk goes with the VM, so two records of each incarnation (this VM's instance id: a MIG's
replacement keeps the name, not the id) go to the bucket too, for `gpuctl jobs` to count the steps
a preemption made the run redo and what finishing costs (recovery/view.py):
  * <P>/.gpuctl/resumed/<id>.json  which checkpoint `pull` resumed from, and its step;
  * <P>/.gpuctl/logs/<id>.log      the run's log (`push --log`; its last LOG_CAP bytes), every
                                   LOG_EVERY_S while it runs and once after the last checkpoint
                                   pass: after it, as the notice's seconds go to checkpoints first.
Both are best effort: a failure is one line on stderr and never fails a checkpoint upload.

An upload cut off by the power-off is not resumed on the next VM: its bytes were on the VM's
local NVMe, which the replacement does not get, so a resumable session kept in the bucket would
have nothing to send. The replacement resumes from the newest checkpoint that did complete.

Google's contract, as encoded here:
  * access token from the metadata server, header Metadata-Flavor: Google
    (https://cloud.google.com/compute/docs/access/authenticate-workloads#applications);
    GCE_METADATA_HOST overrides the host, as in Google's client libraries;
  * resumable uploads: POST .../o?uploadType=resumable&name=N, its JSON body the object's
    metadata if any (custom key/values in `metadata`, https://cloud.google.com/storage/docs/
    performing-resumable-uploads#initiate-session, .../json_api/v1/objects), then PUT chunks to the
    session URI (Location) with Content-Range; 308 means "send more", 200/201 done; chunks are
    multiples of 256 KiB except the last (https://cloud.google.com/storage/docs/performing-resumable-uploads);
  * objects.list with prefix and pageToken (https://cloud.google.com/storage/docs/json_api/v1/objects/list);
    download with alt=media (https://cloud.google.com/storage/docs/downloading-objects#rest-download-object);
  * the instance id: GET instance/id on the same server (plain text; "unique" per instance,
    https://cloud.google.com/compute/docs/metadata/predefined-metadata-keys), Compute Engine's
    targetId of this incarnation in its Operations;
  * retry 408, 429 and 5xx with exponential backoff (https://cloud.google.com/storage/docs/retry-strategy).
GPUCTL_STORAGE_ENDPOINT (or --endpoint) points it at another endpoint, e.g. an emulator.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

MARKER = ".gpuctl-complete"  # the writer's "finished" file, and gpuctl's manifest in the bucket
WRITTEN_AT = "gpuctl-written-at"  # the marker object's metadata: when the checkpoint was written
TRAINER_STATE = "trainer_state.json"  # the Hugging Face Trainer's last file of a checkpoint
TRAINER_FOLDER = re.compile(r"checkpoint-[0-9]+")
CHUNK = 32 * 256 * 1024  # 8 MiB: a multiple of 256 KiB, as resumable chunks must be
SETTLE_S = 30.0  # no evidence from the writer: finished once nothing changed for this long
QUIET_S = 2.0  # evidence while the writer runs: and nothing changed for this long
OUT_OF_TIME = 3  # exit status of a push that ran out of its --budget
RETRIES = 5
TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
ID_PATH = "/computeMetadata/v1/instance/id"
RECORDS = ".gpuctl"  # gpuctl's own objects in the run's folder (recovery/bundle.py): never a checkpoint
LOG_EVERY_S = 30.0  # the log is a record, not a checkpoint: every 30 s costs little and lags little
LOG_CAP = 8 * 2**20  # the log's tail that goes up: a huge log must not eat the notice's seconds
STEP_AT_END = re.compile(r"([0-9]+)$")  # checkpoint-120, step-000120: the step the name ends with
GOOGLE_ENDPOINT = "https://storage.googleapis.com"


class SyncError(Exception):
    pass


class OutOfTime(SyncError):
    """The --budget ran out; `pushed` went up, `left` (newest first) did not."""

    def __init__(self, pushed=(), left=()):
        super().__init__("out of time")
        self.pushed, self.left = list(pushed), list(left)


def split_url(url: str):
    if not url.startswith("gs://"):
        raise SyncError(f"{url!r} is not a gs:// URL")
    bucket, _, prefix = url[len("gs://"):].partition("/")
    return bucket, prefix.strip("/")


class MetadataToken:
    """The VM's service-account token, cached until a minute before it expires."""

    def __init__(self, host: str | None = None):
        self.host = host or os.environ.get("GCE_METADATA_HOST") or "metadata.google.internal"
        self.token, self.expires = "", 0.0

    def __call__(self) -> str:
        if time.monotonic() < self.expires - 60:
            return self.token
        request = urllib.request.Request(f"http://{self.host}{TOKEN_PATH}", headers={"Metadata-Flavor": "Google"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                data = json.load(answer)
            self.token = data["access_token"]
        except (OSError, ValueError, KeyError) as exc:  # HTTPError is an OSError
            raise SyncError(f"no access token from the metadata server ({self.host}): {exc}; the VM "
                            "needs a service account with a Cloud Storage scope") from None
        self.expires = time.monotonic() + float(data.get("expires_in", 0))
        return self.token


def instance_id(host: str | None = None) -> str:
    """This VM's instance id: each incarnation's own (its replacement keeps the name only)."""
    host = host or os.environ.get("GCE_METADATA_HOST") or "metadata.google.internal"
    request = urllib.request.Request(f"http://{host}{ID_PATH}", headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            found = answer.read().decode().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SyncError(f"no instance id from the metadata server ({host}): {exc}") from None
    if not found.isdigit():
        raise SyncError(f"the metadata server's instance id is {found[:40]!r}, not a number")
    return found


class Gcs:
    def __init__(self, url: str, endpoint: str | None = None, token=None):
        self.bucket, self.prefix = split_url(url)
        self.endpoint = (endpoint or os.environ.get("GPUCTL_STORAGE_ENDPOINT") or GOOGLE_ENDPOINT).rstrip("/")
        self.token = token or MetadataToken()
        self.deadline = None  # time.monotonic() past which no request starts (--budget)

    def time_left(self, cap: float) -> float:
        """Seconds the next request may take: cap, or less near the deadline; OutOfTime past it."""
        if self.deadline is None:
            return cap
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise OutOfTime()
        return min(cap, left)

    def object_name(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _send(self, method: str, url: str, data: bytes | None = None, headers: dict | None = None,
              into: str | None = None):
        """(status, headers, body); retried on 408/429/5xx and dropped connections. With `into`,
        the body is streamed to that file instead (checkpoints are far bigger than memory)."""
        for attempt in range(RETRIES):
            self.time_left(60)  # past the deadline, nothing more starts
            token = self.token()  # outside the try: its failure is not the storage call's
            request = urllib.request.Request(url, data=data, method=method,
                                             headers={"Authorization": f"Bearer {token}", **(headers or {})})
            try:
                with urllib.request.urlopen(request, timeout=self.time_left(60)) as answer:
                    if into is None:
                        return answer.status, answer.headers, answer.read()
                    with open(into, "wb") as sink:
                        shutil.copyfileobj(answer, sink, CHUNK)
                    return answer.status, answer.headers, b""
            except urllib.error.HTTPError as exc:
                if exc.code == 308:  # resumable upload: "resume incomplete", not an error
                    return 308, exc.headers, exc.read()
                if exc.code not in (408, 429) and exc.code < 500 or attempt == RETRIES - 1:
                    raise SyncError(f"{method} {url}: {exc.code} {exc.read()[:300]!r}") from None
            except OSError as exc:  # refused, reset, timed out
                if attempt == RETRIES - 1:
                    raise SyncError(f"{method} {url}: {exc}") from None
            pause = min(2 ** attempt, 32) * 0.5
            if self.time_left(pause) < pause:
                raise OutOfTime()
            time.sleep(pause)
        raise SyncError("unreachable")

    def upload(self, rel: str, path: str, metadata: dict | None = None) -> None:
        query = urllib.parse.urlencode({"uploadType": "resumable", "name": self.object_name(rel)})
        start = f"{self.endpoint}/upload/storage/v1/b/{urllib.parse.quote(self.bucket)}/o?{query}"
        body = json.dumps({"metadata": metadata}).encode() if metadata else b""
        _, headers, _ = self._send("POST", start, body, {"Content-Type": "application/json; charset=UTF-8"})
        session = headers.get("Location")
        if not session:
            raise SyncError(f"no upload session for {rel}")
        total = os.path.getsize(path)
        with open(path, "rb") as f:
            offset = 0
            while True:
                piece = f.read(CHUNK)
                end = offset + len(piece)
                span = f"bytes {offset}-{end - 1}/{total}" if piece else f"bytes */{total}"
                status, _, _ = self._send("PUT", session, piece, {"Content-Range": span})
                if status in (200, 201):
                    return
                if status != 308 or end >= total:
                    raise SyncError(f"upload of {rel} ended with {status} at {end} of {total} bytes")
                offset = end

    def list(self, under: str) -> list:
        found, token = [], None
        while True:
            params = {"prefix": under}
            if token:
                params["pageToken"] = token
            url = f"{self.endpoint}/storage/v1/b/{urllib.parse.quote(self.bucket)}/o?{urllib.parse.urlencode(params)}"
            _, _, body = self._send("GET", url)
            page = json.loads(body or b"{}")
            found += page.get("items", [])
            token = page.get("nextPageToken")
            if not token:
                return found

    def download(self, name: str, dest: str) -> None:
        url = (f"{self.endpoint}/storage/v1/b/{urllib.parse.quote(self.bucket)}/o/"
               f"{urllib.parse.quote(name, safe='')}?alt=media")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        part = dest + ".gpuctl-part"
        self._send("GET", url, into=part)
        os.replace(part, dest)  # a reader never sees half a file


# --- push -------------------------------------------------------------------------------------

def entries(folder: str) -> dict:
    """{entry: {relative file path: [size, mtime_ns]}} for each first-level entry of folder."""
    found = {}
    for name in sorted(os.listdir(folder)):
        files = entry_files(folder, name)
        if files:
            found[name] = files
    return found


def entry_files(folder: str, name: str) -> dict:
    """{relative file path: [size, mtime_ns]} of one entry; the writer's MARKER left out."""
    path = os.path.join(folder, name)
    files = {}
    if name.endswith(".gpuctl-part") or os.path.islink(path):
        return files
    if os.path.isfile(path):
        stat = _stat(path)
        if stat:
            files[name] = stat
    elif os.path.isdir(path):
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
            for item in sorted(names):
                full = os.path.join(root, item)
                if not os.path.islink(full) and not item.endswith(".gpuctl-part") \
                        and not (root == path and item == MARKER):
                    stat = _stat(full)
                    if stat:
                        files[os.path.relpath(full, folder)] = stat
    return files


def _stat(path: str) -> list:
    """[size, mtime_ns], or [] for a file deleted meanwhile (the Trainer's save_total_limit)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return []
    return [info.st_size, info.st_mtime_ns]


def _newest(files: dict) -> float:
    return max(mtime for _, mtime in files.values()) / 1e9


def writer_says_finished(folder: str, entry: str, files: dict) -> bool:
    """The writer's own word: its MARKER file in the folder, or a Hugging Face checkpoint-<N>
    folder with trainer_state.json (the Trainer's last file of a checkpoint)."""
    if os.path.isfile(os.path.join(folder, entry, MARKER)):
        return True
    return bool(TRAINER_FOLDER.fullmatch(entry)) and f"{entry}/{TRAINER_STATE}" in files


def finished(folder: str, entry: str, files: dict, now: float, settle_s: float, quiet_s: float) -> bool:
    """By evidence (and quiet_s without change), else by age (settle_s without change)."""
    wait = quiet_s if writer_says_finished(folder, entry, files) else settle_s
    return _newest(files) <= now - wait


def plan(folder: str, state: dict, settle_s: float, now: float, quiet_s: float):
    """([(entry, files)] finished and not yet uploaded, newest first; [entries still being
    written])."""
    ready, unfinished = [], []
    for entry, files in entries(folder).items():
        if state.get(entry) == files:
            continue
        if finished(folder, entry, files, now, settle_s, quiet_s):
            ready.append((entry, files))
        else:
            unfinished.append(entry)
    ready.sort(key=lambda item: _newest(item[1]), reverse=True)  # a notice may not fit them all
    return ready, unfinished


def push(gcs: Gcs, folder: str, state_path: str, settle_s: float = SETTLE_S, now: float | None = None,
         quiet_s: float = QUIET_S) -> list:
    """Upload each finished entry that changed since its last upload, newest first; returns
    their names. Past gcs.deadline: OutOfTime naming what went up and what was left."""
    now = time.time() if now is None else now
    state = _load(state_path)
    ready, _ = plan(folder, state, settle_s, now, quiet_s)
    done = []
    for index, (entry, files) in enumerate(ready):
        try:
            complete = upload_entry(gcs, folder, entry, files, state.get(entry) or {}, state_path, now)
        except OutOfTime:
            raise OutOfTime(done, [name for name, _ in ready[index:]]) from None
        except OSError:  # the writer deleted it meanwhile (the Trainer's save_total_limit)
            complete = False
        if not complete:
            continue  # it changed while going up: a later pass takes it as it is then
        state[entry] = files
        _save(state_path, state)  # after each entry: a preempted push redoes only the rest
        done.append(entry)
    return done


def upload_entry(gcs: Gcs, folder: str, entry: str, files: dict, previous: dict, state_path: str,
                 now: float) -> bool:
    """The entry's changed files, then its marker object, only if what went up is what the
    marker lists (nothing changed meanwhile). False when it changed."""
    for rel, stat in files.items():
        if previous.get(rel) != stat:
            gcs.upload(rel, os.path.join(folder, rel))
    if entry_files(folder, entry) != files:
        return False
    manifest = {"files": {rel: size for rel, (size, _) in files.items()}, "written": now}
    marker = os.path.join(os.path.dirname(state_path) or ".", f".{os.path.basename(state_path)}.marker")
    with open(marker, "w") as f:
        json.dump(manifest, f)
    try:  # the checkpoint's own time: markers go up newest first, so theirs is not its order
        gcs.upload(f"{entry}/{MARKER}", marker, {WRITTEN_AT: f"{_newest(files):.6f}"})
    finally:
        os.remove(marker)
    return True


def _load(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _save(path: str, state: dict) -> None:
    part = path + ".gpuctl-part"
    with open(part, "w") as f:
        json.dump(state, f)
    os.replace(part, path)


# --- pull -------------------------------------------------------------------------------------

def _updated(item: dict) -> dt.datetime:
    """RFC 3339 'updated' as a datetime (fractions cut to microseconds for Python 3.8)."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", item.get("updated", "1970-01-01T00:00:00Z")).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text)


def _written_at(item: dict) -> float:
    """When a marker's checkpoint was written (its WRITTEN_AT metadata), or for a marker without
    it (an older syncer, which marked them oldest first) when the marker went up."""
    try:
        return float((item.get("metadata") or {})[WRITTEN_AT])
    except (KeyError, ValueError):
        return _updated(item).timestamp()


def newest_complete(gcs: Gcs):
    """(entry, manifest) of the newest checkpoint whose marker object exists, or None."""
    root = f"{gcs.prefix}/" if gcs.prefix else ""
    markers = [item for item in gcs.list(root)
               if item["name"].endswith("/" + MARKER) and item["name"][len(root):].count("/") == 1]
    if not markers:
        return None
    best = max(markers, key=lambda item: (_written_at(item), item["name"]))
    entry = best["name"][len(root):].split("/")[0]
    scratch = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gpuctl-marker-{os.getpid()}")
    gcs.download(best["name"], scratch)
    with open(scratch) as f:
        manifest = json.load(f)
    os.remove(scratch)
    return entry, manifest


def pull(gcs: Gcs, folder: str, state_path: str):
    """Download the newest complete checkpoint into folder (files already there with the same
    size are kept); records it as synced so push does not upload it back. Returns its name."""
    found = newest_complete(gcs)
    if found is None:
        return None
    entry, manifest = found
    for rel, size in sorted(manifest["files"].items()):
        dest = os.path.normpath(os.path.join(folder, rel))
        if not dest.startswith(os.path.normpath(folder) + os.sep):
            raise SyncError(f"manifest path {rel!r} leaves {folder}")
        if not (os.path.isfile(dest) and os.path.getsize(dest) == size):
            gcs.download(gcs.object_name(rel), dest)
        if os.path.getsize(dest) != size:
            raise SyncError(f"{rel}: {os.path.getsize(dest)} bytes, the manifest says {size}")
    if os.path.isdir(os.path.join(folder, entry)):  # the writer's marker, as it left it
        with open(os.path.join(folder, entry, MARKER), "w") as f:
            json.dump(manifest, f)
    state = _load(state_path)
    state[entry] = entries(folder).get(entry, {})
    _save(state_path, state)
    return entry


# --- what each incarnation leaves for `gpuctl jobs` ------------------------------------------------

def checkpoint_step(folder: str, entry):
    """The step a checkpoint holds: the Trainer's global_step, else the number its name ends with."""
    if entry is None:
        return 0  # starting fresh: from step 0
    try:
        with open(os.path.join(folder, entry, TRAINER_STATE)) as f:
            return int(json.load(f)["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        found = STEP_AT_END.search(entry)
        return int(found.group(1)) if found else None


def upload_record(gcs: Gcs, rel: str, data: bytes, scratch_near: str) -> None:
    """One small object under <P>/.gpuctl/ (Gcs.upload sends files: a scratch file beside the state)."""
    scratch = os.path.join(os.path.dirname(scratch_near) or ".", f".gpuctl-record-{os.getpid()}")
    with open(scratch, "wb") as f:
        f.write(data)
    try:
        gcs.upload(f"{RECORDS}/{rel}", scratch)
    finally:
        os.remove(scratch)


def record_resume(gcs: Gcs, folder: str, entry, state_path: str) -> None:
    """<P>/.gpuctl/resumed/<id>.json: where this incarnation starts. Together with the previous
    incarnation's last logged step, it is what the preemption cost in steps."""
    try:
        record = {"checkpoint": entry, "step": checkpoint_step(folder, entry),
                  "at": dt.datetime.now(dt.timezone.utc).isoformat()}
        upload_record(gcs, f"resumed/{instance_id()}.json", json.dumps(record).encode(), state_path)
    except (SyncError, OSError) as exc:
        print(f"checkpoint sync: where this VM resumed from is not recorded: {exc}", file=sys.stderr)


class LogCopy:
    """The run's log in the bucket, as <P>/.gpuctl/logs/<id>.log, so it outlives the VM."""

    def __init__(self, gcs: Gcs, path, state_path: str, every: float = LOG_EVERY_S):
        self.gcs, self.path, self.state_path, self.every = gcs, path, state_path, every
        self.name = None  # the object's name, once the instance id is known
        self.sent = None  # [size, mtime_ns] of what went up last
        self.next_at = 0.0  # time.monotonic() of the next periodic copy
        self.failed = False  # one line on stderr per failure streak, not one every 30 s

    def maybe(self) -> None:
        if self.path and time.monotonic() >= self.next_at:
            self.next_at = time.monotonic() + self.every
            self.upload()

    def upload(self) -> bool:
        """Best effort: False (and one line on stderr) when it did not go up. Never raises: the
        checkpoints come first, also when the budget ran out."""
        if not self.path:
            return False
        try:
            stat = _stat(self.path)
            if not stat or stat == self.sent:
                return bool(stat)
            self.name = self.name or f"logs/{instance_id()}.log"
            with open(self.path, "rb") as f:
                f.seek(max(0, stat[0] - LOG_CAP))
                tail = f.read(LOG_CAP)
            if stat[0] > LOG_CAP:  # cut where a line starts, so no line is read half
                cut = min((i for i in (tail.find(b"\n"), tail.find(b"\r")) if i >= 0), default=-1)
                tail = tail[cut + 1:]
            upload_record(self.gcs, self.name, tail, self.state_path)
        except (SyncError, OSError) as exc:  # OutOfTime too: no time left for it
            if not self.failed:
                print(f"checkpoint sync: the run's log did not go up: {exc}", file=sys.stderr, flush=True)
            self.failed = True
            return False
        self.sent, self.failed = stat, False
        return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def push_command(gcs: Gcs, folder: str, state_path: str, args) -> int:
    """Passes while --while-pid lives (or one); with --final, one more once it has ended and a
    summary line {"pushed", "left" (no time), "incomplete" (never finished)}."""
    pushed, ended, out_of_time = [], args.ended_at, False
    quiet = 0.0 if args.final and args.while_pid is None else QUIET_S
    log = LogCopy(gcs, args.log, state_path, args.log_every)
    try:
        while args.while_pid is None or pid_alive(args.while_pid):
            pushed += _pass(gcs, folder, state_path, args.settle, ended, quiet)
            if args.every and args.budget is None:  # in a notice (--budget), only after the last pass
                log.maybe()
            if not args.every:
                break
            if not _nap(gcs, args.every, args.while_pid):
                raise OutOfTime()  # the writer outlived the budget
        if args.final and args.while_pid is not None:
            ended, quiet = time.time(), 0.0  # the writer is gone: its evidence is enough
            pushed += _pass(gcs, folder, state_path, args.settle, ended, quiet)
    except OutOfTime as exc:
        pushed, out_of_time = pushed + exc.pushed, True
        if exc.pushed and not args.final:
            print(json.dumps({"pushed": exc.pushed}), flush=True)
    if args.final:
        log.upload()  # after every checkpoint: with what is left of the budget, if any
    ready, unfinished = plan(folder, _load(state_path), args.settle, time.time() if ended is None else ended,
                             quiet)
    left = [entry for entry, _ in ready] if out_of_time else []
    if args.final:
        print(json.dumps({"pushed": pushed, "left": left, "incomplete": unfinished}), flush=True)
    if left:
        print(f"checkpoint sync: out of time ({args.budget:g} s): not uploaded, newest first: "
              + ", ".join(left), file=sys.stderr, flush=True)
        return OUT_OF_TIME
    return 0


def _pass(gcs: Gcs, folder: str, state_path: str, settle_s: float, now, quiet_s: float) -> list:
    uploaded = push(gcs, folder, state_path, settle_s, now=now, quiet_s=quiet_s)
    if uploaded:
        print(json.dumps({"pushed": uploaded}), flush=True)
    return uploaded


def _nap(gcs: Gcs, every: float, pid) -> bool:
    """Sleep `every` seconds, less when the writer ends; False once the deadline has passed."""
    wake = time.monotonic() + every
    while time.monotonic() < wake and (pid is None or pid_alive(pid)):
        if gcs.deadline is not None and time.monotonic() >= gcs.deadline:
            return False
        time.sleep(min(0.5, every))  # notice the end of the run promptly
    return gcs.deadline is None or time.monotonic() < gcs.deadline


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("push", "pull"))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--endpoint")
    parser.add_argument("--state", help="default: <dir>/../.<dir name>.sync.json")
    parser.add_argument("--settle", type=float, default=SETTLE_S,
                        help="push: without the writer's evidence, finished after S s unchanged")
    parser.add_argument("--every", type=float, default=0, help="push: repeat every S seconds")
    parser.add_argument("--while-pid", type=int, help="push --every: until this process ends")
    parser.add_argument("--ended-at", type=float,
                        help="push: the writer ended at this time (epoch s): settle against it, not now")
    parser.add_argument("--final", action="store_true",
                        help="push: the writer has ended (or, with --while-pid, one more pass once it "
                             "has): its evidence is enough; ends with a summary line")
    parser.add_argument("--log", help="push: the run's log, copied to <url>/.gpuctl/logs/<instance id>.log "
                                      f"every {LOG_EVERY_S:g} s with --every, and after the last pass with --final")
    parser.add_argument("--log-every", type=float, default=LOG_EVERY_S, help="push --log: seconds between copies")
    parser.add_argument("--budget", type=float,
                        help="push: nothing starts after S seconds (newest checkpoint first); "
                             "SIGTERM is ignored, as the push ends by itself")
    args = parser.parse_args(argv)
    folder = os.path.abspath(args.dir)
    os.makedirs(folder, exist_ok=True)
    state = args.state or os.path.join(os.path.dirname(folder), f".{os.path.basename(folder)}.sync.json")
    try:
        gcs = Gcs(args.url, args.endpoint)
        if args.command == "pull":
            pulled = pull(gcs, folder, state)
            record_resume(gcs, folder, pulled, state)
            print(json.dumps({"pulled": pulled}))
            return 0
        if args.budget is not None:
            gcs.deadline = time.monotonic() + args.budget
            for sig in (signal.SIGTERM, signal.SIGHUP):  # a shutdown's: the budget bounds us
                signal.signal(sig, signal.SIG_IGN)
        # The last pass after the command ends is the supervisor's (--final): only it knows whether
        # the command finished by itself (--settle 0: everything it left is finished) or was
        # stopped (the default settle leaves a fresh checkpoint without evidence out).
        return push_command(gcs, folder, state, args)
    except SyncError as exc:
        print(f"checkpoint sync: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
