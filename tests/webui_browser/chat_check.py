"""Start the stack the browser test checks, run the browser through a chat, stop everything.

    python chat_check.py --env-dir DIR --artifacts DIR --workdir DIR --chromium PATH
                         --chromedriver PATH

tests/test_webui_browser.py runs it inside netns.py (a network namespace with only loopback),
so the servers and the browser must all start from here: they share that namespace. Standard
library only. In order:
  1. write the tiny random model (make_tiny_gguf.py, with the llama venv's Python),
  2. start llama.cpp's OpenAI-compatible server (llama-cpp-python) on 127.0.0.1,
  3. start Open WebUI on 127.0.0.1 pointed at it, slim and offline, login on, with its admin
     account created from WEBUI_ADMIN_EMAIL / WEBUI_ADMIN_PASSWORD,
  4. run drive_chat.py (headless chromium): log in, send a prompt, read the streamed answer,
  5. stop every process it started, whatever happened.
Prints one JSON object on stdout: drive_chat's result plus timings, or {"ok": false, "error"}.
Servers' logs, the screenshot and the browser's console go to --artifacts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL_ID = "gpuctl-tiny"
ADMIN_EMAIL = "admin@gpuctl.test"
ADMIN_PASSWORD = "gpuctl-test-Adm1n-pw"  # a throwaway instance on loopback, deleted afterwards
PROMPT = "Hello from the gpuctl browser test"


class StackError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log, without the web server's lines for static files."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    keep = [ln for ln in text if '"GET /_app/' not in ln and '"GET /static/' not in ln]
    return "\n".join(keep[-lines:])


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> float:
    """Wait until `url` answers 200; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise StackError(f"{Path(proc.args[0]).name} exited with {proc.returncode} before "
                             f"{url} answered:\n{tail(log)}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        time.sleep(0.25)
    raise StackError(f"{url} did not answer within {timeout:.0f}s:\n{tail(log)}")


@contextlib.contextmanager
def process(args: list[str], log: Path, env: dict[str, str]):
    """Run `args` in a process group of its own, output to `log`; kill the whole group after."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=log.parent)
    try:
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # anything left in the group goes too
        os.killpg(proc.pid, signal.SIGKILL)


def base_env(home: Path) -> dict[str, str]:
    """A small, explicit environment: nothing from the runner's proxies, tokens or configs."""
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONUNBUFFERED="1")
    return env


def webui_environment(env: dict[str, str], data_dir: Path, webui_port: int,
                      llama_port: int) -> dict[str, str]:
    return env | {
        "DATA_DIR": str(data_dir),
        # Slim: no local embedding/speech models are loaded or fetched (the env was built
        # without them); offline: no Hugging Face or version-check traffic.
        "USE_SLIM_DOCKER": "true", "OFFLINE_MODE": "true", "HF_HUB_OFFLINE": "1",
        "ENABLE_VERSION_UPDATE_CHECK": "false",
        "ANONYMIZED_TELEMETRY": "false", "DO_NOT_TRACK": "true", "SCARF_NO_ANALYTICS": "true",
        "CORS_ALLOW_ORIGIN": f"http://127.0.0.1:{webui_port}",
        # Authentication on; the admin account is created from the environment at start-up.
        "WEBUI_AUTH": "true", "WEBUI_SECRET_KEY": os.urandom(16).hex(), "ENABLE_SIGNUP": "false",
        "WEBUI_ADMIN_EMAIL": ADMIN_EMAIL, "WEBUI_ADMIN_PASSWORD": ADMIN_PASSWORD,
        # The one backend: llama.cpp's OpenAI-compatible server, and its model as the default.
        "ENABLE_OLLAMA_API": "false",
        "OPENAI_API_BASE_URL": f"http://127.0.0.1:{llama_port}/v1", "OPENAI_API_KEY": "unused",
        "DEFAULT_MODELS": MODEL_ID,
        # No background calls to the model besides the chat itself (title, tags, follow-ups).
        "ENABLE_TITLE_GENERATION": "false", "ENABLE_TAGS_GENERATION": "false",
        "ENABLE_FOLLOW_UP_GENERATION": "false", "ENABLE_AUTOCOMPLETE_GENERATION": "false",
    }


def run(args: argparse.Namespace) -> dict:
    webui_venv, llama_venv = args.env_dir / "webui", args.env_dir / "llama"
    artifacts, work = args.artifacts, args.workdir
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = base_env(home)
    timings: dict[str, float] = {}
    started = time.monotonic()

    model = work / "tiny.gguf"
    subprocess.run([str(llama_venv / "bin/python"), str(HERE / "make_tiny_gguf.py"), str(model)],
                   check=True, env=env, timeout=60, capture_output=True)
    llama_port = free_port()
    webui_port = free_port()
    while webui_port == llama_port:
        webui_port = free_port()
    llama_log, webui_log = artifacts / "llama-server.log", artifacts / "open-webui.log"
    llama_args = [str(llama_venv / "bin/python"), "-m", "llama_cpp.server", "--model", str(model),
                  "--model_alias", MODEL_ID, "--host", "127.0.0.1", "--port", str(llama_port),
                  # A short context: the answer (the model never ends it) stops when it is full.
                  "--n_ctx", "256", "--n_threads", "1"]
    webui_args = [str(webui_venv / "bin/open-webui"), "serve", "--host", "127.0.0.1",
                  "--port", str(webui_port)]
    with process(llama_args, llama_log, env) as llama, \
            process(webui_args, webui_log,
                    webui_environment(env, work / "webui-data", webui_port, llama_port)) as webui:
        timings["llama_ready_s"] = wait_http(f"http://127.0.0.1:{llama_port}/v1/models",
                                             llama, llama_log, 60)
        timings["webui_ready_s"] = wait_http(f"http://127.0.0.1:{webui_port}/health",
                                             webui, webui_log, 180)
        # Login is on: without a session the API refuses to list the models.
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{webui_port}/api/models", timeout=10) as r:
                unauthenticated = r.status
        except urllib.error.HTTPError as exc:
            unauthenticated = exc.code
        console_log = artifacts / "browser-console.log"
        driver = subprocess.Popen(
            [str(webui_venv / "bin/python"), str(HERE / "drive_chat.py"),
             "--url", f"http://127.0.0.1:{webui_port}", "--email", ADMIN_EMAIL,
             "--password", ADMIN_PASSWORD, "--prompt", PROMPT,
             "--screenshot", str(artifacts / "chat.png"),
             "--chromium", args.chromium, "--chromedriver", args.chromedriver,
             "--driver-log", str(artifacts / "chromedriver.log"), "--console-log", str(console_log)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env | {"SE_OFFLINE": "true"}, start_new_session=True)
        try:
            stdout, stderr = driver.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            stop_group(driver)
            stdout, stderr = driver.communicate()
        finally:
            stop_group(driver)  # chromedriver and every chromium process with it
        timings["total_s"] = time.monotonic() - started
    (artifacts / "drive_chat.stderr").write_text(stderr)
    try:
        result = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise StackError(f"the browser driver printed no result (exit {driver.returncode}):\n"
                         f"{stderr[-3000:]}") from None
    result["timings"] = {k: round(v, 1) for k, v in timings.items()}
    result["prompt"] = PROMPT
    result["unauthenticated_models_status"] = unauthenticated
    if not result.get("ok"):
        result["error"] = (f"{result.get('error')}\nat {result.get('url')}; page text:\n"
                           f"{result.get('page_text')}\nbrowser console:\n{tail(console_log)}\n"
                           f"open-webui log:\n{tail(webui_log)}\n"
                           f"llama server log:\n{tail(llama_log)}")
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env-dir", type=Path, required=True)
    ap.add_argument("--artifacts", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--chromium", required=True)
    ap.add_argument("--chromedriver", required=True)
    args = ap.parse_args()
    try:
        result = run(args)
    except (StackError, subprocess.SubprocessError, OSError) as exc:
        detail = exc.stderr.decode(errors="replace")[-2000:] if getattr(exc, "stderr", None) else ""
        result = {"ok": False, "error": f"{exc}\n{detail}".strip()}
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
