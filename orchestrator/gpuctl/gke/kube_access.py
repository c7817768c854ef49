"""Kube access to a gpuctl cluster: a context in gpuctl's own kubeconfig, authenticated by an
exec plugin (`gpuctl gke token`) that prints a Kubernetes ExecCredential.

Why our own kubeconfig and plugin: the user's ~/.kube/config stays untouched, and neither
gcloud nor gke-gcloud-auth-plugin has to be installed. The file holds no secret (the token is
fetched per use), but it is 0600 in a 0700 directory like every other kubeconfig should be.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import GpuctlError
from ..paths import gpuctl_home
from .kubeconfig import context_name, kubeconfig_path

EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"
EXEC_API_VERSIONS = (EXEC_API_VERSION, "client.authentication.k8s.io/v1")
REUSE_MARGIN = dt.timedelta(minutes=5)  # a cached token this close to expiry is not handed out


def token_command() -> list[str]:
    """How kubectl runs `gpuctl gke token`: the gpuctl next to this interpreter (a venv's),
    else the one on PATH, else this interpreter running the CLI module."""
    beside = Path(sys.executable).parent / "gpuctl"
    if beside.exists():
        return [str(beside), "gke", "token"]
    found = shutil.which("gpuctl")
    if found:
        return [str(Path(found).resolve()), "gke", "token"]
    return [sys.executable, "-m", "gpuctl.cli.main", "gke", "token"]


def context_entries(cluster: str, endpoint: str, ca_certificate: str) -> dict[str, dict]:
    name = context_name(cluster)
    command = token_command()
    return {
        "cluster": {"name": name, "cluster": {"server": f"https://{endpoint}",
                                              "certificate-authority-data": ca_certificate}},
        "user": {"name": name, "user": {"exec": {
            "apiVersion": EXEC_API_VERSION,
            "command": command[0],
            "args": command[1:],
            "interactiveMode": "Never",
            "provideClusterInfo": False,
            "installHint": "gpuctl writes this context; install gpuctl (pip install gpuctl) "
                           "and run `gcloud auth application-default login` once",
        }}},
        "context": {"name": name, "context": {"cluster": name, "user": name,
                                              "namespace": "default"}},
    }


def write_context(cluster: str, endpoint: str, ca_certificate: str,
                  path: Path | None = None) -> Path:
    """Add (or replace) the cluster's context in gpuctl's kubeconfig, keeping other entries."""
    if not endpoint or not ca_certificate:
        raise GpuctlError(f"cluster {cluster} has no endpoint or CA certificate yet",
                          "wait until `gpuctl gke status` shows it RUNNING, then rerun `gpuctl gke up`")
    path = kubeconfig_path(path)
    config = _load(path)
    entries = context_entries(cluster, endpoint, ca_certificate)
    for section, entry in (("clusters", entries["cluster"]), ("users", entries["user"]),
                           ("contexts", entries["context"])):
        config[section] = [e for e in config.get(section) or [] if e.get("name") != entry["name"]]
        config[section].append(entry)
    if not config.get("current-context"):
        config["current-context"] = entries["context"]["name"]
    _save(path, config)
    return path


def remove_context(cluster: str, path: Path | None = None) -> bool:
    """Drop the cluster's entries; True when there were any. A missing file is fine."""
    path = kubeconfig_path(path)
    if not path.exists():
        return False
    config = _load(path)
    name = context_name(cluster)
    removed = False
    for section in ("clusters", "users", "contexts"):
        kept = [e for e in config.get(section) or [] if e.get("name") != name]
        removed = removed or len(kept) != len(config.get(section) or [])
        config[section] = kept
    if config.get("current-context") == name:
        config["current-context"] = ""
    _save(path, config)
    return removed


def _load(path: Path) -> dict[str, Any]:
    import yaml

    if not path.exists():
        return {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": [],
                "users": [], "contexts": [], "current-context": ""}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise GpuctlError(f"cannot read kubeconfig {path}: {str(exc).splitlines()[0]}",
                          "move it away; `gpuctl gke up` writes a new one") from None
    if not isinstance(loaded, dict):
        raise GpuctlError(f"kubeconfig {path} is not a kubeconfig", "move it away and rerun")
    return loaded


def _save(path: Path, config: dict[str, Any]) -> None:
    import yaml

    _write_private(path, yaml.safe_dump(config, sort_keys=False, default_flow_style=False))


def _write_private(path: Path, text: str) -> None:
    """Atomically, 0600 from the first byte (mkstemp), in a 0700 directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- the exec plugin's answer ----------------------------------------------------------------


def requested_api_version(environ: dict[str, str] | os._Environ = os.environ) -> str:
    """kubectl says which ExecCredential version it wants in KUBERNETES_EXEC_INFO."""
    try:
        wanted = json.loads(environ.get("KUBERNETES_EXEC_INFO") or "{}").get("apiVersion")
    except (ValueError, AttributeError):
        wanted = None
    return wanted if wanted in EXEC_API_VERSIONS else EXEC_API_VERSION


def exec_credential(token: str, expiry: dt.datetime | None, api_version: str = EXEC_API_VERSION) -> dict:
    status: dict[str, str] = {"token": token}
    if expiry is not None:
        status["expirationTimestamp"] = (expiry.astimezone(dt.timezone.utc)
                                         .strftime("%Y-%m-%dT%H:%M:%SZ"))
    return {"kind": "ExecCredential", "apiVersion": api_version, "spec": {}, "status": status}


def token_cache_path() -> Path:
    return gpuctl_home() / "kube" / "token.json"


def cached_token(now: dt.datetime) -> tuple[str, dt.datetime] | None:
    """kubectl runs the plugin for every command; a token with time left is reused."""
    try:
        data = json.loads(token_cache_path().read_text(encoding="utf-8"))
        expiry = dt.datetime.fromisoformat(data["expiry"])
        token = data["token"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(token, str) or not token or expiry.tzinfo is None:
        return None
    return (token, expiry) if expiry - now > REUSE_MARGIN else None


def cache_token(token: str, expiry: dt.datetime | None) -> None:
    if expiry is None:
        return  # without an expiry we cannot know when to stop reusing it
    _write_private(token_cache_path(), json.dumps({"token": token, "expiry": expiry.isoformat()}))


def current_token(now: dt.datetime | None = None) -> tuple[str, dt.datetime | None]:
    """A token with at least REUSE_MARGIN left: the cached one, else a fresh one from ADC."""
    from ..adapters.gcp_token import access_token

    now = now or dt.datetime.now(dt.timezone.utc)
    cached = cached_token(now)
    if cached:
        return cached
    fresh = access_token()
    cache_token(fresh.token, fresh.expiry)
    return fresh.token, fresh.expiry
