"""Google Compute Engine rules a VM spec must satisfy, checked before anything is created.

Each rule returns a Violation that says what is wrong and what to change, so a bad spec fails
on the laptop in milliseconds instead of as a 400 from the API after a Pulumi preview.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import RuleViolation

from .catalog import FLEX_START_MAX_SECONDS, GPUS, MACHINES, REGIONS
from .spec import (CALLER_ADDRESS_PLACEHOLDER, CHECKPOINT_ROLE, CHECKPOINT_SCOPE,
                   VmSpec)

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Room for the suffixes gpuctl adds to derived resource names ("-ssh", "-daily-stop").
MAX_NAME_LEN = 50
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
ZONE_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
REQUIRED_LABELS = ("gpuctl-managed", "gpuctl-owner", "gpuctl-name", "gpuctl-expiry")
BOOT_DISK_TYPES = ("pd-ssd", "pd-balanced", "pd-standard")
MIN_RUN_SECONDS = 30
MAX_RUN_SECONDS = 120 * 24 * 3600
PUBLIC_KEY_PREFIXES = ("ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-nistp256 ", "sk-ssh-ed25519@openssh.com ")
# iam.v1.json, CreateServiceAccountRequest.accountId: 6-30 characters, [a-z]([-a-z0-9]*[a-z0-9]).
ACCOUNT_ID_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
# Bucket names: 3-63 characters of lowercase letters, digits, '-', '_' and '.', starting and
# ending with a letter or digit (https://cloud.google.com/storage/docs/buckets#naming).
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
SECRET_MARKERS = ("PRIVATE KEY", "password", "passwd", "secret", "token", "hf_", "api_key", "apikey")


def is_time_zone(name: str) -> bool:
    """True for an IANA zone name ZoneInfo can load (not a directory such as 'Asia')."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: 'Asia' is a directory
        return False
    return True


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str
    hint: str


def _zone_violations(spec: VmSpec, gpu: str | None) -> list[Violation]:
    if not ZONE_RE.fullmatch(spec.zone):
        return [Violation("zone-format", f"'{spec.zone}' is not a zone name",
                          "zones look like us-central1-a or asia-northeast1-c")]
    if spec.region not in REGIONS:
        return [Violation("region-known", f"gpuctl has no GPU data for region {spec.region}",
                          f"use a zone in one of: {', '.join(REGIONS)}")]
    if gpu is None or gpu not in GPUS:
        return []
    machine = MACHINES[spec.machine_type]
    # A built-in GPU's type lives where the snapshot lists the type; an attached one, where the GPU is.
    offered = machine.zones_in(spec.region) if machine.builtin_gpu else GPUS[gpu].zones_in(spec.region)
    if spec.zone in offered:
        if spec.spot and spec.zone not in (machine.zones_in(spec.region, "SPOT") if machine.builtin_gpu
                                           else GPUS[gpu].spot_zones_in(spec.region)):
            spot_zones = (machine.zones_in(spec.region, "SPOT") if machine.builtin_gpu
                          else GPUS[gpu].spot_zones_in(spec.region))
            return [Violation("spot-zone", f"the price data has no spot offer of {machine.name} "
                              f"in {spec.zone}",
                              f"use one of: {', '.join(spot_zones)}" if spot_zones
                              else "use on-demand or another region")]
        return []
    if machine.builtin_gpu and not machine.zones:
        return [Violation("machine-zone", f"{machine.name} is in no zone of gpuctl's price data",
                          "its zones are not in the bundled snapshot (unverified); "
                          "pick another machine type")]
    if machine.builtin_gpu:
        what = f"{machine.name} ({GPUS[gpu].display})"
        if not offered:
            return [Violation("gpu-zone", f"{what} is not offered in {spec.region}",
                              f"pick a zone in {_few(machine.regions)}")]
        return [Violation("gpu-zone", f"{what} is not offered in {spec.zone}",
                          f"use one of: {', '.join(offered)}")]
    if not offered:
        return [Violation("gpu-zone", f"{GPUS[gpu].display} is not offered in {spec.region}",
                          f"pick a zone in {_few(GPUS[gpu].regions)}")]
    return [Violation("gpu-zone", f"{GPUS[gpu].display} is not offered in {spec.zone}",
                      f"use one of: {', '.join(offered)}")]


def _few(regions: list[str], shown: int = 8) -> str:
    more = len(regions) - shown
    return ", ".join(regions[:shown]) + (f" (and {more} more)" if more > 0 else "")


def _gpu_violations(spec: VmSpec) -> tuple[list[Violation], str | None]:
    """Check the GPU/machine pairing; return the GPU type the VM ends up with."""
    machine = MACHINES[spec.machine_type]
    if machine.builtin_gpu:
        if spec.accelerator_type or spec.accelerator_count:
            return [Violation(
                "gpu-builtin",
                f"{machine.name} has its {GPUS[machine.builtin_gpu].display} built in; "
                "it takes no guest accelerators",
                "remove the accelerator from the profile")], machine.builtin_gpu
        return [], machine.builtin_gpu
    if not spec.accelerator_type:
        attachable = ", ".join(machine.attachable_gpus) or "none"
        return [Violation("gpu-missing", f"{machine.name} has no GPU",
                          f"attach one of: {attachable}")], None
    allowed = machine.attachable_gpus.get(spec.accelerator_type)
    if allowed is None:
        return [Violation(
            "gpu-pair", f"{spec.accelerator_type} cannot be attached to {machine.name}",
            f"attachable GPUs: {', '.join(machine.attachable_gpus) or 'none'}; "
            "A100/L4/H100 come with a2/g2/a3 machine types")], spec.accelerator_type
    if spec.accelerator_count not in allowed:
        return [Violation(
            "gpu-count", f"{spec.accelerator_count}x {spec.accelerator_type} is not a valid count "
            f"on {machine.name}", f"use one of: {', '.join(map(str, allowed))}")], spec.accelerator_type
    return [], spec.accelerator_type


def _local_ssd_violations(spec: VmSpec) -> list[Violation]:
    machine = MACHINES[spec.machine_type]
    if machine.bundled_local_ssd and spec.local_ssd_count:
        return [Violation(
            "local-ssd-bundled",
            f"{machine.name} comes with {machine.bundled_local_ssd} local SSD(s); "
            "scratch disks cannot be added", "set nvme_count = 0 in the profile")]
    if spec.local_ssd_count and spec.local_ssd_count not in machine.local_ssd_counts:
        return [Violation(
            "local-ssd-count",
            f"{spec.local_ssd_count} local SSDs is not a valid count on {machine.name}",
            f"use 0 or one of: {', '.join(map(str, machine.local_ssd_counts)) or 'none'}")]
    return []


def _scheduling_violations(spec: VmSpec) -> list[Violation]:
    out: list[Violation] = []
    machine = MACHINES[spec.machine_type]
    if machine.spot_only and not (spec.spot or spec.flex_start):
        out.append(Violation("spot-only", f"{machine.name} is offered only as spot (or flex-start)",
                             "use the -spot profile, or --flex-start"))
    if spec.spot and spec.flex_start:
        out.append(Violation("one-model", "spot and flex-start are two provisioning models",
                             "pick one of them"))
    out += _flex_start_violations(spec)
    if spec.max_run_seconds is not None and spec.termination_time is not None:
        out.append(Violation("run-limit-exclusive",
                             "max run duration and termination time cannot both be set",
                             "pass either --ttl/--budget or --until, not both"))
    if spec.max_run_seconds is not None and not (
            MIN_RUN_SECONDS <= spec.max_run_seconds <= MAX_RUN_SECONDS):
        out.append(Violation("run-limit-range",
                             f"max run duration {spec.max_run_seconds}s is outside 30 s .. 120 days",
                             "pick a TTL between 1m and 120d"))
    if spec.termination_action not in ("DELETE", "STOP"):
        out.append(Violation("termination-action",
                             f"termination action {spec.termination_action!r} is unknown",
                             "use DELETE or STOP"))
    return out


def _flex_start_violations(spec: VmSpec) -> list[Violation]:
    """about-flex-start-vms: 'Flex-start VMs support all accelerator-optimized machine types
    (except A4X and G4)'; they 'run for up to seven days', then are stopped or deleted by their
    termination action; the user cannot stop or suspend them (so no instance schedule)."""
    if not spec.flex_start:
        return []
    machine = MACHINES[spec.machine_type]
    out: list[Violation] = []
    if not machine.flex_start:
        out.append(Violation("flex-start-machine", f"{machine.name} takes no flex-start VMs",
                             "flex-start is for accelerator-optimized types (A2, A3, A4, G2), "
                             "not N1 or G4"))
    if spec.max_run_seconds is None:
        out.append(Violation("flex-start-duration", "a flex-start VM needs a run duration",
                             "pass --ttl (at most 7d)"))
    elif spec.max_run_seconds > FLEX_START_MAX_SECONDS:
        out.append(Violation("flex-start-duration",
                             f"a flex-start VM runs at most 7 days, not {spec.max_run_seconds}s",
                             "pass --ttl 7d or less"))
    if spec.termination_time is not None:
        out.append(Violation("flex-start-duration", "a flex-start VM takes a run duration, "
                             "not a termination time", "pass --ttl instead of --until"))
    if spec.daily_stop is not None:
        out.append(Violation("flex-start-stop", "a flex-start VM cannot be stopped by a schedule",
                             "drop --stop-at (flex-start VMs cannot be stopped or suspended)"))
    return out


def _network_violations(spec: VmSpec) -> list[Violation]:
    if spec.iap:  # the rule admits IAP's range (spec.IAP_TCP_FORWARDING_RANGE), never the caller's
        return []
    return single_address_violations(spec.ssh_source_cidr, "ssh-source", "SSH", "port 22", "--ssh-from")


def single_address_violations(cidr: str, code: str, what: str, opened: str, flag: str) -> list[Violation]:
    """gpuctl opens a door (SSH, a cluster's control plane) to the caller's one address only."""
    if cidr == CALLER_ADDRESS_PLACEHOLDER:
        return []
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        return [Violation(code, f"'{cidr}' is not an address range",
                          f"pass one address, e.g. {flag} 198.51.100.7")]
    if net.num_addresses != 1:
        return [Violation(code, f"{what} would be open to {net.num_addresses} addresses ({net})",
                          f"gpuctl opens {opened} to one address only: pass a /32 (IPv4) or /128")]
    return []


def _identity_violations(spec: VmSpec) -> list[Violation]:
    out: list[Violation] = []
    if len(spec.name) > MAX_NAME_LEN or not NAME_RE.fullmatch(spec.name):
        out.append(Violation(
            "name", f"'{spec.name}' is not a valid VM name",
            f"use lowercase letters, digits and dashes, start with a letter, at most {MAX_NAME_LEN}"))
    for key in REQUIRED_LABELS:
        if key not in spec.labels:
            out.append(Violation("labels-required", f"label {key} is missing",
                                 "every gpuctl resource carries the gpuctl-* labels"))
    for key, value in spec.labels.items():
        if not LABEL_KEY_RE.fullmatch(key) or not LABEL_VALUE_RE.fullmatch(value):
            out.append(Violation("label-format", f"label {key}={value!r} is not a valid GCE label",
                                 "labels are lowercase letters, digits, - and _, at most 63"))
    return out


def _disk_violations(spec: VmSpec) -> list[Violation]:
    out: list[Violation] = []
    if spec.boot_disk_type not in BOOT_DISK_TYPES:
        out.append(Violation("boot-disk-type", f"boot disk type {spec.boot_disk_type!r} is unknown",
                             f"use one of: {', '.join(BOOT_DISK_TYPES)}"))
    if not 10 <= spec.boot_disk_gb <= 65536:
        out.append(Violation("boot-disk-size", f"boot disk of {spec.boot_disk_gb} GB is out of range",
                             "use 10 to 65536 GB (models want 100 GB or more)"))
    return out


def _daily_stop_violations(spec: VmSpec) -> list[Violation]:
    stop = spec.daily_stop
    if stop is None:
        return []
    out: list[Violation] = []
    if not (0 <= stop.hour < 24 and 0 <= stop.minute < 60):
        out.append(Violation("daily-stop-clock", f"{stop.hour}:{stop.minute} is not a clock time",
                             "use HH:MM, e.g. 06:00"))
    if not is_time_zone(stop.time_zone):
        out.append(Violation("daily-stop-tz", f"'{stop.time_zone}' is not a time zone",
                             "use an IANA name such as Asia/Tokyo or UTC"))
    return out


def metadata_violations(metadata: dict[str, str]) -> list[Violation]:
    """Instance metadata is readable by every process on the VM: it must hold no secret."""
    out: list[Violation] = []
    for key, value in metadata.items():
        if key == "ssh-keys":
            for line in filter(None, value.splitlines()):
                _, _, key_text = line.partition(":")
                if not key_text.startswith(PUBLIC_KEY_PREFIXES):
                    out.append(Violation("metadata-secret", "ssh-keys holds something other than "
                                         "a public key", "pass the .pub file, never the private key"))
            continue
        lowered = f"{key}={value}".lower()
        for marker in SECRET_MARKERS:
            if marker.lower() in lowered:
                out.append(Violation("metadata-secret", f"metadata {key} looks like it holds a "
                                     f"secret ({marker!r})",
                                     "keep secrets in Secret Manager, never in metadata"))
                break
    return out


def _access_violations(spec: VmSpec) -> list[Violation]:
    bucket = spec.checkpoint_bucket
    if bucket is None:
        return []
    out: list[Violation] = []
    if not BUCKET_RE.fullmatch(bucket) or "goog" in bucket:
        out.append(Violation("checkpoint-bucket", f"'{bucket}' is not a bucket name gpuctl can grant on",
                             "use 3-63 lowercase letters, digits, -, _ and . (no 'goog')"))
    # The account id needs no rule: spec.account_id_for makes a valid one from any valid VM
    # name (a property test in tests/test_vm_checkpoint_access.py holds it to IAM's rule).
    return out


# The one scope a recovering VM's token carries besides CHECKPOINT_SCOPE: Compute Engine, so the
# VM can delete its own group once its run exits 0 (runs/host_scripts/bootstrap.py watch). The
# scope only caps the token; IAM decides what it may touch: one binding whose condition names that
# group alone (recovering_vm.py, self_delete_condition): a VM's call needs both the scope on its
# token and the IAM permission (https://cloud.google.com/compute/docs/access/service-accounts,
# access scopes and IAM; the page's wording was not re-read here: unverified). The narrowest
# scope regionInstanceGroupManagers.delete takes: its `scopes` in compute.v1.json are
# cloud-platform and compute only.
SELF_DELETE_SCOPE = "https://www.googleapis.com/auth/compute"


def service_account_violations(scopes: list[str], role: str, on_bucket: str | None, *,
                               self_delete: bool = False) -> list[Violation]:
    """A VM's identity may read and write one bucket's objects, nothing more: exactly the
    devstorage.read_write scope (never cloud-platform or full_control, which would let a
    stolen token reach every API or rewrite IAM policies) and the object-user role granted on
    one named bucket (never on the project). A recovering VM (`self_delete`) carries exactly one
    scope more, SELF_DELETE_SCOPE, in that order, and nothing else."""
    out: list[Violation] = []
    allowed = [CHECKPOINT_SCOPE, SELF_DELETE_SCOPE] if self_delete else [CHECKPOINT_SCOPE]
    if list(scopes) != allowed:
        out.append(Violation("vm-scope", f"a gpuctl VM's token may carry only {' and '.join(allowed)}, "
                             f"not {', '.join(scopes) or 'no scope'}",
                             "checkpoints need read and write of objects only"
                             + ("; the group's own deletion the Compute scope" if self_delete else "")))
    if role != CHECKPOINT_ROLE:
        out.append(Violation("vm-role", f"a gpuctl VM may hold only {CHECKPOINT_ROLE}, not {role}",
                             "checkpoints need object access only, not bucket or project control"))
    if not on_bucket:
        out.append(Violation("vm-role-scope", "the VM's role must be granted on one bucket",
                             "grant it on the checkpoint bucket, never on the project"))
    return out


def violations(spec: VmSpec) -> list[Violation]:
    """Every rule the spec breaks, most fundamental first."""
    if spec.machine_type not in MACHINES:
        return [Violation("machine-type", f"machine type {spec.machine_type} is not known to gpuctl",
                          f"use one of: {', '.join(sorted(MACHINES))}")]
    gpu_problems, gpu = _gpu_violations(spec)
    return (_identity_violations(spec) + gpu_problems + _zone_violations(spec, gpu)
            + _local_ssd_violations(spec) + _scheduling_violations(spec)
            + _network_violations(spec) + _disk_violations(spec) + _daily_stop_violations(spec)
            + _access_violations(spec))


def check_failed(found: list[Violation]) -> None:
    """Raise the first violation as a RuleViolation (one line, with a hint)."""
    if found:
        raise RuleViolation(found[0].message, found[0].hint)


def check(spec: VmSpec) -> None:
    check_failed(violations(spec))
