"""Provisioning: a full run on a fresh throwaway host beside the no-op rerun on the ready host.

Reports wall time and SSH round trips for each, and their ratio. Needs root (network
namespaces, loop devices) and the tools from scripts/install-test-host-deps.sh.
Run: .venv/bin/python bench/provision.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpuctl.adapters.ssh import SshTarget  # noqa: E402
from gpuctl.provision.service import provision_host  # noqa: E402
from gpuctl.provision.settings import ProvisionSettings  # noqa: E402
from gpuctl_infra.spec import DailyStop  # noqa: E402
from tests.hosts.host import ThrowawayHost  # noqa: E402
from tests.hosts.rootfs import ensure_rootfs  # noqa: E402


def one_round(rootfs) -> dict:
    with ThrowawayHost(disks=1, rootfs=rootfs) as host:
        target = SshTarget(host.address, host.user, host.port, host.key_path, host.known_hosts_path)
        settings = ProvisionSettings(login_user=host.user, time_zone="Asia/Tokyo",
                                     daily_stop=DailyStop(6, 0, "Asia/Tokyo"), python="3.11")
        t0 = time.monotonic()
        full = provision_host(target, settings)
        t1 = time.monotonic()
        rerun = provision_host(target, settings)
        t2 = time.monotonic()
        assert full.ok and rerun.ok and rerun.changed == 0, "the rerun must change nothing"
        return {"full_s": t1 - t0, "full_trips": full.round_trips,
                "rerun_s": t2 - t1, "rerun_trips": rerun.round_trips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rootfs = ensure_rootfs()
    rounds = [one_round(rootfs) for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"| run | median wall s | SSH round trips |\n| --- | ---: | ---: |")
    print(f"| full provision (fresh host) | {med['full_s']:.2f} | {med['full_trips']:.0f} |")
    print(f"| no-op rerun (ready host) | {med['rerun_s']:.2f} | {med['rerun_trips']:.0f} |")
    print(f"\nrerun / full: time {med['rerun_s'] / med['full_s']:.2f}, "
          f"round trips {med['rerun_trips'] / med['full_trips']:.2f} ({args.runs} runs, "
          "GPU steps skipped: the throwaway host has no GPU)")


if __name__ == "__main__":
    main()
