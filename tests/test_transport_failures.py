"""Network failures are one line: every live command, with credentials but no way to reach
Google (DNS failure, connection refused, a server that never answers, TLS failure), prints
exactly one `error:` line with a hint on stderr, exits non-zero, and leaks no traceback or
library log. SSH banner and handshake garbage likewise. Also run as a real subprocess with
a fresh HOME, the way the bug was reported (74-line ConnectionError traceback from status)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuctl.cli.main import cli
from tests.gcp_provider.plugin import pulumi_bin_dir
from tests.test_check_cmd import service_account_adc

PROJECT = "my-proj"
GPUCTL = Path(sys.executable).parent / "gpuctl"


class LoopbackServer:
    """Accepts TCP connections on 127.0.0.1 and answers each with `payload` (None: never
    answers), then holds the connection open until stopped."""

    def __init__(self, payload: bytes | None = None, close_after: bool = False):
        self.payload, self.close_after = payload, close_after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            try:
                if self.payload is not None:
                    conn.sendall(self.payload)
                if self.close_after:
                    conn.close()
            except OSError:
                pass

    def stop(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def failing(request):
    """kind -> (base URL that fails that way, words the error line must hold)."""
    servers: list[LoopbackServer] = []

    def make(kind: str) -> tuple[str, str]:
        if kind == "dns":
            return "https://gpuctl-test.x.invalid", "cannot resolve"
        if kind == "refused":
            return f"http://127.0.0.1:{closed_port()}", "refused the connection"
        if kind == "timeout":
            servers.append(LoopbackServer(None))
            return f"http://127.0.0.1:{servers[-1].port}", "did not answer within 1s"
        if kind == "tls":  # plain TCP (an HTTP answer) where TLS is expected
            servers.append(LoopbackServer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
            return f"https://127.0.0.1:{servers[-1].port}", "TLS handshake"
        raise AssertionError(kind)

    yield make
    for server in servers:
        server.stop()


def offline_env(tmp_path: Path, url: str) -> dict[str, str]:
    """Credentials (a key file) but every Google endpoint, token included, at `url`."""
    return {
        "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "PATH": f"{pulumi_bin_dir()}:/usr/bin:/bin", "PULUMI_HOME": str(tmp_path / "no-pulumi-home"),
        "GOOGLE_APPLICATION_CREDENTIALS": service_account_adc(tmp_path / "adc.json", f"{url}/token"),
        "GPUCTL_PROJECT": PROJECT, "GPUCTL_SSH_FROM": "198.51.100.7", "GPUCTL_HTTP_TIMEOUT": "1",
        **{f"GPUCTL_{api}_ENDPOINT": url for api in ("COMPUTE", "CONTAINER", "BILLING", "SERVICEUSAGE",
                                                      "RESOURCEMANAGER")},
    }


def save_record(name: str = "vm1") -> None:
    from gpuctl.lifecycle import records

    records.save(records.VmRecord(
        name=name, profile="t4-spot", project=PROJECT, state="ready", stack=name,
        zones_to_try=["us-central1-a"], created_at="2026-11-23T01:00:00+00:00", hourly_usd=0.3,
        stopped_hourly_usd=0.01, termination_action="DELETE", zone="us-central1-a",
        address="203.0.113.9", max_run_seconds=8 * 3600, running_since="2026-11-23T01:01:00+00:00"))


def assert_one_error_line(stderr: str, words: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "(hint: " in lines[0], lines[0]
    assert words in lines[0], lines[0]
    assert "Traceback" not in stderr
    return lines[0]


COMMANDS = [
    ["status"], ["list"], ["status", "vm1", "--json"], ["extend", "vm1", "--hours", "1"],
    ["down", "gone-vm", "-y"], ["sweep"], ["gke", "status"], ["prices", "refresh"], ["check"],
]


@pytest.mark.parametrize("kind", ["dns", "refused", "timeout", "tls"])
@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_live_command_fails_in_one_line(kind, argv, failing, tmp_path, monkeypatch):
    url, words = failing(kind)
    for key, value in offline_env(tmp_path, url).items():
        monkeypatch.setenv(key, value)
    save_record("vm1")
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert_one_error_line(result.stderr, words)


def test_status_offline_shows_the_local_records_marked_not_live(failing, tmp_path, monkeypatch):
    url, _ = failing("refused")
    for key, value in offline_env(tmp_path, url).items():
        monkeypatch.setenv(key, value)
    save_record("vm1")
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 4
    assert "NOT LIVE" in result.stdout and "vm1" in result.stdout and "203.0.113.9" in result.stdout
    rows = json.loads(CliRunner().invoke(cli, ["status", "--json"]).stdout)
    assert [(r["name"], r["live"], r["state"]) for r in rows] == [("vm1", False, "recorded ready (not live)")]


@pytest.mark.parametrize("kind", ["dns", "refused", "timeout", "tls"])
def test_status_as_a_real_process_with_a_fresh_home(kind, failing, tmp_path, isolated_home):
    url, words = failing(kind)
    env = {**offline_env(tmp_path, url), "GPUCTL_HOME": str(isolated_home),
           "GPUCTL_CONFIG": str(tmp_path / "config.toml"), "GPUCTL_OWNER": "alice"}
    done = subprocess.run([str(GPUCTL), "status"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 4, done.stderr
    assert_one_error_line(done.stderr, words)


# --- SSH: banner and handshake garbage (paramiko, through adapters/ssh.py) --------------------

SSH_FAULTS = {
    "banner": (b"HTTP/1.1 400 Bad Request\r\n\r\n", True, "not with an SSH banner"),
    "handshake": (b"SSH-2.0-OpenSSH_9.6\r\n" + b"\x00\x00\x00\x0c\x0agarbage!" * 4, True,
                  "SSH handshake"),
}


@pytest.mark.parametrize("fault", sorted(SSH_FAULTS))
def test_provision_over_ssh_garbage_is_one_line(fault, tmp_path, isolated_home):
    payload, close_after, words = SSH_FAULTS[fault]
    server = LoopbackServer(payload, close_after)
    known = tmp_path / "known_hosts"
    known.write_text("")
    env = {**os.environ, "HOME": str(tmp_path), "GPUCTL_HOME": str(isolated_home),
           "GPUCTL_CONFIG": str(tmp_path / "config.toml")}
    env.pop("GPUCTL_DEBUG", None)
    try:
        done = subprocess.run([str(GPUCTL), "provision", f"ci@127.0.0.1:{server.port}",
                               "--known-hosts", str(known), "--json"],
                              env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert done.returncode != 0
    assert_one_error_line(done.stderr, words)
