"""The movable deadline of a VM: a Cloud Scheduler job that deletes it at a time gpuctl picks.

Why Cloud Scheduler: GCE's own run limit (Scheduling.maxRunDuration/terminationTime) can only
be changed with instances.setScheduling, which compute.v1.json says "You can only call this
method on astopped instance, that is, a VM instance that is in a `TERMINATED` state", and
stopping a VM loses its local NVMe. An instance schedule cannot carry it either: "Each VM
instance can only follow one instance schedule" and the daily stop already is one, and a
schedule only stops. A Cloud Scheduler job runs server-side with the laptop closed, calls
instances.delete with an OAuth token of a service account, and is moved in place with
projects.locations.jobs.patch (cloudscheduler.v1.json). The hard cap stays GCE's
maxRunDuration, fixed at creation: if the job fails (permissions, API off), the cap still ends
the VM.

One job per VM: projects/P/locations/REGION/jobs/gpuctl-deadline-NAME. Its schedule is a
unix-cron line for one minute of one day ("M H D MON *", UTC); it would fire again a year later,
by which time the VM is long gone (the hard cap is at most 120 days) and `down` deletes the job.
"""

from __future__ import annotations

import datetime as dt
import os

from ..errors import GpuctlError

ENDPOINT_ENV = "GPUCTL_SCHEDULER_ENDPOINT"  # e.g. a local stand-in: http://127.0.0.1:8086
COMPUTE_URL = "https://compute.googleapis.com/compute/v1"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def job_id(vm_name: str) -> str:
    return f"gpuctl-deadline-{vm_name}"


def cron_for(when: dt.datetime) -> tuple[str, dt.datetime]:
    """The cron line for `when`, rounded up to the next whole minute (cron has no seconds):
    the job never fires before the time asked for; the returned time is when it fires."""
    utc = when.astimezone(dt.timezone.utc)
    fires = utc.replace(second=0, microsecond=0)
    if fires < utc:
        fires += dt.timedelta(minutes=1)
    return f"{fires.minute} {fires.hour} {fires.day} {fires.month} *", fires


def fires_at(cron: str, now: dt.datetime) -> dt.datetime:
    """The next time a "M H D MON *" line made by cron_for fires, at or after `now` (UTC)."""
    minute, hour, day, month, _ = cron.split()
    for year in (now.year, now.year + 1):
        try:
            moment = dt.datetime(year, int(month), int(day), int(hour), int(minute), tzinfo=dt.timezone.utc)
        except ValueError:  # 29 Feb in a year without it
            continue
        if moment >= now.replace(second=0, microsecond=0):
            return moment
    raise GpuctlError(f"deadline schedule '{cron}' never fires", "run `gpuctl extend` to set it again")


class DeadlineApi:
    """Create, read, move and delete the deadline job of a VM (google-cloud-scheduler, REST)."""

    def __init__(self, project: str, region: str, service_account: str, *, endpoint: str | None = None,
                 credentials=None):
        self.project, self.region, self.service_account = project, region, service_account
        self.endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
        self._credentials = credentials
        self._client_cache = None

    def _client(self):
        if self._client_cache is None:
            from google.cloud import scheduler_v1

            options = {"api_endpoint": self.endpoint} if self.endpoint else None
            credentials = self._credentials
            if credentials is None and self.endpoint and self.endpoint.startswith("http://"):
                from google.auth.credentials import AnonymousCredentials

                credentials = AnonymousCredentials()  # a local stand-in takes no token
            self._client_cache = scheduler_v1.CloudSchedulerClient(credentials=credentials, client_options=options,
                                                                   transport="rest")
        return self._client_cache

    def job_name(self, vm_name: str) -> str:
        return f"projects/{self.project}/locations/{self.region}/jobs/{job_id(vm_name)}"

    def _job(self, vm_name: str, zone: str, cron: str):
        from google.cloud import scheduler_v1

        return scheduler_v1.Job(
            name=self.job_name(vm_name),
            description=f"gpuctl deadline: deletes VM {vm_name} in {zone}",
            schedule=cron, time_zone="Etc/UTC",
            http_target=scheduler_v1.HttpTarget(
                uri=f"{COMPUTE_URL}/projects/{self.project}/zones/{zone}/instances/{vm_name}",
                http_method=scheduler_v1.HttpMethod.DELETE,
                oauth_token=scheduler_v1.OAuthToken(service_account_email=self.service_account, scope=SCOPE)),
            retry_config=scheduler_v1.RetryConfig(retry_count=3))

    def set(self, vm_name: str, zone: str, when: dt.datetime) -> dt.datetime:
        """Make or move the deadline; returns the minute it fires."""
        from google.api_core import exceptions as gexc
        from google.protobuf import field_mask_pb2

        cron, fires = cron_for(when)
        job = self._job(vm_name, zone, cron)
        with _translated(self.endpoint):
            try:
                self._client().update_job(job=job, update_mask=field_mask_pb2.FieldMask(
                    paths=["schedule", "time_zone", "http_target", "description", "retry_config"]))
            except gexc.NotFound:
                parent = f"projects/{self.project}/locations/{self.region}"
                self._client().create_job(parent=parent, job=job)
        return fires

    def get(self, vm_name: str, now: dt.datetime) -> dt.datetime | None:
        """When the deadline fires, or None when the VM has none."""
        from google.api_core import exceptions as gexc

        with _translated(self.endpoint):
            try:
                job = self._client().get_job(name=self.job_name(vm_name))
            except gexc.NotFound:
                return None
        return fires_at(job.schedule, now)

    def vm_names(self) -> list[str]:
        """The VMs that have a deadline job in this region (jobs.list, every page)."""
        with _translated(self.endpoint):
            parent = f"projects/{self.project}/locations/{self.region}"
            names = [job.name.rsplit("/", 1)[-1] for job in self._client().list_jobs(parent=parent)]
        prefix = job_id("")
        return sorted(name.removeprefix(prefix) for name in names if name.startswith(prefix))

    def delete(self, vm_name: str) -> None:
        from google.api_core import exceptions as gexc

        with _translated(self.endpoint):
            try:
                self._client().delete_job(name=self.job_name(vm_name))
            except gexc.NotFound:
                pass


class _translated:
    """Library errors -> one GpuctlError with a hint (never a traceback)."""

    def __init__(self, endpoint: str | None):
        self.where = endpoint or "cloudscheduler.googleapis.com"

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from google.api_core import exceptions as gexc

        if exc is None or isinstance(exc, (gexc.NotFound, GpuctlError)):
            return False
        if isinstance(exc, gexc.PermissionDenied):
            raise GpuctlError(f"Cloud Scheduler ({self.where}) refused: {exc.message}",
                              "enable the Cloud Scheduler API and grant roles/cloudscheduler.admin") from None
        if isinstance(exc, gexc.GoogleAPICallError):
            raise GpuctlError(f"Cloud Scheduler ({self.where}) failed: {exc.message}",
                              f"retry; the VM's hard cap still holds ({ENDPOINT_ENV} points at another endpoint)") \
                from None
        return False


def hours_between(a: dt.datetime, b: dt.datetime) -> float:
    return max(0.0, (b - a).total_seconds() / 3600)


__all__ = ["DeadlineApi", "cron_for", "fires_at", "job_id", "hours_between"]
