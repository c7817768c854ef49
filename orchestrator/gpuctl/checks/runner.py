"""The checks behind `gpuctl check`, in the order a new user meets the problems. Each returns
one CheckResult; a check that cannot run because an earlier one failed is skipped, so the
first failure is the one to fix. No check changes anything."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from ..context import Context
from ..errors import GpuctlError, ProfileError
from . import CheckResult, fail, ok, skip
from .needs import APIS, PERMISSIONS, QUOTA_METRICS, ROLES

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
LOGIN_FIX = "run `gcloud auth application-default login`"


@dataclass
class Adc:
    credentials: object | None
    project: str | None


def run_checks(ctx: Context, profile: str | None = None, region: str | None = None) -> list[CheckResult]:
    results: list[CheckResult] = []
    credentials_result, adc = check_credentials()
    results.append(credentials_result)
    project_result, project = check_project(ctx, adc)
    results.append(project_result)
    if credentials_result.failed or project is None:
        reason = "needs working credentials and a project (above)"
        results += [skip(f"API {name}", reason) for name in APIS]
        results += [skip(f"permissions {command}", reason) for command in PERMISSIONS]
        results.append(skip("GPU quota", reason))
    else:
        credentials = with_quota_project(adc.credentials, project)
        results += check_apis(project, credentials)
        results += check_permissions(project, credentials)
        results.append(check_quota(ctx, project, profile, region))
    results.append(check_pulumi())
    if ctx.config.iap:  # every SSH connection then goes through gcloud's IAP tunnel
        results.append(check_gcloud())
    results.append(check_public_address(ctx))
    return results


# --- credentials and project -------------------------------------------------------------------


def check_credentials() -> tuple[CheckResult, Adc]:
    """Application Default Credentials: found (which kind, which account) and accepted by
    Google (a token refresh, bounded by GPUCTL_HTTP_TIMEOUT)."""
    import google.auth
    import google.auth.transport.requests
    from google.auth import exceptions

    from ..adapters.transport import http_timeout_s, network_error

    try:
        credentials, project = google.auth.default(scopes=SCOPES)
    except exceptions.DefaultCredentialsError as exc:
        return fail("credentials", f"no Application Default Credentials ({first_line(exc)})",
                    LOGIN_FIX), Adc(None, None)
    kind = describe_credentials(credentials)
    try:
        request = google.auth.transport.requests.Request()
        credentials.refresh(lambda *a, **k: request(*a, **{**k, "timeout": http_timeout_s()}))
    except exceptions.RefreshError as exc:
        return fail("credentials", f"{kind}: refused by Google ({first_line(exc)})",
                    f"{LOGIN_FIX} again"), Adc(None, project)
    except exceptions.TransportError as exc:
        error = network_error(exc, "Google's sign-in service")
        return fail("credentials", f"{kind}: {error.message}", error.hint), Adc(None, project)
    return ok("credentials", kind), Adc(credentials, project)


def describe_credentials(credentials) -> str:
    """Which kind of ADC, and whose, without a network call."""
    kind = type(credentials).__module__ + "." + type(credentials).__name__
    email = getattr(credentials, "service_account_email", None)
    if kind == "google.oauth2.service_account.Credentials":
        return f"service account {email} (key file)"
    if kind == "google.oauth2.credentials.Credentials":
        account = getattr(credentials, "account", "") or "account not recorded in the file"
        return f"user credentials ({account}; `gcloud auth application-default login`)"
    if kind == "google.auth.impersonated_credentials.Credentials":
        return f"impersonating service account {email}"
    if kind == "google.auth.compute_engine.credentials.Credentials":
        return "the metadata server's service account (running on Google Cloud)"
    if kind.startswith(("google.auth.external_account", "google.auth.identity_pool",
                        "google.auth.aws", "google.auth.pluggable")):
        return "workload identity federation (external account)"
    return f"credentials of type {type(credentials).__name__}"


def with_quota_project(credentials, project: str):
    """User credentials carry no project to bill API calls to; Service Usage and Resource
    Manager refuse such calls. Bill them to the project being checked."""
    if getattr(credentials, "quota_project_id", "missing") is None and hasattr(
            credentials, "with_quota_project"):
        return credentials.with_quota_project(project)
    return credentials


def check_project(ctx: Context, adc: Adc) -> tuple[CheckResult, str | None]:
    if ctx.config.project:
        return ok("project", f"{ctx.config.project} (gpuctl config / GPUCTL_PROJECT)"), ctx.config.project
    if adc.project:
        return ok("project", f"{adc.project} (from Application Default Credentials / gcloud)"), adc.project
    return fail("project", "no Google Cloud project is set",
                "set `project` in the gpuctl config, GPUCTL_PROJECT, or "
                "`gcloud config set project PROJECT`"), None


# --- APIs and permissions ---------------------------------------------------------------------


def check_apis(project: str, credentials) -> list[CheckResult]:
    from ..adapters.serviceusage import service_states

    try:
        states = service_states(project, list(APIS), credentials)
    except GpuctlError as exc:
        return [fail(f"API {name}", f"could not read: {exc.message}", exc.hint or "") for name in APIS]
    results = []
    for name, what in APIS.items():
        if states[name] == "ENABLED":
            results.append(ok(f"API {name}", f"{what} enabled"))
        else:
            results.append(fail(f"API {name}", f"{what} is not enabled in {project}",
                                f"gcloud services enable {name} --project {project}"))
    return results


def check_permissions(project: str, credentials) -> list[CheckResult]:
    from ..adapters.resourcemanager import granted_permissions

    wanted = sorted({p for perms in PERMISSIONS.values() for p in perms})
    try:
        granted = granted_permissions(project, wanted, credentials)
    except GpuctlError as exc:
        return [fail(f"permissions {command}", f"could not test: {exc.message}", exc.hint or "")
                for command in PERMISSIONS]
    results = []
    for command, perms in PERMISSIONS.items():
        missing = [p for p in perms if p not in granted]
        if not missing:
            results.append(ok(f"permissions {command}", f"all {len(perms)} granted"))
        else:
            results.append(fail(f"permissions {command}", f"missing {', '.join(missing)}",
                                f"grant {ROLES[command]} on {project} (IAM & Admin > IAM)"))
    return results


# --- GPU quota ----------------------------------------------------------------------------------


def check_quota(ctx: Context, project: str, profile_name: str | None, region: str | None) -> CheckResult:
    if not profile_name:
        return skip("GPU quota", "pass --profile NAME (and --region) to check a profile's GPU quota")
    profile = ctx.profiles.get(profile_name)
    if profile is None:
        raise ProfileError(f"unknown profile {profile_name}", "gpuctl profiles lists them")
    region = region or profile.region or ctx.config.region
    gpu, count = profile.gpu_type, profile.gpu_total
    name = f"GPU quota {profile_name} in {region}"
    if not gpu or not count:
        return ok(name, "the profile has no GPU")
    metric = QUOTA_METRICS.get(gpu)
    if metric is None:
        return skip(name, f"gpuctl does not know the quota metric of {gpu}")
    from ..adapters.compute import ComputeApi

    try:
        quotas = ComputeApi(project).region_quotas(region)
    except GpuctlError as exc:
        return fail(name, f"could not read: {exc.message}", exc.hint or "")
    if quotas is None:
        return fail(name, f"Compute Engine has no region {region}", "pass --region with a real region")
    return judge_quota(name, quotas, metric, count, profile.spot, region)


def judge_quota(name: str, quotas: dict[str, tuple[float, float]], metric: str, count: int,
                spot: bool, region: str) -> CheckResult:
    """Spot VMs draw on PREEMPTIBLE_<metric> when the project has that quota, else on the
    standard one: "To prevent Spot VMs from consuming your quotas for standard VMs' CPUs,
    GPUs, and disks, consider requesting preemptible quota for Spot VMs"
    (https://cloud.google.com/compute/docs/instances/create-use-spot)."""
    used = metric
    if spot and quotas.get(f"PREEMPTIBLE_{metric}", (0.0, 0.0))[0] > 0:
        used = f"PREEMPTIBLE_{metric}"
    limit, usage = quotas.get(used, (0.0, 0.0))
    free = limit - usage
    if free >= count:
        return ok(name, f"{used}: {free:g} of {limit:g} free, the profile needs {count}")
    wanted = f"PREEMPTIBLE_{metric} (spot) or {metric}" if spot else metric
    return fail(name, f"{used}: {free:g} of {limit:g} free, the profile needs {count}",
                f"request {wanted} quota of {count}+ in {region} (IAM & Admin > Quotas), "
                "or pass --region")


# --- local tools ---------------------------------------------------------------------------------


def check_pulumi() -> CheckResult:
    from ..adapters.pulumi_engine import find_pulumi_cli

    try:
        cli = find_pulumi_cli()
    except GpuctlError as exc:
        return fail("Pulumi CLI", exc.message, exc.hint or "")
    try:
        done = subprocess.run([cli, "version"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return fail("Pulumi CLI", f"{cli} does not run: {exc}", "reinstall it: https://www.pulumi.com/docs/install/")
    version = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    if done.returncode != 0 or not version:
        return fail("Pulumi CLI", f"`{cli} version` failed: {first_line(done.stderr) or done.returncode}",
                    "reinstall it: https://www.pulumi.com/docs/install/")
    return ok("Pulumi CLI", f"{version} ({cli})")


def check_gcloud() -> CheckResult:
    """`iap = true`: gpuctl reaches VMs only through `gcloud compute start-iap-tunnel`
    (lifecycle/iap.py), so gcloud must be on PATH and run."""
    from ..lifecycle.iap import GCLOUD, MISSING_HINT

    try:
        done = subprocess.run([GCLOUD, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return fail("gcloud (iap = true)", "the Google Cloud CLI is not on PATH", MISSING_HINT)
    except subprocess.TimeoutExpired:
        return fail("gcloud (iap = true)", "`gcloud --version` did not answer in 30 s", MISSING_HINT)
    version = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    if done.returncode != 0 or not version:
        return fail("gcloud (iap = true)", f"`gcloud --version` failed: {first_line(done.stderr) or done.returncode}",
                    MISSING_HINT)
    return ok("gcloud (iap = true)", version)


def check_public_address(ctx: Context) -> CheckResult:
    from ..lifecycle import deps

    if ctx.config.ssh_from:
        return ok("SSH source", f"{ctx.config.ssh_from} (ssh_from in the config)")
    try:
        address = deps.detect_public_address()
    except GpuctlError as exc:
        return fail("SSH source", exc.message, exc.hint or "")
    return ok("SSH source", f"{deps.caller_cidr(ctx, address)} (detected; `up` opens SSH to it only)")


def first_line(value) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else ""
