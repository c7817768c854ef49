"""The one safe reader (gpuctl.safe_read), and each reader built on it (config, job spec, price
file, kubeconfig, run record, secret file, log): whatever the bytes, size, nesting or kind of
file, the answer is the data or the caller's GpuctlError with a hint, never another exception,
never a hang."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuctl import safe_read
from gpuctl.config import load_config
from gpuctl.errors import ConfigError, GpuctlError, PriceError
from gpuctl.jobspec import load_job_spec
from gpuctl.prices.model import load_price_book

# One reader per kind of input, each with the error class its caller reports.
READERS = {
    "config": lambda p: load_config(p, environ={}),
    "job spec": load_job_spec,
    "price file": load_price_book,
    "toml": lambda p: safe_read.load_toml(p, "config", ConfigError, "h"),
    "json": lambda p: safe_read.load_json(p, "price file", PriceError, "h"),
    "yaml": lambda p: safe_read.load_yaml(p, "kubeconfig", GpuctlError, "h"),
    "secret": lambda p: safe_read.read_text(p, "secret", GpuctlError, limit=64),
}


def kubeconfig_reader(path):
    from gpuctl.adapters.kube import check_kubeconfig

    return check_kubeconfig(path)


READERS["kubeconfig"] = kubeconfig_reader
settings_files = settings(max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_or_refuse(reader, path):
    """The data, or a GpuctlError with a message and a hint: nothing else may come out."""
    try:
        return reader(path)
    except GpuctlError as exc:
        assert exc.message and exc.hint, exc
        assert "\n" not in exc.message
        return exc


def in_file(data: bytes) -> Path:
    handle = tempfile.NamedTemporaryFile(delete=False, suffix=".in")
    handle.write(data)
    handle.close()
    return Path(handle.name)


# --- any bytes -----------------------------------------------------------------------------

@settings_files
@given(data=st.binary(max_size=2000), reader=st.sampled_from(sorted(READERS)))
def test_any_bytes_give_data_or_one_error(data, reader):
    path = in_file(data)
    try:
        read_or_refuse(READERS[reader], path)
    finally:
        path.unlink()


@settings_files
@given(text=st.text(max_size=300), encoding=st.sampled_from(["utf-16", "utf-32", "utf-16-le",
                                                            "latin-1", "utf-8"]),
       reader=st.sampled_from(sorted(READERS)))
def test_any_text_in_any_encoding(text, encoding, reader):
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    path = in_file(data)
    try:
        read_or_refuse(READERS[reader], path)
    finally:
        path.unlink()


def test_utf16_is_named(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes('region = "us-central1"\n'.encode("utf-16"))
    assert "UTF-16" in read_or_refuse(READERS["config"], path).message


def test_utf8_with_a_bom_reads(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xef\xbb\xbfregion = 'asia-northeast1'\n")
    assert load_config(path, environ={}).region == "asia-northeast1"


# --- nesting -------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(depth=st.integers(min_value=safe_read.MAX_DEPTH + 1, max_value=200_000),
       reader=st.sampled_from(["config", "job spec", "price file", "kubeconfig", "json", "yaml"]),
       closed=st.booleans())
def test_deep_nesting_is_refused(depth, reader, closed):
    body = "[" * depth + ("]" * depth if closed else "")
    path = in_file(("a = " + body if reader == "config" else body).encode())
    try:
        result = read_or_refuse(READERS[reader], path)
    finally:
        path.unlink()
    assert isinstance(result, GpuctlError)
    if closed and reader in ("json", "price file"):
        assert "nested deeper" in result.message
    if closed and reader == "yaml":  # libyaml itself stops at 1000 levels: "not valid YAML"
        assert "nested deeper" in result.message or depth > 1000


@pytest.mark.parametrize("depth", [1, safe_read.MAX_DEPTH - 1])
def test_nesting_within_the_bound_reads(tmp_path, depth):
    path = tmp_path / "x.json"
    path.write_text("[" * depth + "]" * depth)
    assert isinstance(safe_read.load_json(path, "price file", PriceError, "h"), list)


def test_deep_block_yaml_is_refused(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("".join(" " * i + "a:\n" for i in range(200)) + " " * 200 + "b\n")
    assert "nested deeper" in read_or_refuse(READERS["yaml"], path).message


def test_yaml_alias_bomb_is_cheap(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 30)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    read_or_refuse(READERS["yaml"], path)  # a shared-node walk, not 4**30 visits


# --- round trips -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_json_round_trips(value):
    path = in_file(json.dumps(value).encode())
    try:
        assert safe_read.load_json(path, "price file", PriceError, "h") == value
    finally:
        path.unlink()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_are_refused(tmp_path, constant):
    path = tmp_path / "p.json"
    path.write_text(f'{{"a": {constant}}}')
    assert "not a JSON number" in read_or_refuse(READERS["json"], path).message


# --- what is not a file, or too big --------------------------------------------------------

@pytest.mark.parametrize("reader", sorted(READERS))
def test_fifo_is_refused_without_blocking(tmp_path, reader):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "FIFO" in read_or_refuse(READERS[reader], fifo).message


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "/"])
def test_devices_and_directories_are_refused(reader, special):
    assert "not a regular file" in read_or_refuse(READERS[reader], Path(special)).message


@pytest.mark.parametrize("reader", sorted(READERS))
def test_missing_long_and_nul_paths(tmp_path, reader):
    for path in (tmp_path / "missing", tmp_path / ("n" * 300), "bad\x00path"):
        result = read_or_refuse(READERS[reader], path) if reader != "config" else \
            read_or_refuse(READERS[reader], Path(path))
        if reader == "config" and path == tmp_path / "missing":
            continue  # a missing config means the defaults
        assert isinstance(result, GpuctlError)


@pytest.mark.parametrize("what", sorted(safe_read.LIMITS))
def test_each_kind_has_a_size_bound(tmp_path, what):
    limit = safe_read.LIMITS[what]
    path = tmp_path / "big"
    path.write_bytes(b" " * limit)
    assert safe_read.read_text(path, what, GpuctlError) == " " * limit
    path.write_bytes(b" " * (limit + 1))
    with pytest.raises(GpuctlError, match="larger than"):
        safe_read.read_text(path, what, GpuctlError)


def test_a_log_streams_and_refuses_a_fifo(tmp_path):
    log = tmp_path / "train.log"
    log.write_bytes(b"x" * 10)
    with safe_read.open_stream(log, "log", GpuctlError, "h") as stream:
        assert stream.read() == b"x" * 10
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(GpuctlError, match="FIFO"):
        safe_read.open_stream(tmp_path / "fifo", "log", GpuctlError, "h")
