"""gpuctl's Web UI: one page and a JSON endpoint over a Hugging Face text-generation model.

Standard library HTTP on purpose: a web framework would be the largest and most often
patched part of the image, for a page with one text box. The model loads in a background
thread so the server answers at once: /livez says the process serves, /healthz says the
model is ready (503 while loading), which is what a readiness probe wants.

Settings (environment): MODEL_ID, HOST (0.0.0.0), PORT (8080), MAX_NEW_TOKENS (512). Caches
follow HF_HOME. Authentication is not here: in GKE an authenticating proxy sits in front and
the UI listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

MAX_BODY_BYTES = 64 * 1024
MAX_PROMPT_CHARS = 8000
Generator = Callable[[str, int], str]


@dataclass(frozen=True)
class Settings:
    model_id: str
    host: str
    port: int
    max_new_tokens: int


def settings_from(environ: dict[str, str] | os._Environ = os.environ) -> Settings:
    def number(key: str, default: int, low: int, high: int) -> int:
        text = environ.get(key) or str(default)
        if not text.isdigit() or not low <= int(text) <= high:
            raise SystemExit(f"{key}={text!r} must be a whole number from {low} to {high}")
        return int(text)

    return Settings(model_id=environ.get("MODEL_ID") or "Qwen/Qwen2.5-0.5B-Instruct",
                    host=environ.get("HOST") or "0.0.0.0",
                    port=number("PORT", 8080, 1, 65535),
                    max_new_tokens=number("MAX_NEW_TOKENS", 512, 1, 8192))


def load_transformers_generator(model_id: str) -> Generator:
    """The real model, on the GPU when there is one. Imported here: tests never load torch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id)
    model = AutoModelForCausalLM.from_pretrained(
        model_id, torch_dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32,
        device_map="auto" if torch.cuda.is_available() else None)

    def generate(prompt: str, max_new_tokens: int) -> str:
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                 tokenize=False, add_generation_prompt=True)
        else:
            text = prompt
        inputs = tokenizer(text, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True,
                                    temperature=0.7, top_p=0.9)
        return tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    return generate


class ModelHolder:
    """Loads once in the background; serialises generation (one GPU, one request at a time)."""

    def __init__(self, model_id: str, loader: Callable[[str], Generator]):
        self.model_id = model_id
        self._loader = loader
        self._generate: Generator | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        try:
            self._generate = self._loader(self.model_id)
        except Exception as exc:  # reported by /healthz; the process stays up for the logs
            self.error = f"{type(exc).__name__}: {exc}"

    def start_loading(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name="model-loader", daemon=True)
        thread.start()
        return thread

    @property
    def ready(self) -> bool:
        return self._generate is not None

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        with self._lock:
            return self._generate(prompt, max_new_tokens)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gpuctl web UI</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}
textarea{width:100%;height:8rem}pre{white-space:pre-wrap;background:#f4f4f4;padding:1rem}</style>
</head><body><h1>gpuctl web UI</h1><p>Model: <code>__MODEL__</code></p>
<textarea id="prompt" placeholder="Ask something"></textarea>
<p><button id="go">Generate</button> <span id="state"></span></p><pre id="out"></pre>
<script>
document.getElementById("go").onclick = async () => {
  const state = document.getElementById("state"), out = document.getElementById("out");
  state.textContent = "generating..."; out.textContent = "";
  const r = await fetch("api/generate", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({prompt: document.getElementById("prompt").value})});
  const body = await r.json(); state.textContent = r.ok ? "" : "error";
  out.textContent = r.ok ? body.text : body.error;
};
</script></body></html>
"""


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def make_handler(holder: ModelHolder, settings: Settings) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "gpuctl-webui"

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, data: dict) -> None:
            self._send(code, json.dumps(data).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/livez":
                self._json(200, {"status": "serving"})
            elif path == "/healthz":
                if holder.ready:
                    self._json(200, {"status": "ok", "model": holder.model_id})
                else:
                    self._json(503, {"status": "failed" if holder.error else "loading",
                                     "model": holder.model_id, "error": holder.error})
            elif path in ("/", "/index.html"):
                self._send(200, PAGE.replace("__MODEL__", _escape(holder.model_id)).encode(),
                           "text/html; charset=utf-8")
            else:
                self._json(404, {"error": f"no page {path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] != "/api/generate":
                self._json(404, {"error": "POST /api/generate only"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self.close_connection = True  # the body is not read: do not reuse the stream
                self._json(413, {"error": f"body must be at most {MAX_BODY_BYTES} bytes"})
                return
            request = _parse_request(self.rfile.read(length), settings.max_new_tokens)
            if isinstance(request, str):
                self._json(400, {"error": request})
            elif not holder.ready:
                self._json(503, {"error": "the model is still loading" if not holder.error
                                 else f"the model failed to load: {holder.error}"})
            else:
                prompt, max_new_tokens = request
                self._json(200, {"text": holder.generate(prompt, max_new_tokens),
                                 "model": holder.model_id})

        def log_message(self, format: str, *args) -> None:
            # Access lines without the prompt text: prompts may be private.
            if os.environ.get("WEBUI_ACCESS_LOG") == "1":
                super().log_message(format, *args)

    return Handler


def _parse_request(raw: bytes, limit: int) -> tuple[str, int] | str:
    """(prompt, max_new_tokens), or the reason the request is refused."""
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        return "the body is not JSON"
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt must be a non-empty string"
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"prompt must be at most {MAX_PROMPT_CHARS} characters"
    tokens = body.get("max_new_tokens", limit)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= limit:
        return f"max_new_tokens must be a whole number from 1 to {limit}"
    return prompt, tokens


def make_server(settings: Settings, holder: ModelHolder) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((settings.host, settings.port), make_handler(holder, settings))
    server.daemon_threads = True
    return server


def main() -> None:  # pragma: no cover - the container's entry point
    settings = settings_from()
    holder = ModelHolder(settings.model_id, load_transformers_generator)
    holder.start_loading()
    server = make_server(settings, holder)
    print(f"gpuctl web UI on {settings.host}:{settings.port}, model {settings.model_id}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
