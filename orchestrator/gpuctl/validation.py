"""Checks at the edge: pydantic's errors as the one line a user reads, and the names that go to
Google Cloud, Kubernetes, registries and SSH checked against those systems' own rules."""

from __future__ import annotations

import ipaddress
import re

from pydantic import ValidationError

from .errors import UsageError
from .errors import shown as _show


def first_error(exc: ValidationError) -> str:
    """'profiles.a100.nvme_count: Input should be greater than or equal to 0'."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


# -- names, checked at the edge against the rules of the system they go to -----------------
# Each returns the value unchanged or raises UsageError with the rule in the hint; callers that
# sit inside pydantic models turn that into a ValueError (see `as_value_error`).

GCE_NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)  # RFC 1035, GCE resources
DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)  # k8s namespaces
PROJECT_RE = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", re.ASCII)  # GCP project IDs
# Hostnames (RFC 1123): dot-separated labels of letters, digits and inner dashes.
HOST_LABEL_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?", re.ASCII)
# An OCI image reference: [registry[:port]/]path[:tag][@digest] (distribution/reference grammar).
_OCI_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# The first component is a registry only if it looks like a host (a dot, a port, localhost), as
# in distribution/reference; otherwise it is a path component and must be lowercase.
_OCI_HOST = r"[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?"
_OCI_DOMAIN = (rf"(?:(?:{_OCI_HOST}(?:\.{_OCI_HOST})+(?::[0-9]+)?|{_OCI_HOST}:[0-9]+|localhost)/)?")
IMAGE_RE = re.compile(rf"{_OCI_DOMAIN}{_OCI_COMPONENT}(?:/{_OCI_COMPONENT})*"
                      r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?", re.ASCII)


def gce_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not GCE_NAME_RE.fullmatch(value):
        raise UsageError(f"{what} {_show(value)} is not a valid Google Cloud resource name",
                         "use 1-63 lowercase letters, digits or '-', starting with a letter")
    return value


def namespace(value: str) -> str:
    if not isinstance(value, str) or not DNS_LABEL_RE.fullmatch(value):
        raise UsageError(f"namespace {_show(value)} is not a Kubernetes namespace name",
                         "use 1-63 lowercase letters, digits or '-' (RFC 1123 label)")
    return value


def project_id(value: str) -> str:
    if not isinstance(value, str) or not PROJECT_RE.fullmatch(value):
        raise UsageError(f"project {_show(value)} is not a Google Cloud project ID",
                         "6-30 lowercase letters, digits or '-', starting with a letter")
    return value


def image_ref(value: str) -> str:
    if not isinstance(value, str) or len(value) > 255 or not IMAGE_RE.fullmatch(value):
        raise UsageError(f"image {_show(value)} is not an image reference",
                         "write REGISTRY/PATH:TAG or REGISTRY/PATH@sha256:DIGEST")
    return value


def host(value: str) -> str:
    """An IP address or an RFC 1123 host name."""
    if isinstance(value, str) and value:
        try:
            ipaddress.ip_address(value.strip("[]") if value.startswith("[") else value)
            return value
        except ValueError:
            pass
        labels = value.removesuffix(".").split(".")
        if len(value) <= 253 and all(HOST_LABEL_RE.fullmatch(label) for label in labels) \
                and not labels[-1].isdigit():
            return value
    raise UsageError(f"host {_show(value)} is not an IP address or host name",
                     "write user@HOST or user@HOST:PORT, e.g. alice@10.0.0.5:2222")


def port(text: str) -> int:
    """1-65535, ASCII digits only ('²' is a digit to str.isdigit, not to SSH)."""
    if not re.fullmatch(r"[0-9]{1,5}", text, re.ASCII) or not 1 <= int(text) <= 65535:
        raise UsageError(f"port {_show(text)} is not a port number",
                         "ports are 1-65535, e.g. user@host:2222")
    return int(text)


def ssh_source(text: str) -> str:
    """The caller's address as a CIDR for the SSH firewall rule; never the whole internet."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise UsageError(f"--ssh-from {_show(text)} is not an IP address or CIDR",
                         "give your public address, e.g. 203.0.113.7 or 203.0.113.0/24") from None
    smallest = 8 if network.version == 4 else 32
    if network.network_address.is_unspecified or network.prefixlen < smallest:
        raise UsageError(f"--ssh-from {_show(text)} would open SSH to "
                         f"{'any address' if network.network_address.is_unspecified else 'a huge range'}",
                         "give your own public address (leave it unset to detect it)")
    return str(network)


def as_value_error(check, value):
    """Run a UsageError-raising check inside a pydantic validator."""
    try:
        return check(value)
    except UsageError as exc:
        raise ValueError(f"{exc.message} ({exc.hint})") from None


# -- Cloud Storage: gs://BUCKET/PREFIX, checked against Google's naming rules ----------------
# Bucket names, https://cloud.google.com/storage/docs/buckets#naming : only lowercase letters,
# digits, '-', '_' and '.'; start and end with a letter or digit; 3-63 characters, or up to 222
# with dots, each dot-separated part at most 63; not an IP address in dotted-decimal notation;
# not beginning with "goog"; not containing "google" or close misspellings such as "g00gle".
BUCKET_RE = re.compile(r"[a-z0-9][-a-z0-9_.]*[a-z0-9]", re.ASCII)
_DOTTED_DECIMAL = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", re.ASCII)
# Google names "g00gle" as a close misspelling; others it may still refuse (the API has the last word).
_GOOGLE_SPELLINGS = ("google", "g00gle", "go0gle", "g0ogle")
# Object names, https://cloud.google.com/storage/docs/objects#naming : valid Unicode, 1-1024 bytes
# UTF-8, no Carriage Return or Line Feed, not starting with ".well-known/acme-challenge/", never
# "." or "..". Google strongly recommends avoiding XML-illegal control characters, '#' (read as
# a version by gcloud) and '[', ']', '*', '?' (wildcards to gcloud/gsutil): gpuctl refuses them
# too, so every checkpoint can be handled with gcloud. gpuctl's own rules: no empty or "."/".."
# path parts (objects mirror a local folder), and the prefix leaves room in the 1024 bytes for
# the run name and the file path under it.
MAX_PREFIX_BYTES = 512
_PREFIX_AVOID = frozenset("#[]*?")


def bucket_name(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError("the bucket name is empty", "write gs://BUCKET/PREFIX, e.g. gs://my-team-checkpoints/llama")
    hint = "bucket names: 3-63 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    parts = value.split(".")
    if not BUCKET_RE.fullmatch(value) or len(value) < 3 or len(value) > 222 \
            or ("." not in value and len(value) > 63) or any(not 1 <= len(p) <= 63 for p in parts):
        raise UsageError(f"bucket {_show(value)} is not a valid Cloud Storage bucket name", hint)
    if _DOTTED_DECIMAL.fullmatch(value):
        raise UsageError(f"bucket {_show(value)} looks like an IP address",
                         "Cloud Storage refuses bucket names in dotted-decimal notation; pick a word")
    if value.startswith("goog") or any(word in value for word in _GOOGLE_SPELLINGS):
        raise UsageError(f"bucket {_show(value)} uses a name Google reserves",
                         "bucket names cannot begin with 'goog' or contain 'google'; pick another name")
    return value


def object_prefix(value: str) -> str:
    """A folder-like object prefix without leading or trailing '/' ('' for the bucket's root)."""
    hint = "write the prefix as folder names separated by '/', e.g. gs://BUCKET/team/llama"
    if not isinstance(value, str):
        raise UsageError(f"object prefix {_show(value)} is not text", hint)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate is not valid Unicode
        raise UsageError(f"object prefix {_show(value)} is not valid Unicode", hint) from None
    if size > MAX_PREFIX_BYTES:
        raise UsageError(f"object prefix is {size} bytes long",
                         f"keep it to {MAX_PREFIX_BYTES} bytes: object names are at most 1024 bytes "
                         "and the run name and file paths go under it")
    if not value:
        return value
    bad = next((c for c in value if not c.isprintable() or c in _PREFIX_AVOID), None)
    if bad is not None:
        raise UsageError(f"object prefix {_show(value)} contains {_show(bad)}",
                         "leave out control characters and # [ ] * ? (gcloud reads them as versions "
                         "or wildcards)")
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UsageError(f"object prefix {_show(value)} has an empty, '.' or '..' part", hint)
    if (value + "/").startswith(".well-known/acme-challenge/"):
        raise UsageError(f"object prefix {_show(value)} starts with .well-known/acme-challenge/",
                         "Cloud Storage refuses object names there; pick another prefix")
    return value


def gcs_url(value: str, what: str = "checkpoints") -> tuple[str, str]:
    """'gs://BUCKET[/PREFIX][/]' -> (bucket, prefix); the prefix has no leading or trailing '/'."""
    lead = f"{what} " if what else ""
    if not isinstance(value, str) or not value.startswith("gs://"):
        raise UsageError(f"{lead}{_show(value)} is not a gs:// URL",
                         "write gs://BUCKET/PREFIX, e.g. gs://my-team-checkpoints/llama")
    bucket, _, prefix = value[len("gs://"):].partition("/")
    prefix = prefix[:-1] if prefix.endswith("/") else prefix
    try:
        return bucket_name(bucket), object_prefix(prefix)
    except UsageError as exc:
        raise UsageError(f"{what}: {exc.message}" if what else exc.message, exc.hint) from None
