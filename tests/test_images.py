"""Container images: our Dockerfiles pass our linter, the linter catches what it is for (bad
Dockerfiles must fail), images.toml and the Dockerfiles agree, and the Web UI app serves its
page, health and generation endpoints (with a stand-in generator, no torch)."""

from __future__ import annotations

import http.client
import importlib.util
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.dockerfile_lint import lint, lint_file, main, parse

IMAGES = Path(__file__).resolve().parents[1] / "images"
TABLE = tomllib.loads((IMAGES / "images.toml").read_text())
GOOD = """\
ARG BASE=pytorch/pytorch:2.4.1-cuda12.4-cudnn9-runtime
FROM ${BASE}
RUN python -m pip install --no-cache-dir transformers==4.46.3 peft==0.13.2
USER 1000:1000
"""


def rules(text: str, **kwargs) -> list[str]:
    return [f.rule for f in lint(text, **kwargs)]


# --- our images ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "service"), [("train", False), ("webui", True)])
def test_our_dockerfiles_pass_the_linter(name, service):
    assert [str(f) for f in lint_file(IMAGES / TABLE[name]["dockerfile"], service=service)] == []


def test_images_toml_names_every_image_once_with_its_dockerfile():
    assert TABLE["registry"].endswith("/gpuctl") and "YOUR_PROJECT" in TABLE["registry"]
    for name in ("train", "webui"):
        entry = TABLE[name]
        dockerfile = IMAGES / entry["dockerfile"]
        text = dockerfile.read_text()
        assert entry["repository"] == f"gpuctl-{name}"
        assert re.fullmatch(r"\d+\.\d+\.\d+-torch\d+\.\d+\.\d+-cu\d+", entry["tag"])
        # The version label inside the image is the tag it is pushed under.
        assert f'org.opencontainers.image.version="{entry["tag"]}"' in text
        assert f'org.opencontainers.image.title="{entry["repository"]}"' in text
        torch = entry["tag"].split("-torch")[1].split("-")[0]
        assert f"pytorch/pytorch:{torch}-cuda" in text  # the tag says which torch is inside
    assert f"EXPOSE {TABLE['webui']['port']}" in (IMAGES / "webui/Dockerfile").read_text()


def test_both_images_share_a_base_and_the_model_stack_versions():
    bases = {name: next(i.args for i in parse((IMAGES / TABLE[name]["dockerfile"]).read_text())
                        if i.keyword == "ARG" and i.args.startswith("BASE="))
             for name in ("train", "webui")}
    assert bases["train"] == bases["webui"]  # one base pulled per node, shared layers

    def pins(name):
        lines = (IMAGES / name / "requirements.txt").read_text().splitlines()
        return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))

    train, webui = pins("train"), pins("webui")
    assert {k: webui[k] for k in webui} == {k: train[k] for k in webui}  # no skew between them


def test_images_run_as_uid_1000_with_caches_on_cache():
    for name in ("train", "webui"):
        text = (IMAGES / TABLE[name]["dockerfile"]).read_text()
        assert "USER 1000:1000" in text and "HF_HOME=/cache/huggingface" in text
        assert "chown 1000:1000 /cache" in text


def test_command_line_entry_reports_and_fails(tmp_path, capsys):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    assert main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert "[from-pinned]" in out and "[pip-pinned]" in out and "[user-non-root]" in out
    assert main([str(IMAGES / "webui/Dockerfile") + ":service"]) == 0


# --- the linter must be able to fail ---------------------------------------------------------


@pytest.mark.parametrize(("text", "rule"), [
    ("FROM python\nUSER app\n", "from-pinned"),
    ("FROM python:latest\nUSER app\n", "from-pinned"),
    ("FROM ubuntu:jammy\nUSER app\n", "from-pinned"),  # a codename moves like latest
    ("FROM ghcr.io/org/img@sha256:abc\nUSER app\n", "from-pinned"),  # a short digest
    ("ARG BASE\nFROM ${BASE}\nUSER app\n", "from-pinned"),
    ("FROM python:3.12.7-slim\nRUN pip install requests\nUSER app\n", "pip-pinned"),
    ("FROM python:3.12.7-slim\nRUN pip install 'torch>=2.4'\nUSER app\n", "pip-pinned"),
    ("FROM python:3.12.7-slim\nRUN pip install torch==2.4.1 numpy\nUSER app\n", "pip-pinned"),
    ("FROM python:3.12.7-slim\nRUN apt-get update && python3 -m pip install -U pip\nUSER app\n", "pip-pinned"),
    ("FROM python:3.12.7-slim\nRUN pip3 install --no-cache-dir \\\n    flask==3.0.3 \\\n    gunicorn\nUSER app\n", "pip-pinned"),
    ("FROM python:3.12.7-slim\nRUN pip install -r /tmp/missing.txt\nUSER app\n", "pip-pinned"),
    ("FROM python:3.12.7-slim\n", "user-non-root"),
    ("FROM python:3.12.7-slim\nUSER root\n", "user-non-root"),
    ("FROM python:3.12.7-slim\nUSER 0:0\n", "user-non-root"),
    ("FROM python:3.12.7-slim AS build\nUSER app\nFROM python:3.12.7-slim\nCOPY --from=build /a /a\n", "user-non-root"),
    ("FROM python:3.12.7-slim\nADD https://example.com/model.bin /m\nUSER app\n", "add-url"),
    ("FROM python:3.12.7-slim\nRUN curl -fsSL https://get.example.sh | sh\nUSER app\n", "curl-pipe-shell"),
    ("FROM python:3.12.7-slim\nRUN wget -qO- https://x.example/i.py | python3\nUSER app\n", "curl-pipe-shell"),
    ("FROM python:3.12.7-slim\nENV HF_TOKEN=abc\nUSER app\n", "secret-env"),
    ("FROM python:3.12.7-slim\nENV WANDB_API_KEY abc\nUSER app\n", "secret-env"),
    ("FROM python:3.12.7-slim\nARG GITHUB_TOKEN\nUSER app\n", "secret-env"),
    ("FROM python:3.12.7-slim\nENV NOTE=hf_abcdefghijklmnopqrstuvwxyz12\nUSER app\n", "secret-env"),
    ("FROM python:3.12.7-slim\nENV A=1 DB_PASSWORD=x\nUSER app\n", "secret-env"),
    ("FROM python:3.12.7-slim\nRUN apt-get install -y git\nUSER app\n", "apt-update"),
    ("", "from-pinned"),
])
def test_bad_dockerfiles_fail(text, rule):
    assert rule in rules(text)


def test_service_needs_a_port_or_health_check():
    text = "FROM python:3.12.7-slim\nUSER app\n"
    assert rules(text, service=True) == ["service-port"]
    assert rules(text + "EXPOSE 8080\n", service=True) == []
    assert rules(text + "HEALTHCHECK CMD python -c 1\n", service=True) == []
    assert rules(text + "HEALTHCHECK NONE\n", service=True) == ["service-port"]


@pytest.mark.parametrize("text", [
    GOOD,
    "FROM ghcr.io/org/img@sha256:" + "a" * 64 + "\nUSER app\n",
    "FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS base\nFROM base\nUSER gpuctl\n",
    "FROM python:3.12.7-slim\nRUN apt-get update && apt-get install -y --no-install-recommends git\nUSER 1000\n",
    "FROM python:3.12.7-slim\nRUN pip install --index-url https://pypi.org/simple -c c.txt pkg==1.0 .\nUSER app\n",
    "FROM python:3.12.7-slim\nENV HF_HOME=/cache/hf HF_HUB_DISABLE_TELEMETRY=1\nUSER app\n",
    "FROM python:3.12.7-slim\n# RUN pip install unpinned\nUSER app\n",
])
def test_good_dockerfiles_pass(text):
    assert lint(text) == []


def test_requirements_files_are_checked_through_dash_r(tmp_path):
    (tmp_path / "requirements.txt").write_text("# pinned\ntorch==2.4.1\nnumpy>=1.26  # not pinned\n")
    text = "FROM python:3.12.7-slim\nCOPY requirements.txt /tmp/r/requirements.txt\n" \
           "RUN pip install -r /tmp/r/requirements.txt\nUSER app\n"
    found = lint(text, context=tmp_path)
    assert [f.rule for f in found] == ["pip-pinned"]
    assert "requirements.txt:3 'numpy>=1.26' is unpinned" in found[0].message
    assert found[0].line == 3


def test_findings_name_the_line():
    found = lint("FROM python:3.12.7-slim\n\nRUN pip install \\\n  requests\nUSER app\n")
    assert [(f.rule, f.line) for f in found] == [("pip-pinned", 3)]


versions = st.from_regex(r"[0-9]{1,2}(\.[0-9]{1,2}){0,2}(-[a-z0-9]{1,8})?", fullmatch=True)
words = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(repo=st.lists(words, min_size=1, max_size=3).map("/".join),
       tag=st.none() | st.just("latest") | versions | words,
       digest=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
def test_from_pinning_matches_its_definition(repo, tag, digest):
    ref = repo + (f":{tag}" if tag else "") + (f"@sha256:{digest}" if digest else "")
    pinned = bool(digest) or (tag is not None and tag != "latest" and any(c.isdigit() for c in tag))
    assert ("from-pinned" not in rules(f"FROM {ref}\nUSER app\n")) == pinned


@settings(max_examples=200, deadline=None)
@given(packages=st.lists(st.tuples(words, st.sampled_from(["==", ">=", "~=", "", "<"]), versions),
                         min_size=1, max_size=4))
def test_pip_pinning_matches_its_definition(packages):
    specs = [f"{name}{op}{version}" if op else name for name, op, version in packages]
    text = f"FROM python:3.12.7-slim\nRUN pip install --no-cache-dir {' '.join(specs)}\nUSER app\n"
    unpinned = sum(1 for _, op, _ in packages if op != "==")
    assert rules(text).count("pip-pinned") == unpinned


# --- the Web UI app ----------------------------------------------------------------------------


def load_app():
    spec = importlib.util.spec_from_file_location("gpuctl_webui_app", IMAGES / "webui" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def webui():
    app = load_app()
    calls = []

    def loader(model_id):
        def generate(prompt, max_new_tokens):
            calls.append((prompt, max_new_tokens))
            return f"echo: {prompt} ({max_new_tokens})"
        return generate

    settings_ = app.Settings(model_id="test/tiny", host="127.0.0.1", port=0, max_new_tokens=64)
    holder = app.ModelHolder(settings_.model_id, loader)
    server = app.make_server(settings_, holder)
    import threading

    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield app, holder, server.server_address[1], calls
    server.shutdown()
    server.server_close()


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    kind = response.getheader("Content-Type", "")
    return response.status, (json.loads(payload) if kind.startswith("application/json") else payload.decode())


def test_webui_health_follows_the_model_loading(webui):
    app, holder, port, calls = webui
    assert request(port, "GET", "/livez") == (200, {"status": "serving"})
    assert request(port, "GET", "/healthz") == (503, {"status": "loading", "model": "test/tiny", "error": None})
    assert request(port, "POST", "/api/generate", {"prompt": "hi"})[0] == 503
    holder.load()
    assert request(port, "GET", "/healthz") == (200, {"status": "ok", "model": "test/tiny"})


def test_webui_page_and_generation(webui):
    app, holder, port, calls = webui
    holder.load()
    code, page = request(port, "GET", "/")
    assert code == 200 and "gpuctl web UI" in page and "<code>test/tiny</code>" in page
    assert 'fetch("api/generate"' in page  # relative: works behind a path-prefixing proxy
    assert request(port, "POST", "/api/generate", {"prompt": "hello", "max_new_tokens": 8}) == (
        200, {"text": "echo: hello (8)", "model": "test/tiny"})
    assert request(port, "POST", "/api/generate", {"prompt": "again"})[1]["text"] == "echo: again (64)"
    assert calls == [("hello", 8), ("again", 64)]


@pytest.mark.parametrize(("body", "error"), [
    (b"not json", "the body is not JSON"),
    ([1, 2], "the body must be a JSON object"),
    ({"prompt": ""}, "prompt must be a non-empty string"),
    ({"prompt": 3}, "prompt must be a non-empty string"),
    ({"prompt": "x" * 8001}, "prompt must be at most 8000 characters"),
    ({"prompt": "x", "max_new_tokens": 0}, "max_new_tokens must be a whole number from 1 to 64"),
    ({"prompt": "x", "max_new_tokens": 65}, "max_new_tokens must be a whole number from 1 to 64"),
    ({"prompt": "x", "max_new_tokens": True}, "max_new_tokens must be a whole number from 1 to 64"),
])
def test_webui_refuses_bad_requests(webui, body, error):
    app, holder, port, calls = webui
    holder.load()
    assert request(port, "POST", "/api/generate", body) == (400, {"error": error})
    assert calls == []


def test_webui_limits_body_size_and_paths(webui):
    app, holder, port, calls = webui
    holder.load()
    big = json.dumps({"prompt": "x" * (70 * 1024)}).encode()
    assert request(port, "POST", "/api/generate", big)[0] == 413
    assert request(port, "GET", "/admin")[0] == 404
    assert request(port, "POST", "/other", {"prompt": "x"})[0] == 404


def test_webui_reports_a_failed_load(webui):
    app, holder, port, calls = webui

    def broken(model_id):
        raise OSError("model not found on the Hub")

    holder._loader = broken
    holder.load()
    code, body = request(port, "GET", "/healthz")
    assert code == 503 and body["status"] == "failed" and "model not found" in body["error"]


def test_webui_settings_from_environment():
    app = load_app()
    default = app.settings_from({})
    assert (default.host, default.port, default.model_id) == ("0.0.0.0", 8080, "Qwen/Qwen2.5-0.5B-Instruct")
    gke = app.settings_from({"HOST": "127.0.0.1", "PORT": "7860", "MODEL_ID": "org/m"})
    assert (gke.host, gke.port, gke.model_id) == ("127.0.0.1", 7860, "org/m")
    with pytest.raises(SystemExit, match="PORT='http' must be a whole number"):
        app.settings_from({"PORT": "http"})
    assert "torch" not in sys.modules and "transformers" not in sys.modules
