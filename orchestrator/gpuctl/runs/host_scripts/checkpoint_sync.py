#!/usr/bin/env python3
"""gpuctl checkpoint syncer: the host side of `checkpoints:` (stdlib only, Python 3.8+).

    push --dir D --url gs://B/P [--settle S] [--every S --while-pid PID]   upload settled checkpoints
    pull --dir D --url gs://B/P                               fetch the newest finished one

A checkpoint is a first-level entry of D (a folder such as checkpoint-500/, or one file). It is
uploaded once it has *settled* (nothing in it changed for --settle seconds: the trainer is done
writing it), file by file, then a marker object <entry>/.gpuctl-complete listing its files and
sizes. `pull` only trusts entries with a marker, so a VM preempted in the middle of an upload
never leaves a half checkpoint for its replacement to resume from.

Google's contract, as encoded here:
  * access token from the metadata server, header Metadata-Flavor: Google
    (https://cloud.google.com/compute/docs/access/authenticate-workloads#applications);
    GCE_METADATA_HOST overrides the host, as in Google's client libraries;
  * resumable uploads: POST .../o?uploadType=resumable&name=N, then PUT chunks to the session
    URI (Location) with Content-Range; 308 means "send more", 200/201 done; chunks are multiples
    of 256 KiB except the last (https://cloud.google.com/storage/docs/performing-resumable-uploads);
  * objects.list with prefix and pageToken (https://cloud.google.com/storage/docs/json_api/v1/objects/list);
    download with alt=media (https://cloud.google.com/storage/docs/downloading-objects#rest-download-object);
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
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

MARKER = ".gpuctl-complete"
CHUNK = 32 * 256 * 1024  # 8 MiB: a multiple of 256 KiB, as resumable chunks must be
SETTLE_S = 30.0
RETRIES = 5
TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
GOOGLE_ENDPOINT = "https://storage.googleapis.com"


class SyncError(Exception):
    pass


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


class Gcs:
    def __init__(self, url: str, endpoint: str | None = None, token=None):
        self.bucket, self.prefix = split_url(url)
        self.endpoint = (endpoint or os.environ.get("GPUCTL_STORAGE_ENDPOINT") or GOOGLE_ENDPOINT).rstrip("/")
        self.token = token or MetadataToken()

    def object_name(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _send(self, method: str, url: str, data: bytes | None = None, headers: dict | None = None,
              into: str | None = None):
        """(status, headers, body); retried on 408/429/5xx and dropped connections. With `into`,
        the body is streamed to that file instead (checkpoints are far bigger than memory)."""
        for attempt in range(RETRIES):
            token = self.token()  # outside the try: its failure is not the storage call's
            request = urllib.request.Request(url, data=data, method=method,
                                             headers={"Authorization": f"Bearer {token}", **(headers or {})})
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
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
            time.sleep(min(2 ** attempt, 32) * 0.5)
        raise SyncError("unreachable")

    def upload(self, rel: str, path: str) -> None:
        query = urllib.parse.urlencode({"uploadType": "resumable", "name": self.object_name(rel)})
        start = f"{self.endpoint}/upload/storage/v1/b/{urllib.parse.quote(self.bucket)}/o?{query}"
        _, headers, _ = self._send("POST", start, b"", {"Content-Type": "application/json; charset=UTF-8"})
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
        path = os.path.join(folder, name)
        if name.endswith(".gpuctl-part") or os.path.islink(path):
            continue
        files = {}
        if os.path.isfile(path):
            files[name] = _stat(path)
        elif os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
                for item in sorted(names):
                    full = os.path.join(root, item)
                    if not os.path.islink(full) and not item.endswith(".gpuctl-part"):
                        files[os.path.relpath(full, folder)] = _stat(full)
        if files:
            found[name] = files
    return found


def _stat(path: str) -> list:
    info = os.stat(path)
    return [info.st_size, info.st_mtime_ns]


def push(gcs: Gcs, folder: str, state_path: str, settle_s: float = SETTLE_S, now: float | None = None) -> list:
    """Upload each settled entry that changed since its last upload; returns their names."""
    now = time.time() if now is None else now
    state = _load(state_path)
    done = []
    for entry, files in entries(folder).items():
        if state.get(entry) == files:
            continue
        if max(mtime for _, mtime in files.values()) / 1e9 > now - settle_s:
            continue  # still being written
        previous = state.get(entry) or {}
        for rel, stat in files.items():
            if previous.get(rel) != stat:
                gcs.upload(rel, os.path.join(folder, rel))
        manifest = {"files": {rel: size for rel, (size, _) in files.items()}, "written": now}
        marker = os.path.join(os.path.dirname(state_path) or ".", f".{os.path.basename(state_path)}.marker")
        with open(marker, "w") as f:
            json.dump(manifest, f)
        gcs.upload(f"{entry}/{MARKER}", marker)
        os.remove(marker)
        state[entry] = files
        _save(state_path, state)  # after each entry: a preempted push redoes only the rest
        done.append(entry)
    return done


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


def newest_complete(gcs: Gcs):
    """(entry, manifest) of the newest entry whose marker exists, or None."""
    root = f"{gcs.prefix}/" if gcs.prefix else ""
    markers = [item for item in gcs.list(root)
               if item["name"].endswith("/" + MARKER) and item["name"][len(root):].count("/") == 1]
    if not markers:
        return None
    best = max(markers, key=lambda item: (_updated(item), item["name"]))
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
    state = _load(state_path)
    state[entry] = entries(folder).get(entry, {})
    _save(state_path, state)
    return entry


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("push", "pull"))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--endpoint")
    parser.add_argument("--state", help="default: <dir>/../.<dir name>.sync.json")
    parser.add_argument("--settle", type=float, default=SETTLE_S)
    parser.add_argument("--every", type=float, default=0, help="push: repeat every S seconds")
    parser.add_argument("--while-pid", type=int, help="push --every: until this process ends")
    parser.add_argument("--ended-at", type=float,
                        help="push: the writer ended at this time (epoch s): settle against it, not now")
    args = parser.parse_args(argv)
    folder = os.path.abspath(args.dir)
    os.makedirs(folder, exist_ok=True)
    state = args.state or os.path.join(os.path.dirname(folder), f".{os.path.basename(folder)}.sync.json")
    try:
        gcs = Gcs(args.url, args.endpoint)
        if args.command == "pull":
            print(json.dumps({"pulled": pull(gcs, folder, state)}))
            return 0
        # The last pass after the command ends is the supervisor's: only it knows whether the
        # command finished its last checkpoint (exited by itself: --settle 0) or was killed in
        # the middle of one (the default settle leaves that one out).
        while args.while_pid is None or pid_alive(args.while_pid):
            uploaded = push(gcs, folder, state, args.settle, now=args.ended_at)
            if uploaded:
                print(json.dumps({"pushed": uploaded}), flush=True)
            if not args.every:
                break
            wake = time.monotonic() + args.every
            while time.monotonic() < wake and (args.while_pid is None or pid_alive(args.while_pid)):
                time.sleep(min(0.5, args.every))  # notice the end of the run promptly
        return 0
    except SyncError as exc:
        print(f"checkpoint sync: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
