"""The shared job spec (gpuctl/jobspec.py): whatever YAML or mapping comes in, the result is a
JobSpec or a JobSpecError with a hint, never another exception; and keys that do not apply to
a target are refused or noted, never silently misread."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuctl.jobspec import JobSpec, JobSpecError, load_job_spec, notes_for_target, parse_job_spec

KEYS = list(JobSpec.model_fields) + ["nodes ", "Name", "cmd", "args", "resources"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                    st.sampled_from(["llama-lora", "12h", "0s", "env:HF_TOKEN", "k8s:hf/token",
                                     "file:~/.hf", "nvidia-l4", "python train.py", "-1"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


def outcome(data) -> JobSpec | JobSpecError:
    try:
        return parse_job_spec(data)
    except JobSpecError as exc:
        assert exc.message and exc.hint, exc
        return exc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8))
def test_any_mapping_gives_a_spec_or_a_jobspec_error(data):
    result = outcome(data)
    if isinstance(result, JobSpec):
        assert result.argv and all(isinstance(a, str) for a in result.argv)
        for target in ("vm", "gke"):
            try:
                notes = notes_for_target(result, target)
            except JobSpecError as exc:
                assert exc.hint
            else:
                assert all(isinstance(n, str) for n in notes)


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_anything_that_is_not_a_mapping_is_refused(data):
    if not isinstance(data, dict):
        assert isinstance(outcome(data), JobSpecError)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(list("name: command[]{},-'\"#\n\t |>&*!%@`?0123456789abc")),
               max_size=120))
def test_any_yaml_text_gives_a_spec_or_a_jobspec_error(tmp_path, text):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    try:
        load_job_spec(path)
    except JobSpecError as exc:
        assert exc.message and exc.hint


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=10), SCALARS, max_size=5))
def test_env_values_become_text_or_are_refused(env):
    result = outcome({"name": "job", "command": "true", "env": env})
    if isinstance(result, JobSpec):
        assert all(isinstance(v, str) for v in result.env.values())


def test_yaml_booleans_and_numbers_in_env_are_text():
    spec = parse_job_spec(yaml.safe_load("name: a\ncommand: [python]\nenv: {DEBUG: true, N: 3, R: 1.5}\n"))
    assert spec.env == {"DEBUG": "true", "N": "3", "R": "1.5"}


@pytest.mark.parametrize("data, message", [
    ({"name": "Bad_Name", "command": "x"}, "must be 1-40 lowercase"),
    ({"name": "a", "command": []}, "non-empty list"),
    ({"name": "a", "command": "  "}, "is empty"),
    ({"name": "a"}, "'command' is required"),
    ({"name": "a", "command": "x", "gpus": 1}, "unknown key 'gpus'"),
    ({"name": "a", "command": "x", "secrets": {"T": "hunter2"}}, "not a secret reference"),
    ({"name": "a", "command": "x", "timeout": "6"}, "not a duration"),
    ({"name": "a", "command": "x", "env": {"A": "1"}, "secrets": {"A": "env:A"}}, "both env and secrets"),
    ({"name": "a", "command": "x", "nodes": 0}, "nodes"),
])
def test_bad_specs_say_what_is_wrong(data, message):
    with pytest.raises(JobSpecError, match=message):
        parse_job_spec(data)


def test_vm_target_refuses_what_cannot_work_and_notes_what_it_ignores():
    base = {"name": "a", "command": ["python", "t.py"]}
    with pytest.raises(JobSpecError, match="needs a cluster"):
        notes_for_target(parse_job_spec({**base, "nodes": 2}), "vm")
    with pytest.raises(JobSpecError, match="only works on GKE"):
        notes_for_target(parse_job_spec({**base, "secrets": {"T": "k8s:hf/token"}}), "vm")
    notes = notes_for_target(parse_job_spec({**base, "image": "img:1", "accelerator": "nvidia-l4",
                                             "spot": False, "max_retries": 5}), "vm")
    assert len(notes) == 4 and all("ignored on a VM" in n for n in notes)
    assert notes_for_target(parse_job_spec({**base, "workdir": ".", "requirements": "r.txt",
                                            "secrets": {"T": "env:T"}}), "vm") == []


def test_gke_target_takes_what_a_vm_takes_and_says_how():
    # Issue 14: workdir, requirements, env:/file: secrets, no image and no accelerator used to
    # be refused on GKE; one spec now runs on both, and the notes say how each key is applied.
    base = {"name": "a", "command": ["python"], "image": "img:1", "accelerator": "nvidia-l4"}
    assert notes_for_target(parse_job_spec(base), "gke") == []
    for extra, word in (({"workdir": "."}, "ConfigMap"), ({"requirements": "r.txt"}, "pip"),
                        ({"secrets": {"T": "env:T"}}, "read here"),
                        ({"image": None}, "public"), ({"accelerator": None}, "nvidia-l4")):
        (note,) = notes_for_target(parse_job_spec({**base, **extra}), "gke")
        assert word in note


def test_every_problem_is_reported_at_once_with_its_key_and_fix():
    with pytest.raises(JobSpecError) as err:
        parse_job_spec({"name": "Bad_Name", "command": [], "accelerator": "x", "gpus": 1})
    message = err.value.message
    assert "has 4 problems" in message and message.count("(fix: ") == 4
    for key in ("name:", "command:", "accelerator:", "'gpus'"):
        assert key in message
    with pytest.raises(JobSpecError) as err:  # target problems too
        notes_for_target(parse_job_spec({"name": "a", "command": "x", "nodes": 2,
                                         "secrets": {"T": "k8s:s/t"}}), "vm")
    assert "has 2 problems" in err.value.message


def test_load_reports_yaml_errors_with_a_line(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: a\ncommand: [python\n")
    with pytest.raises(JobSpecError, match="not valid YAML at line"):
        load_job_spec(path)
    with pytest.raises(JobSpecError, match="cannot read"):
        load_job_spec(tmp_path / "missing.yaml")


# `recover: true`: the spec's way of saying `run --recover`. Only a real boolean is taken: it
# decides whether a VM group is created, so "true" in quotes, 1 or "sometimes" is refused with the
# fix, never guessed, and the refused value is not repeated.
@settings(max_examples=200, deadline=None)
@given(SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(st.text(max_size=5), SCALARS, max_size=2))
def test_recover_takes_a_boolean_and_refuses_anything_else_in_one_line(value):
    result = outcome({"name": "job", "command": "true", "recover": value})
    if isinstance(value, bool):
        assert isinstance(result, JobSpec) and result.recover is value
        return
    assert isinstance(result, JobSpecError)
    kinds = ("empty", "text", "text (quoted?)", "a number", "a list", "a mapping")
    # One of these exact lines: the value itself is never in it.
    assert result.message in {f"job spec: recover: must be true or false, not {k}" for k in kinds}
    assert "recover: true" in result.hint


@pytest.mark.parametrize("text, expected", [
    ("recover: true\n", True), ("recover: false\n", False), ("recover: yes\n", True),  # YAML 1.1
    ("", False),
])
def test_recover_in_yaml(tmp_path, text, expected):
    path = tmp_path / "job.yaml"
    path.write_text("name: a\ncommand: [python, t.py]\n" + text)
    assert load_job_spec(path).recover is expected


@pytest.mark.parametrize("text, words", [
    ("recover: 'true'\n", "not text (quoted?)"), ("recover: 1\n", "not a number"),
    ("recover:\n", "not empty"), ("recover: [true]\n", "not a list"),
])
def test_recover_that_is_not_a_boolean_is_one_line_with_the_fix(tmp_path, text, words):
    path = tmp_path / "job.yaml"
    path.write_text("name: a\ncommand: [python, t.py]\n" + text)
    with pytest.raises(JobSpecError) as err:
        load_job_spec(path)
    assert f"recover: must be true or false, {words}" in err.value.message
    assert err.value.hint.startswith("write recover: true")


def test_recover_on_gke_is_noted_and_on_an_existing_vm_refused():
    spec = parse_job_spec({"name": "a", "command": "x", "recover": True, "image": "img:1",
                           "accelerator": "nvidia-l4", "max_retries": 5})
    (note,) = notes_for_target(spec, "gke")  # GKE recovers by itself: accepted, and said so
    assert "recover: true is not needed on GKE" in note and "max_retries: 5" in note
    with pytest.raises(JobSpecError, match="makes a new spot VM group") as err:
        notes_for_target(spec, "vm")  # never silently run without recovery on an existing VM
    assert "gpuctl run NEW_NAME job.yaml" in err.value.hint
    assert notes_for_target(parse_job_spec({"name": "a", "command": "x", "recover": False}), "vm") == []
