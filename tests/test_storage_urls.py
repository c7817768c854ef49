"""gs://BUCKET/PREFIX as the job spec's `checkpoints:` takes it, held to Google's naming rules
(https://cloud.google.com/storage/docs/buckets#naming, .../objects#naming)."""

from __future__ import annotations

import ipaddress
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.adapters.storage import CheckpointLocation, default_bucket_name, parse_location
from gpuctl.errors import UsageError
from gpuctl.validation import gcs_url

BUCKET_CHARS = string.ascii_lowercase + string.digits + "-_."
ENDS = string.ascii_lowercase + string.digits


def google_accepts_bucket(name: str) -> bool:
    """Google's bucket rules, written out one by one (independently of gpuctl's regex)."""
    if not name or any(c not in BUCKET_CHARS for c in name):
        return False
    if name[0] not in ENDS or name[-1] not in ENDS:
        return False
    if "." in name:
        if len(name) > 222 or any(not 1 <= len(part) <= 63 for part in name.split(".")):
            return False
    elif not 3 <= len(name) <= 63:
        return False
    if len(name) < 3:
        return False
    try:
        ipaddress.IPv4Address(name)
        return False
    except ValueError:
        pass
    if name.count(".") == 3 and all(part.isdigit() and len(part) <= 3 for part in name.split(".")):
        return False  # dotted-decimal even when not a real address (999.1.1.1)
    # "close misspellings, such as g00gle": gpuctl refuses these spellings (its own list).
    return not name.startswith("goog") and not any(w in name for w in ("google", "g00gle", "go0gle", "g0ogle"))


def acceptable_prefix(prefix: str) -> bool:
    if not prefix:
        return True
    if len(prefix.encode("utf-8", "surrogatepass")) > 512:
        return False
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if "\r" in prefix or "\n" in prefix or any(c in "#[]*?" for c in prefix):
        return False
    if any(not c.isprintable() for c in prefix):
        return False
    parts = prefix.split("/")
    return all(p not in ("", ".", "..") for p in parts) and not (prefix + "/").startswith(".well-known/acme-challenge/")


part_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Co", "Cn"),
                                           blacklist_characters="/#[]*?"), min_size=1, max_size=12)
valid_bucket = st.builds(lambda head, mid, tail: head + mid + tail, st.sampled_from(ENDS),
                         st.text(alphabet=string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=40),
                         st.sampled_from(ENDS)).filter(google_accepts_bucket)
valid_prefix = st.lists(part_text.filter(lambda p: p not in (".", "..")), max_size=4).map("/".join) \
    .filter(acceptable_prefix)


@settings(max_examples=300, deadline=None)
@given(valid_bucket, valid_prefix, st.booleans())
def test_valid_urls_parse_to_their_parts_and_round_trip(bucket, prefix, trailing_slash):
    url = f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"
    if trailing_slash:
        url += "/"
    assert gcs_url(url) == (bucket, prefix)
    location = parse_location(url)
    assert parse_location(location.url) == location == CheckpointLocation(bucket, prefix)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=BUCKET_CHARS + "AZ/ ", max_size=70), st.text(max_size=30))
def test_any_text_is_accepted_only_when_google_would_or_refused_in_one_line(bucket, prefix):
    url = f"gs://{bucket}/{prefix}"
    try:
        parsed = gcs_url(url)
    except UsageError as exc:
        assert "\n" not in exc.message and exc.hint and "\n" not in exc.hint
        assert not (google_accepts_bucket(bucket) and acceptable_prefix(prefix.removesuffix("/"))) \
            or "/" in bucket, url
        return
    got_bucket, got_prefix = parsed
    assert google_accepts_bucket(got_bucket) and acceptable_prefix(got_prefix), url
    assert url.startswith(f"gs://{got_bucket}")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_anything_but_gs_scheme_is_refused(text):
    if text.startswith("gs://"):
        return
    with pytest.raises(UsageError) as err:
        gcs_url(text)
    assert "gs://" in err.value.message and "gs://BUCKET/PREFIX" in err.value.hint


@pytest.mark.parametrize("url, words", [
    ("gs://ab/x", "not a valid Cloud Storage bucket name"),  # 2 characters
    ("gs://" + "a" * 64, "not a valid Cloud Storage bucket name"),  # 64 without dots
    ("gs://My-Bucket/x", "not a valid Cloud Storage bucket name"),  # uppercase
    ("gs://-bucket/x", "not a valid Cloud Storage bucket name"),  # starts with '-'
    ("gs://bucket_/x", "not a valid Cloud Storage bucket name"),  # ends with '_'
    ("gs://a..b/x", "not a valid Cloud Storage bucket name"),  # empty dot part
    ("gs://192.168.5.4/x", "looks like an IP address"),
    ("gs://goog-stuff/x", "Google reserves"),
    ("gs://my-google-bucket/x", "Google reserves"),
    ("gs://my-g00gle-bucket/x", "Google reserves"),
    ("gs://bucket/a\nb", "contains"),
    ("gs://bucket/a\rb", "contains"),
    ("gs://bucket/run#3", "contains '#'"),
    ("gs://bucket/ckpt*", "contains '*'"),
    ("gs://bucket/a//b", "empty, '.' or '..' part"),
    ("gs://bucket/a/../b", "empty, '.' or '..' part"),
    ("gs://bucket/.well-known/acme-challenge/x", "acme-challenge"),
    ("gs://bucket/" + "é" * 300, "bytes long"),
    ("s3://bucket/x", "is not a gs:// URL"),
    ("GS://bucket/x", "is not a gs:// URL"),
    ("gs:///x", "bucket name is empty"),
])
def test_each_rule_refuses_with_one_line_and_a_hint(url, words):
    with pytest.raises(UsageError) as err:
        gcs_url(url)
    assert words in err.value.message and err.value.hint
    assert "\n" not in err.value.message and "\r" not in err.value.message


def test_dotted_names_may_be_longer_but_each_part_at_most_63():
    long_dotted = ".".join(["a" * 63] * 3)  # 191 characters
    assert gcs_url(f"gs://{long_dotted}/x") == (long_dotted, "x")
    with pytest.raises(UsageError):
        gcs_url(f"gs://{'a' * 64}.b/x")


def test_default_bucket_is_deterministic_valid_and_hides_the_project():
    name = default_bucket_name("my-secret-project-123")
    assert name == default_bucket_name("my-secret-project-123") != default_bucket_name("other-project")
    assert google_accepts_bucket(name) and "secret" not in name and len(name) <= 63
    assert gcs_url(f"gs://{name}") == (name, "")


def test_runs_get_their_own_folder():
    assert CheckpointLocation("b-1", "team/llama").for_run("run-7").url == "gs://b-1/team/llama/run-7"
    assert CheckpointLocation("b-1", "").for_run("run-7").url == "gs://b-1/run-7"
