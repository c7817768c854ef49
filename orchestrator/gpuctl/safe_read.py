"""The one way gpuctl reads a file a user (or a past run) handed it: config, job specs, price
caches, kubeconfigs, run records, secret files and logs.

Every input is hostile until read: a FIFO would block forever, /dev/zero would fill memory, a
5000-deep `[[[[` would blow Python's stack inside tomllib/json/yaml, UTF-16 or random bytes
would surface as a UnicodeDecodeError traceback. So a reader here:

* opens without blocking and accepts only a regular file (FIFOs, devices, directories refused);
* reads at most `limit` bytes (one more to tell "too big" apart from "exactly the limit");
* decodes UTF-8 strictly (a BOM is dropped) and names UTF-16/32 when it sees their mark;
* refuses nesting deeper than MAX_DEPTH before (YAML) or while (TOML, JSON) parsing;
* raises the caller's GpuctlError class with a hint; never anything else.

The error class comes from the caller so a bad config stays a ConfigError (exit 2) and a bad
price cache a PriceError: the message is the reader's, the category the caller's.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Callable

from .errors import GpuctlError

KIB = 1024
MIB = 1024 * KIB
MAX_DEPTH = 64  # no gpuctl file needs more; tomllib/json recurse per level
LIMITS = {  # bytes; generous for the real thing, small enough to refuse in milliseconds
    "config": 256 * KIB,
    "job spec": 1 * MIB,
    "price file": 16 * MIB,
    "kubeconfig": 4 * MIB,
    "run record": 1 * MIB,
    "secret": 64 * KIB,
}

ErrorClass = Callable[..., GpuctlError]
READ_HINT = "check the path and its permissions"


def present(path: str | Path) -> bool:
    """False only when nothing is at `path` (a missing optional file means defaults). A FIFO, a
    300-character name or a NUL is "present": the reader then refuses it with its reason,
    where Path.exists() would raise or quietly answer False."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        pass
    return True


def read_bytes(path: str | Path, what: str, error: ErrorClass, limit: int) -> bytes:
    """The bytes of a regular file, at most `limit` of them."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise error(f"cannot read {what} {_show(path)}: {_reason(exc)}", READ_HINT) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {_show(path)} is not a regular file ({_kind(info.st_mode)})",
                        "point it at an ordinary file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, MIB))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise error(f"cannot read {what} {_show(path)}: {_reason(exc)}", READ_HINT) from None
    finally:
        os.close(fd)
    if size > limit:
        raise error(f"{what} {_show(path)} is larger than {_size(limit)}",
                    f"a {what} is small; check that this is the right file")
    return b"".join(chunks)


def decode(data: bytes, where: str, error: ErrorClass) -> str:
    """UTF-8 text, or an error that says which encoding it looks like instead."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise error(f"{where} is UTF-16 or UTF-32 text, not UTF-8",
                    "save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{where} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                    f"{exc.start})", "save it as UTF-8 text") from None
    if "\x00" in text:
        raise error(f"{where} contains NUL bytes (binary, or UTF-16 without a mark)",
                    "save it as UTF-8 text")
    return text


def open_stream(path: str | Path, what: str, error: ErrorClass, hint: str):
    """A regular file opened for streaming reads (a log may be gigabytes: read it in blocks,
    never whole). Opened without blocking so a FIFO is refused, not waited on forever."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {what} {_show(path)}: {_reason(exc)}", hint) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {_show(path)} is not a regular file ({_kind(info.st_mode)})",
                        "point it at an ordinary file, or pipe it in with -")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text(path: str | Path, what: str, error: ErrorClass, limit: int | None = None) -> str:
    limit = LIMITS.get(what, 1 * MIB) if limit is None else limit
    data = read_bytes(path, what, error, limit)
    return decode(data, f"{what} {_show(Path(path))}", error)


# -- structured formats --------------------------------------------------------------------

def load_toml(path: str | Path, what: str, error: ErrorClass, hint: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    text = read_text(path, what, error)
    where = f"{what} {_show(Path(path))}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where} is not valid TOML: {exc}", hint) from None
    except RecursionError:
        raise _too_deep(where, error) from None
    check_depth(data, where, error)
    return data


def load_json(path: str | Path, what: str, error: ErrorClass, hint: str) -> Any:
    text = read_text(path, what, error)
    return parse_json(text, f"{what} {_show(Path(path))}", error, hint)


def parse_json(text: str, where: str, error: ErrorClass, hint: str) -> Any:
    """Strict JSON: NaN/Infinity refused (they are not JSON, and poison arithmetic later)."""
    import json

    def no_constants(name: str):
        raise ValueError(f"{name} is not a JSON number")

    try:
        data = json.loads(text, parse_constant=no_constants)
    except RecursionError:
        raise _too_deep(where, error) from None
    except ValueError as exc:  # JSONDecodeError, and int() past sys.get_int_max_str_digits
        raise error(f"{where} is not valid JSON: {str(exc).splitlines()[0][:200]}", hint) from None
    check_depth(data, where, error)
    return data


def load_yaml(path: str | Path, what: str, error: ErrorClass, hint: str) -> Any:
    text = read_text(path, what, error)
    return parse_yaml(text, f"{what} {_show(Path(path))}", error, hint)


def parse_yaml(text: str, where: str, error: ErrorClass, hint: str) -> Any:
    """Safe YAML (no tags that build objects), nesting checked on the event stream first:
    libyaml's composer recurses in C, so a deep document must never reach it."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        depth = 0
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _too_deep(where, error)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{where} is not valid YAML{line}", hint) from None
    except RecursionError:  # aliases can still nest deeply once resolved
        raise _too_deep(where, error) from None
    check_depth(data, where, error)
    return data


def check_depth(data: Any, where: str, error: ErrorClass, limit: int = MAX_DEPTH) -> None:
    """Walk without recursion: refuse containers nested deeper than `limit`. YAML aliases make
    a graph (a billion-laughs tree of shared nodes), so a node is visited once."""
    stack, seen = [(data, 1)], set()
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = list(node.keys()) + list(node.values())
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth > limit:
            raise _too_deep(where, error)
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend((child, depth + 1) for child in children)


def _too_deep(where: str, error: ErrorClass) -> GpuctlError:
    return error(f"{where} is nested deeper than {MAX_DEPTH} levels",
                 "no gpuctl file needs that; check that this is the right file")


# -- wording ------------------------------------------------------------------------------

def _show(path: Path) -> str:
    """The path as a user can read it: control characters escaped, a 300-character name cut."""
    text = str(path)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= 120 else text[:60] + "…" + text[-40:]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return "the path is not usable"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB"
