"""Fault injection for the Compute Engine stand-in, and the events that happen behind gpuctl's
back: preemption, a time-limit guard firing, deletion by someone else, the clock moving on."""

from __future__ import annotations

import datetime as dt
import re

from tests.standins.compute_base import BaseMixin, parse_timestamp
from tests.standins.compute_catalog import REGIONS, ZONES, default_catalog
from tests.standins.compute_errors import transient
from tests.standins.compute_instance_rules import Vm


class FaultsMixin(BaseMixin):
    _vms: dict[tuple, Vm]
    nat_ips: dict[str, str]

    # ---------------------------------------------------------------- fault injection
    def clear_faults(self) -> None:
        with self._lock:
            self._stockouts: list[dict] = []
            self._quotas: dict[tuple, tuple[float, bool]] = {}
            self._bursts: list[dict] = []
            self._denied: set[str] | None = None  # None: nothing denied; empty set: everything
            self._disabled = False
            self.unreachable_zones = set()
            self.catalog = default_catalog()

    def stockout(self, *zones: str, with_details: bool = True, machine_types=None, times: int | None = None,
                 on=("insert", "start")) -> None:
        """Inserts (and starts) in `zones` end in an Operation error ZONE_RESOURCE_POOL_EXHAUSTED[_WITH_DETAILS],
        HTTP 503 on the operation; only for `machine_types` if given; the first `times` attempts only if given."""
        for zone in zones:
            assert zone in ZONES, zone
        with self._lock:
            self._stockouts.append({"zones": set(zones), "with_details": with_details, "times": times,
                                    "machine_types": set(machine_types) if machine_types else None, "on": set(on)})

    def set_quota(self, region: str, metric: str, limit: float = 0.0, *, sync: bool = False) -> None:
        """GPU quota: e.g. set_quota("us-central1", "NVIDIA_A100_GPUS", 0). A spot VM draws on
        "PREEMPTIBLE_<metric>" when that one is set, else on the plain metric; region "global" with
        "GPUS_ALL_REGIONS" limits all regions. Over the limit, the insert Operation ends QUOTA_EXCEEDED
        (HTTP 403) or, with sync=True, insert itself answers 403 quotaExceeded."""
        assert region in REGIONS or (region == "global" and metric == "GPUS_ALL_REGIONS"), (region, metric)
        with self._lock:
            self._quotas[(region, metric)] = (float(limit), sync)

    def remove_from_zone(self, zone: str, *, machine_type: str | None = None, accelerator: str | None = None) -> None:
        """The zone no longer offers this machine type / accelerator type (insert -> 400 / 404)."""
        with self._lock:
            if machine_type:
                self.catalog[zone]["machineTypes"].discard(machine_type)
            if accelerator:
                self.catalog[zone]["acceleratorTypes"].discard(accelerator)

    def fail_next(self, times: int, status: int = 503, *, method: str | None = None, path: str | None = None,
                  rpc: str | None = None, apply: bool = False) -> None:
        """The next `times` matching requests answer HTTP `status` (429, 500 or 503) with GCE's body.
        method/path (a regex searched in the URL path)/rpc narrow the match. apply=True carries the
        request out first and loses the answer (a create that happened, though the client saw a 503)."""
        transient(status)  # refuses statuses without a body
        with self._lock:
            self._bursts.append({"times": times, "status": status, "method": method, "rpc": rpc, "apply": apply,
                                 "path": re.compile(path) if path else None})

    def deny_permission(self, *permissions: str) -> None:
        """403 'Required <permission> permission' for these permissions (e.g. "compute.instances.create");
        none given: for every request."""
        with self._lock:
            self._denied = set(permissions)

    def disable_api(self) -> None:
        """Every request answers 403 accessNotConfigured / SERVICE_DISABLED."""
        with self._lock:
            self._disabled = True

    def make_unreachable(self, *zones: str) -> None:
        """Aggregated lists leave these zones' resources out: the zones are named in `unreachables`
        with returnPartialSuccess=true, else their scope carries a warning with code UNREACHABLE."""
        with self._lock:
            self.unreachable_zones |= set(zones)

    # ---------------------------------------------------------------- events behind gpuctl's back
    def find_vm(self, name: str, zone: str | None = None, project: str | None = None) -> Vm:
        project = project or self.project
        found = [vm for (p, z, n), vm in self._vms.items() if p == project and n == name and zone in (None, z)]
        assert len(found) == 1, f"{len(found)} instances named {name!r} (zone={zone})"
        return found[0]

    def _system_operation(self, vm: Vm, op_type: str, message: str, user: str = "system") -> None:
        self.operation(vm.project, f"zones/{vm.zone}", op_type, vm.doc["selfLink"], vm.doc["id"], user=user,
                       polls=0, outcome={"statusMessage": message})

    def _terminate(self, vm: Vm) -> None:
        if vm.doc["scheduling"].get("instanceTerminationAction", "STOP") == "DELETE":
            self.remove_vm(vm)
        else:
            self.set_vm_status(vm, "TERMINATED")

    def preempt(self, name: str, zone: str | None = None) -> None:
        """GCE reclaims a spot VM: per instanceTerminationAction it is TERMINATED (STOP) or deleted,
        and a zone Operation "compute.instances.preempted" is recorded, as GCE does."""
        with self._lock:
            vm = self.find_vm(name, zone)
            scheduling = vm.doc["scheduling"]
            assert scheduling.get("provisioningModel") == "SPOT" or scheduling.get("preemptible"), \
                f"{name} is not a spot VM; GCE does not preempt it"
            self._system_operation(vm, "compute.instances.preempted", "Instance was preempted.")
            self._terminate(vm)

    def fire_time_limit(self, name: str, zone: str | None = None) -> None:
        """The maxRunDuration / terminationTime guard fires: STOP or DELETE per instanceTerminationAction."""
        with self._lock:
            vm = self.find_vm(name, zone)
            scheduling = vm.doc["scheduling"]
            assert "maxRunDuration" in scheduling or "terminationTime" in scheduling, f"{name} has no time limit"
            self._terminate(vm)

    def advance_clock(self, seconds: float) -> list[str]:
        """Move the clock on; RUNNING VMs whose terminationTimestamp has passed are terminated.
        Returns the names of those VMs."""
        with self._lock:
            self._clock_offset += dt.timedelta(seconds=seconds)
            fired = []
            for vm in list(self._vms.values()):
                stamp = vm.doc.get("resourceStatus", {}).get("scheduling", {}).get("terminationTimestamp")
                if vm.doc["status"] == "RUNNING" and stamp and parse_timestamp(stamp) <= self.now():
                    fired.append(vm.name)
                    self._terminate(vm)
            return fired

    def delete_behind_back(self, name: str, zone: str | None = None) -> None:
        """Someone else deletes the instance (console, another tool); autoDelete disks go with it."""
        with self._lock:
            vm = self.find_vm(name, zone)
            self._system_operation(vm, "delete", "", user="someone-else@example.com")
            self.remove_vm(vm)

    def set_status(self, name: str, status: str, zone: str | None = None) -> None:
        with self._lock:
            self.set_vm_status(self.find_vm(name, zone), status)

    def set_nat_ip(self, name: str, ip: str, zone: str | None = None) -> None:
        """Give a VM (now and on every start) this external address, e.g. a throwaway host's netns IP."""
        with self._lock:
            self.nat_ips[name] = ip
            vm = next((v for v in self._vms.values() if v.name == name and zone in (None, v.zone)), None)
            if vm is not None:
                for config in vm.doc["networkInterfaces"][0].get("accessConfigs", []):
                    if "natIP" in config:
                        config["natIP"] = ip

    def set_guest_attribute(self, name: str, namespace: str, key: str, value: str, zone: str | None = None) -> None:
        """What the guest agent writes (seen only with metadata enable-guest-attributes=TRUE, RUNNING)."""
        with self._lock:
            self.find_vm(name, zone).guest_attributes[(namespace, key)] = value

    def set_host_keys(self, name: str, keys: dict[str, str], zone: str | None = None) -> None:
        """e.g. {"ssh-ed25519": "AAAAC3Nz..."}: the guest agent's hostkeys/ namespace."""
        for key_type, value in keys.items():
            self.set_guest_attribute(name, "hostkeys", key_type, value, zone)
