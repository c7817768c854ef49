"""A finished `run --recover` run deletes its own group: the bootstrap's watcher
(runs/host_scripts/bootstrap.py `watch`), on the command's exit 0, writes `.gpuctl/finished` to the
bucket and then calls regionInstanceGroupManagers.delete with the VM's own token, so the group and
its GPU VM stop billing with the laptop closed. On any other exit it deletes nothing.

Real parts: the watcher's own code (stdlib HTTP, as on the VM), the Cloud Storage emulator behind
the discovery-doc contract proxy, the Compute stand-in holding the group and its VM, and the
stand-in's metadata server handing out the VM's token. The Compute stand-in here also asks the IAM
stand-in whether the token's account may do what it asks (AuthorizingCompute): the run's account
holds one project grant whose condition names its own group, written as the provider writes it
(policy version 3), so the delete of that group is allowed and the same token on another group is
refused with 403, as IAM Conditions on `resource.name` would."""

from __future__ import annotations

import json

import pytest
from google.cloud import compute_v1

from gpuctl.jobspec import JobSpec
from gpuctl.recovery.bundle import recover_document
from gpuctl.runs.host_scripts import bootstrap
from tests.standins.compute import ComputeStandIn, permission_for
from tests.standins.compute_errors import http_error
from tests.standins.compute_migs import InstanceMetadataServer
from tests.standins.iam import IamStandIn
from tests.test_recover_standin import REGION, make_group, mig_body

PROJECT = "gpuctl-test"
BUCKET = "alice-ckpts"
FOLDER = f"gs://{BUCKET}/llama/run-1"
GROUP = "llama"
TOKEN = "ya29.llama-vm-token"
ACCOUNT = f"serviceAccount:gpuctl-{GROUP}@{PROJECT}.iam.gserviceaccount.com"
GROUP_NAME = f"projects/{PROJECT}/regions/{REGION}/instanceGroupManagers/{GROUP}"


class AuthorizingCompute(ComputeStandIn):
    """The Compute stand-in, with a call carrying a known VM token checked against the IAM
    stand-in's project policy (conditions included) before it is answered; other calls (the
    test's own, with no token) go through as before."""

    def __init__(self, iam: IamStandIn, tokens: dict[str, str]):
        super().__init__(PROJECT)
        self.iam, self.tokens = iam, tokens
        self.refused: list[tuple[str, str]] = []

    def serve(self, call):
        member = self.tokens.get((call.header("Authorization") or "").removeprefix("Bearer "))
        routed = self._route(call.method, call.path)
        if member is not None and routed is not None:
            resource = call.path.removeprefix("/compute/v1/")
            permission = permission_for(routed[1]).replace("regionInstanceGroupManagers", "instanceGroupManagers")
            if not self.iam.allows(member, permission, resource):
                self.refused.append((permission, resource))
                return 403, http_error(403, f"Required '{permission}' permission for '{resource}'",
                                       "forbidden").body
        return super().serve(call)


@pytest.fixture
def vm(gcs_emulator, monkeypatch):
    """The group of one with its VM, the run's recover.json in the bucket, the VM's metadata
    server, and the run's conditional grant in the project policy."""
    gcs_emulator.client().create_bucket(BUCKET)
    spec = JobSpec(name="llama", command=["python3", "train.py"], checkpoints=FOLDER)
    document = recover_document(spec, "llama", FOLDER, user="gpuctl", group=GROUP, region=REGION, project=PROJECT)
    gcs_emulator.client().bucket(BUCKET).blob("llama/run-1/.gpuctl/recover.json").upload_from_string(
        json.dumps(document))
    with IamStandIn(PROJECT) as iam, AuthorizingCompute(iam, {TOKEN: ACCOUNT}) as compute:
        grant_self_delete(iam, GROUP_NAME)
        templates, migs = make_group(compute)
        migs.insert(project=PROJECT, region=REGION, instance_group_manager_resource=mig_body(GROUP)).result()
        [vm_name] = compute.mig_members(GROUP)
        with InstanceMetadataServer(compute, vm_name, token=TOKEN) as metadata:
            monkeypatch.setenv("GCE_METADATA_HOST", metadata.host)
            monkeypatch.setenv("GPUCTL_COMPUTE_ENDPOINT", compute.endpoint)
            monkeypatch.setattr(bootstrap, "DELETE_BACKOFF_S", 0.01)
            monkeypatch.setattr(bootstrap.time, "sleep", lambda s: None)
            yield compute, vm_name, gcs_emulator, iam


def grant_self_delete(iam: IamStandIn, group_name: str) -> None:
    """The binding RecoveringVm makes (as the provider writes it: read at version 3, write back
    with the etag at version 3)."""
    import urllib.request

    def call(verb: str, body: dict) -> dict:
        request = urllib.request.Request(f"{iam.endpoint}/v1/projects/{PROJECT}:{verb}", method="POST",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as answer:
            return json.loads(answer.read())

    policy = call("getIamPolicy", {"options": {"requestedPolicyVersion": 3}})
    policy["bindings"].append({"role": "roles/compute.instanceAdmin.v1", "members": [ACCOUNT], "condition": {
        "title": "gpuctl-llama-self-delete", "expression": f'resource.name == "{group_name}"'}})
    call("setIamPolicy", {"policy": {**policy, "version": 3}})


def run_dir_with(tmp_path, code: str):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "exit_code").write_text(f"{code}\n")
    return str(run_dir)


def finished_marker(gcs) -> dict | None:
    blob = gcs.client().bucket(BUCKET).blob("llama/run-1/.gpuctl/finished")
    return json.loads(blob.download_as_bytes()) if blob.exists() else None


def test_exit_0_marks_the_run_finished_then_the_vm_deletes_its_own_group(vm, tmp_path):
    compute, vm_name, gcs, iam = vm
    assert bootstrap.watch(run_dir_with(tmp_path, "0"), FOLDER, poll_s=0.01) == 0

    assert finished_marker(gcs)["exit_code"] == 0
    assert compute.migs() == [] and compute.instances() == []  # the group and its GPU VM are gone
    [delete] = compute.calls("regionInstanceGroupManagers.delete")
    assert delete.path == f"/compute/v1/{GROUP_NAME}" and delete.query.get("requestId")
    # The VM went by the group's own delete, recorded on the VM: `gpuctl jobs` ends its cost there.
    assert [op["operationType"] for op in compute.operations() if op["targetLink"].endswith(f"/{vm_name}")][-1] \
        == "delete"
    assert compute.refused == [] and compute.contract_violations == [] and iam.contract_violations == []
    assert compute.reconcile_migs() == []  # nothing is recreated


def test_the_marker_is_written_before_the_delete(vm, tmp_path, monkeypatch):
    compute, _, gcs, _ = vm
    seen = []
    real = bootstrap.delete_own_group
    monkeypatch.setattr(bootstrap, "delete_own_group", lambda *args: (seen.append(finished_marker(gcs)),
                                                                      real(*args))[1])
    bootstrap.watch(run_dir_with(tmp_path, "0"), FOLDER, poll_s=0.01)
    assert seen and seen[0]["exit_code"] == 0 and compute.migs() == []


def failed_marker(gcs) -> dict | None:
    blob = gcs.client().bucket(BUCKET).blob("llama/run-1/.gpuctl/failed")
    return json.loads(blob.download_as_bytes()) if blob.exists() else None


@pytest.mark.parametrize("code", ["143", "137"])
def test_a_run_stopped_by_its_machine_going_away_leaves_the_group_to_recreate_the_vm(vm, tmp_path, code):
    """SIGTERM (the guest's shutdown in a preemption) or SIGKILL after its grace: the next VM resumes."""
    compute, vm_name, gcs, _ = vm
    assert bootstrap.watch(run_dir_with(tmp_path, code), FOLDER, poll_s=0.01) == 0
    assert finished_marker(gcs) is None and failed_marker(gcs) is None
    assert [m["name"] for m in compute.migs()] == [GROUP] and compute.instance(vm_name)
    assert compute.calls("regionInstanceGroupManagers.delete") == []


def test_a_failed_command_on_a_vm_that_is_not_preempted_ends_the_group(vm, tmp_path):
    """No replacement comes for a VM that was not preempted, and one would fail the same way: the
    VM records the failure and deletes its group rather than sit there billing until the deadline."""
    compute, vm_name, gcs, _ = vm
    assert bootstrap.watch(run_dir_with(tmp_path, "1"), FOLDER, poll_s=0.01) == 0
    assert failed_marker(gcs)["exit_code"] == "1" and finished_marker(gcs) is None
    assert compute.migs() == [] and compute.instances() == []


def test_a_command_failing_while_google_preempts_the_vm_is_left_to_the_next_vm(vm, tmp_path):
    compute, vm_name, gcs, _ = vm
    compute.begin_preemption(vm_name)  # metadata `preempted` reads TRUE from now on
    assert bootstrap.watch(run_dir_with(tmp_path, "1"), FOLDER, poll_s=0.01) == 0
    assert failed_marker(gcs) is None and compute.calls("regionInstanceGroupManagers.delete") == []


def test_a_run_past_its_timeout_ends_the_group(vm, tmp_path):
    compute, _, gcs, _ = vm
    run_dir = run_dir_with(tmp_path, "143")
    (tmp_path / "run" / "timed_out").write_text("1\n")  # the supervisor stopped it (run_host.py)
    bootstrap.watch(run_dir, FOLDER, poll_s=0.01)
    assert failed_marker(gcs)["timed_out"] is True and compute.migs() == []


def test_a_vm_that_cannot_start_the_run_tries_three_times_then_ends_the_group(vm, monkeypatch, capsys):
    compute, _, gcs, _ = vm
    tries = []

    def broken(spec):
        tries.append(spec["run"])
        raise bootstrap.BootstrapError("provisioning failed at python: could not install python3.11-venv")

    spec = recover_document(JobSpec(name="llama", command=["python3", "train.py"], checkpoints=FOLDER), "llama",
                            FOLDER, user="gpuctl", group=GROUP, region=REGION, project=PROJECT)
    monkeypatch.setattr(bootstrap, "read_spec", lambda: spec)
    monkeypatch.setattr(bootstrap, "bootstrap", broken)
    monkeypatch.setattr(bootstrap.sys, "argv", ["startup-script"])
    assert bootstrap.main() == 1
    assert tries == ["llama"] * 3
    said = capsys.readouterr().out
    assert "(try 1 of 3; again in" in said and "(try 2 of 3; again in" in said
    marker = failed_marker(gcs)
    assert marker["stage"] == "boot" and "could not install python3.11-venv" in marker["reason"]
    assert compute.migs() == []


def test_jobs_says_how_a_run_ended_from_the_vms_marker():
    from gpuctl.recovery.view import _state

    class Storage:
        def __init__(self, objects):
            self.objects = objects

        def read_object(self, url):
            return self.objects.get(url.rsplit("/.gpuctl/", 1)[1])

    class Deps:
        def __init__(self, objects):
            self.storage = Storage(objects)

        def storage_api(self):
            return self.storage

    class Record:
        state, group = "ready", {"checkpoints": FOLDER}

    def state(objects):
        return _state(Record(), None, Deps(objects))

    assert state({"finished": b'{"exit_code": 0, "at": 0}'}).startswith("finished (exit 0 at 1970-01-01T00:00:00")
    assert state({"failed": b'{"exit_code": "1", "stage": "run"}'}) == \
        "failed (the run exited 1; its VM deleted the group)"
    assert state({"failed": b'{"exit_code": "143", "timed_out": true}'}).startswith("failed (the run hit its timeout")
    assert "could not start the run: provisioning failed" in state(
        {"failed": b'{"stage": "boot", "reason": "provisioning failed at cuda"}'})
    assert state({}).startswith("ended (its deadline deleted the group")
    assert state({"failed": b"not json"}) == "failed (the run exited ?; its VM deleted the group)"


def test_a_busy_compute_is_retried_with_the_same_request_id(vm, tmp_path):
    compute, _, _, _ = vm
    compute.fail_next(2, 503, method="DELETE")
    bootstrap.watch(run_dir_with(tmp_path, "0"), FOLDER, poll_s=0.01)
    calls = compute.calls(method="DELETE")
    assert [c.status for c in calls] == [503, 503, 200]
    assert len({c.query["requestId"] for c in calls}) == 1
    assert compute.migs() == []


def test_the_grant_reaches_its_own_group_only(vm, tmp_path, gcs_emulator):
    """The same token, a recover.json naming another group: IAM's condition refuses (403), the
    watcher says so and leaves it to the deadline; the marker is still written."""
    compute, _, gcs, _ = vm
    other = recover_document(JobSpec(name="llama", command=["true"], checkpoints=FOLDER), "llama", FOLDER,
                             user="gpuctl", group="bob", region=REGION, project=PROJECT)
    gcs.client().bucket(BUCKET).blob("llama/run-1/.gpuctl/recover.json").upload_from_string(json.dumps(other))
    compute.client(compute_v1.RegionInstanceGroupManagersClient).insert(
        project=PROJECT, region=REGION, instance_group_manager_resource=mig_body("bob")).result()
    assert bootstrap.delete_own_group(FOLDER) is False
    assert compute.refused == [("compute.instanceGroupManagers.delete",
                                f"projects/{PROJECT}/regions/{REGION}/instanceGroupManagers/bob")]
    # One refusal, not retried: a 403 gets the same answer again.
    assert sorted(m["name"] for m in compute.migs()) == ["bob", GROUP]


def test_a_group_already_gone_is_fine(vm, tmp_path):
    """The deadline (or `cancel`) got there first: Compute answers 404, and that is the goal."""
    compute, _, gcs, iam = vm
    gone = f"projects/{PROJECT}/regions/{REGION}/instanceGroupManagers/gone"
    grant_self_delete(iam, gone)
    spec = recover_document(JobSpec(name="llama", command=["true"], checkpoints=FOLDER), "llama", FOLDER,
                            user="gpuctl", group="gone", region=REGION, project=PROJECT)
    gcs.client().bucket(BUCKET).blob("llama/run-1/.gpuctl/recover.json").upload_from_string(json.dumps(spec))
    assert bootstrap.delete_own_group(FOLDER) is True
    assert [c.status for c in compute.calls(method="DELETE")] == [404]


def test_an_older_bundle_without_the_group_is_left_to_the_deadline(vm, tmp_path):
    compute, _, gcs, _ = vm
    old = recover_document(JobSpec(name="llama", command=["true"], checkpoints=FOLDER), "llama", FOLDER, user="gpuctl")
    gcs.client().bucket(BUCKET).blob("llama/run-1/.gpuctl/recover.json").upload_from_string(json.dumps(old))
    bootstrap.watch(run_dir_with(tmp_path, "0"), FOLDER, poll_s=0.01)
    assert finished_marker(gcs)["exit_code"] == 0 and [m["name"] for m in compute.migs()] == [GROUP]
    assert compute.calls(method="DELETE") == []


class ProjectMetadata(InstanceMetadataServer):
    """The metadata server with the project's own keys too (project/project-id)."""

    def answer(self, path: str, flavor: str | None):
        if path == "/computeMetadata/v1/project/project-id" and flavor == "Google":
            self.requests.append(path)
            return 200, "text/plain", PROJECT
        return super().answer(path, flavor)


def test_the_project_comes_from_the_metadata_server_when_the_spec_has_none(vm, tmp_path, monkeypatch):
    compute, vm_name, gcs, _ = vm
    spec = recover_document(JobSpec(name="llama", command=["true"], checkpoints=FOLDER), "llama", FOLDER,
                            user="gpuctl", group=GROUP, region=REGION)
    assert spec["project"] is None
    gcs.client().bucket(BUCKET).blob("llama/run-1/.gpuctl/recover.json").upload_from_string(json.dumps(spec))
    with ProjectMetadata(compute, vm_name, token=TOKEN) as metadata:
        monkeypatch.setenv("GCE_METADATA_HOST", metadata.host)
        assert bootstrap.delete_own_group(FOLDER) is True
        assert "/computeMetadata/v1/project/project-id" in metadata.requests
    assert compute.migs() == []


# --- the IAM stand-in's conditional bindings, held to cloudresourcemanager.v1 Policy.version -----

def _policy_call(iam: IamStandIn, verb: str, body: dict) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{iam.endpoint}/v1/projects/{PROJECT}:{verb}", method="POST",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_conditional_bindings_need_policy_version_3():
    condition = {"title": "t", "expression": f'resource.name == "{GROUP_NAME}"'}
    binding = {"role": "roles/compute.instanceAdmin.v1", "members": [ACCOUNT], "condition": condition}
    with IamStandIn(PROJECT) as iam:
        status, plain = _policy_call(iam, "getIamPolicy", {"options": {"requestedPolicyVersion": 3}})
        assert status == 200 and plain["version"] == 1  # no condition: answered as version 1
        # Adding a conditional binding below version 3 is refused.
        status, _ = _policy_call(iam, "setIamPolicy", {"policy": {**plain, "version": 1,
                                                                  "bindings": plain["bindings"] + [binding]}})
        assert status == 400 and iam.conditional_bindings() == []
        status, written = _policy_call(iam, "setIamPolicy", {"policy": {**plain, "version": 3,
                                                                        "bindings": plain["bindings"] + [binding]}})
        assert status == 200 and written["version"] == 3
        # Reading a policy with a condition below version 3 is refused; at 3 it carries the condition.
        assert _policy_call(iam, "getIamPolicy", {"options": {"requestedPolicyVersion": 1}})[0] == 400
        assert _policy_call(iam, "getIamPolicy", {})[0] == 400
        status, read = _policy_call(iam, "getIamPolicy", {"options": {"requestedPolicyVersion": 3}})
        assert status == 200 and read["version"] == 3 and binding in read["bindings"]
        # A version 1 write with the etag it read may not drop the condition either...
        status, _ = _policy_call(iam, "setIamPolicy", {"policy": {**plain, "etag": read["etag"], "version": 1}})
        assert status == 400 and len(iam.conditional_bindings()) == 1
        # ...a blind one (no etag) overwrites it, as the document warns.
        status, _ = _policy_call(iam, "setIamPolicy", {"policy": {"version": 1, "bindings": plain["bindings"]}})
        assert status == 200 and iam.conditional_bindings() == []
        assert iam.contract_violations == []
