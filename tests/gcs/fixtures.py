"""pytest fixtures: a real Cloud Storage emulator (fake-gcs-server) on loopback, per test.

The binary comes from scripts/build-gcs-emulator.sh (built from the Go module proxy, cached
under ~/.cache/gpuctl-dev). A missing build fails the test with the command that makes it:
a skip would hide that the storage code never ran against anything.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from .bucket_contract import BucketContractProxy

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-gcs-emulator.sh"
PROJECT = "gpuctl-test-project"
START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class GcsEmulator:
    endpoint: str  # http://127.0.0.1:PORT, what GPUCTL_STORAGE_ENDPOINT and api_endpoint take
    emulator_endpoint: str  # the emulator itself, without the bucket-metadata contract in front
    project: str
    contract: BucketContractProxy

    def client(self):
        """The real google-cloud-storage client, pointed at the emulator, without credentials."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project=self.project, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})


def emulator_binary() -> Path:
    out = subprocess.run([str(BUILD_SCRIPT), "--print-path"], capture_output=True, text=True, check=True)
    binary = Path(out.stdout.strip())
    if not binary.is_file():
        pytest.fail(f"no Cloud Storage emulator at {binary}: run scripts/build-gcs-emulator.sh "
                    "(builds fake-gcs-server from the Go module proxy, a few minutes once)", pytrace=False)
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(endpoint: str, process: subprocess.Popen, log: Path) -> None:
    """Until the JSON API answers a bucket list (the emulator's own readiness is that)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the Cloud Storage emulator exited ({process.returncode}): "
                        f"{log.read_text()[-2000:]}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{endpoint}/storage/v1/b?project={PROJECT}", timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"the Cloud Storage emulator did not answer in {START_TIMEOUT_S:.0f}s: "
                f"{log.read_text()[-2000:]}", pytrace=False)


@pytest.fixture
def gcs_emulator(tmp_path, monkeypatch):
    """A fresh, empty emulator (in-memory backend) on a free loopback port, behind the bucket
    contract proxy (bucket_contract.py: the bucket metadata the emulator drops, held to Google's
    discovery document); GPUCTL_STORAGE_ENDPOINT points gpuctl's storage adapter at it. Stopped,
    and its state dropped, after the test."""
    binary = emulator_binary()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path / "fake-gcs-server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
             "-backend", "memory", "-public-host", f"127.0.0.1:{port}",
             "-external-url", endpoint, "-log-level", "warn"],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until_serving(endpoint, process, log)
        contract = BucketContractProxy(port).start()
        try:
            monkeypatch.setenv("GPUCTL_STORAGE_ENDPOINT", contract.endpoint)
            yield GcsEmulator(endpoint=contract.endpoint, emulator_endpoint=endpoint, project=PROJECT,
                              contract=contract)
        finally:
            contract.stop()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
