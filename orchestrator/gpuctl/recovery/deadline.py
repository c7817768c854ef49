"""The deadline of a `run --recover` run: the VM's Cloud Scheduler deadline job, aimed at the
whole managed instance group instead of one VM.

Deleting the group deletes its VM and stops every future replacement at once
(compute.v1.json, regionInstanceGroupManagers.delete: "Deletes the specified managed instance
group and all of the instances in that group."). Same job id scheme as a plain VM's
(gpuctl-deadline-NAME), so `down`, `sweep` and `extend` find it by name.
"""

from __future__ import annotations

from ..adapters.deadline import COMPUTE_URL, SCOPE, DeadlineApi


class GroupDeadlineApi(DeadlineApi):
    """DeadlineApi whose job deletes regions/REGION/instanceGroupManagers/NAME (the `zone`
    argument of set() is ignored: a regional group lives in the API's region)."""

    @classmethod
    def like(cls, api: DeadlineApi) -> "GroupDeadlineApi":
        """The same project, region, acting account and endpoint as a VM's DeadlineApi (from
        LiveDeps.deadline_api), aimed at the group. The account needs
        compute.instanceGroupManagers.delete (roles/compute.instanceAdmin.v1 has it)."""
        return cls(api.project, api.region, api.service_account, endpoint=api.endpoint,
                   credentials=api._credentials)

    def _job(self, vm_name: str, zone: str, cron: str):
        from google.cloud import scheduler_v1

        return scheduler_v1.Job(
            name=self.job_name(vm_name),
            description=f"gpuctl deadline: deletes managed instance group {vm_name} in {self.region} "
                        "and every VM it would make",
            schedule=cron, time_zone="Etc/UTC",
            http_target=scheduler_v1.HttpTarget(
                uri=group_url(self.project, self.region, vm_name),
                http_method=scheduler_v1.HttpMethod.DELETE,
                oauth_token=scheduler_v1.OAuthToken(service_account_email=self.service_account, scope=SCOPE)),
            retry_config=scheduler_v1.RetryConfig(retry_count=3))


def group_url(project: str, region: str, name: str) -> str:
    return f"{COMPUTE_URL}/projects/{project}/regions/{region}/instanceGroupManagers/{name}"
