"""The chat page in a real browser: Open WebUI in front of a real OpenAI-compatible server.

Everything runs here, on CPU, with nothing downloaded at test time:
  * a tiny random llama model the test writes itself (webui_browser/make_tiny_gguf.py),
  * llama.cpp's OpenAI-compatible server through llama-cpp-python, on 127.0.0.1,
  * Open WebUI (from PyPI, slim mode, offline) on 127.0.0.1 pointed at it, login ON, its admin
    account created from WEBUI_ADMIN_EMAIL / WEBUI_ADMIN_PASSWORD,
  * Debian's headless chromium driven through chromedriver (webui_browser/drive_chat.py): it
    logs in, sends a prompt and reads the answer as it streams in.
All of it runs in a network namespace with only loopback (webui_browser/netns.py): Chromium
cancels page loads when the host's interfaces change, which other tests do, and nothing in it
can reach the network. webui_browser/chat_check.py starts and stops the processes in there.
The screenshot, the servers' logs and the browser's console are kept in
$GPUCTL_TEST_ARTIFACTS/webui-browser (default: the test's tmp dir); the test prints where.

The environment comes from scripts/build-webui-testenv.sh (cached venvs) and
scripts/install-browser-deps.sh (apt); when either is missing the test FAILS saying which to
run: a skipped browser test would read as a passing one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# Words the tiny model can say (its vocabulary): one of them in the answer shows that what the
# page rendered came from the model, not from an error banner.
from tests.webui_browser.vocab import WORDS

REPO = Path(__file__).resolve().parent.parent
HELPERS = Path(__file__).resolve().parent / "webui_browser"
BUILD_SCRIPT = "scripts/build-webui-testenv.sh"
BROWSER_SCRIPT = "scripts/install-browser-deps.sh"


def _env_dir() -> Path:
    out = subprocess.run([str(REPO / BUILD_SCRIPT), "--print-dir"], check=True,
                         capture_output=True, text=True).stdout.strip()
    return Path(out)


def _require_environment() -> tuple[Path, str, str]:
    env_dir = _env_dir()
    problems = []
    for venv in ("webui", "llama"):
        if not (env_dir / venv / ".complete").is_file():
            problems.append(f"the {venv} venv is not built ({env_dir / venv}): run {BUILD_SCRIPT}")
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        problems.append(f"Debian's chromium and chromium-driver are not installed: run {BROWSER_SCRIPT} (as root)")
    if problems:
        pytest.fail("the Web UI browser test environment is missing:\n  " + "\n  ".join(problems),
                    pytrace=False)
    return env_dir, chromium, chromedriver


@pytest.fixture
def artifacts_dir(tmp_path) -> Path:
    base = os.environ.get("GPUCTL_TEST_ARTIFACTS")
    path = Path(base) / "webui-browser" if base else tmp_path / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_build_script_names_its_cache_after_the_versions(tmp_path):
    """The cache directory changes with any pinned version, so a bump builds afresh."""
    env = os.environ | {"XDG_CACHE_HOME": str(tmp_path)}
    out = subprocess.run([str(REPO / BUILD_SCRIPT), "--print-dir"], check=True, env=env,
                         capture_output=True, text=True).stdout.strip()
    pinned = b"".join(p.read_bytes() for p in (REPO / "scripts/webui-testenv-versions.env",
                                               HELPERS / "constraints-webui.txt",
                                               HELPERS / "constraints-llama.txt"))
    assert out == f"{tmp_path}/gpuctl-dev/webui-testenv-{hashlib.sha256(pinned).hexdigest()[:12]}"
    assert not any(tmp_path.iterdir()), "--print-dir built something"


def test_chat_in_headless_chromium_streams_an_answer(tmp_path, artifacts_dir, capsys):
    env_dir, chromium, chromedriver = _require_environment()
    with capsys.disabled():  # shown even when pytest captures output: where the screenshot is
        print(f"\nWeb UI browser test artifacts (screenshot, logs): {artifacts_dir}")
    check = subprocess.Popen(
        [sys.executable, str(HELPERS / "netns.py"), sys.executable, str(HELPERS / "chat_check.py"),
         "--env-dir", str(env_dir), "--artifacts", str(artifacts_dir), "--workdir", str(tmp_path),
         "--chromium", chromium, "--chromedriver", chromedriver],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = check.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(check.pid, signal.SIGKILL)
        stdout, stderr = check.communicate()
    finally:
        try:  # chat_check stops what it started; this is for anything it could not
            os.killpg(check.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        result = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"chat_check.py printed no result (exit {check.returncode}):\n{stderr[-3000:]}",
                    pytrace=False)
    (artifacts_dir / "result.json").write_text(json.dumps(result, indent=2))
    if not result.get("ok"):
        pytest.fail(f"the chat in the browser failed: {result.get('error')}", pytrace=False)
    print(f"browser steps: {result['steps']}; timings: {result['timings']}")

    assert result["unauthenticated_models_status"] in (401, 403), "the API answers without a login"
    answer = result["answer"]
    assert result["page_text_has_prompt"], "the prompt is not shown in the conversation"
    assert answer, "the answer is empty"
    assert set(answer.split()) & set(WORDS), f"the answer has none of the model's words: {answer!r}"
    # Streamed: the page showed the answer at several lengths on its way to the final one.
    lengths = [n for n in result["answer_lengths"] if n > 0]
    assert len(lengths) >= 2, f"the answer arrived in one piece, not streamed: {lengths}"
    assert (artifacts_dir / "chat.png").stat().st_size > 10_000
