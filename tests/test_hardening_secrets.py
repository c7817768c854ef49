"""Secrets are never echoed: not in errors, plans, manifests or JSON; a token written where a
reference belongs, or as a plain env value, is refused without repeating it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.errors import GpuctlError
from gpuctl.jobspec import JobSpecError, notes_for_target, parse_job_spec
from tests.test_hardening_inputs import invoke, refused

TOKEN = "hf_" + "Zq8" * 12  # shaped like a Hugging Face token


def spec(**extra) -> dict:
    return {"name": "job", "command": ["python", "t.py"], **extra}


def test_a_token_where_a_reference_belongs_is_not_echoed():
    with pytest.raises(JobSpecError) as info:
        parse_job_spec(spec(secrets={"HF_TOKEN": TOKEN}))
    assert TOKEN not in info.value.message + info.value.hint
    assert "HF_TOKEN" in info.value.message and "k8s:" in info.value.hint


@settings(max_examples=200)
@given(st.text(min_size=4, max_size=60).filter(lambda t: not t.startswith("file:"))
       .map(lambda t: t + "\u2603"))  # the snowman: never a word of our messages
def test_no_bad_reference_is_ever_repeated(value):
    with pytest.raises(GpuctlError) as info:
        parse_job_spec(spec(secrets={"TOKEN": value}))
    assert value not in info.value.message + (info.value.hint or "")


@pytest.mark.parametrize("value", [TOKEN, "ghp_" + "a1" * 18, "sk-" + "x9" * 20,
                                   "AKIAABCDEFGHIJKLMNOP", "-----BEGIN OPENSSH PRIVATE KEY-----",
                                   "0123456789abcdef0123456789abcdef01234567"])
def test_a_token_in_env_is_refused_with_the_fix_and_not_echoed(value):
    with pytest.raises(JobSpecError) as info:
        parse_job_spec(spec(env={"ANYTHING": value}))
    assert value not in info.value.message + info.value.hint
    assert "secrets:" in info.value.hint


def test_a_secret_named_env_value_gets_a_note_with_the_fix():
    job = parse_job_spec(spec(env={"API_TOKEN": "plain-but-suspicious", "WANDB_MODE": "offline"}))
    notes = notes_for_target(job, "vm")
    assert len(notes) == 1 and "API_TOKEN" in notes[0] and "secrets:" in notes[0]
    assert "plain-but-suspicious" not in notes[0]
    assert notes_for_target(parse_job_spec(spec(env={"WANDB_MODE": "offline"})), "vm") == []


def test_job_spec_file_with_a_token_in_secrets(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(f"name: x\ncommand: [python, t.py]\nimage: python:3.12\nsecrets: {{HF_TOKEN: {TOKEN}}}\n")
    line = refused(invoke("train", "--gke", str(path), "--dry-run"), "HF_TOKEN")
    assert TOKEN not in line


def test_secret_flag_without_key_is_not_echoed():
    line = refused(invoke("run", "alice@127.0.0.1", "--dry-run", "--no-sync",
                          "--secret", TOKEN, "--", "python", "t.py"), "--secret")
    assert TOKEN not in line


def test_secret_flag_with_a_token_value_is_not_echoed():
    line = refused(invoke("run", "alice@127.0.0.1", "--dry-run", "--no-sync",
                          "--secret", f"HF_TOKEN={TOKEN}", "--", "python", "t.py"), "HF_TOKEN")
    assert TOKEN not in line


def test_env_flag_with_a_token_is_refused_and_not_echoed():
    line = refused(invoke("run", "alice@127.0.0.1", "--dry-run", "--no-sync",
                          "--env", f"HF_TOKEN={TOKEN}", "--", "python", "t.py"), "HF_TOKEN")
    assert TOKEN not in line


def test_file_secret_contents_never_in_an_error(tmp_path):
    secret = tmp_path / "token"
    secret.write_bytes(TOKEN.encode() + b"\xff")  # undecodable after the token
    path = tmp_path / "job.yaml"
    path.write_text(f"name: x\ncommand: [python, t.py]\nsecrets: {{HF_TOKEN: 'file:{secret}'}}\n")
    line = refused(invoke("run", "alice@127.0.0.1", str(path), "--dry-run", "--no-sync"))
    assert TOKEN not in line


def test_gke_manifests_carry_references_only(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: x\ncommand: [python, t.py]\nimage: python:3.12\ngpus_per_node: 0\n"
                    "secrets: {HF_TOKEN: 'k8s:hf-token/token'}\n")
    result = invoke("train", "--gke", str(path), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "secretKeyRef" in result.stdout and "hf-token" in result.stdout
