"""Google's discovery documents as the contract every stand-in is held to.

google-api-python-client ships the documents Google publishes for its APIs
(`googleapiclient/discovery_cache/documents/*.json`). From them this module gives
  * `methods(api)`: every REST method (id, HTTP verb, path template, request/response schema);
  * `match(api, verb, path)`: which documented method a request path is, or None;
  * `check(api, schema, value)`: the violations of a JSON value against a named schema.

The checker reads the discovery dialect directly (it is not JSON Schema): `$ref`, `type`,
`properties` (a field not listed is refused, as Google's JSON parser refuses it: "Invalid JSON
payload received. Unknown name ..."), `additionalProperties` (maps), `items`, `enum`, and
`format`. Discovery encodes int64/uint64 as JSON *strings* of digits (proto3 JSON mapping);
int32/uint32 as numbers; `google-datetime` as RFC 3339 text; `google-duration` as "<n>s"; an
enum by its name, or by its number (proto3 JSON; the generated clients send numbers).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import googleapiclient

DOCUMENTS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
_INT_STRING = re.compile(r"-?[0-9]+")
_DURATION = re.compile(r"-?[0-9]+(\.[0-9]{1,9})?s")


@dataclass(frozen=True)
class Method:
    id: str  # e.g. "compute.instances.setScheduling"
    verb: str
    template: str  # flatPath (or path) relative to rootUrl: "compute/v1/projects/{project}/..."
    request: str | None
    response: str | None
    description: str

    @property
    def pattern(self) -> re.Pattern:
        """The template as a regex over URL paths: {x} is one segment, {+x} may span several."""
        out, pos = "", 0
        for m in re.finditer(r"\{(\+?)([^}]+)\}", self.template):
            out += re.escape(self.template[pos:m.start()])
            out += "(.+)" if m.group(1) else "([^/:]+)"
            pos = m.end()
        out += re.escape(self.template[pos:])
        return re.compile("/" + out)

    def sample_path(self, value: str = "x1") -> str:
        """A concrete path for the template, each parameter replaced by `value`."""
        return "/" + re.sub(r"\{\+?[^}]+\}", value, self.template)


@functools.cache
def document(api: str) -> dict:
    """api: the file stem, e.g. "compute.v1", "container.v1", "cloudbilling.v1"."""
    return json.loads((DOCUMENTS / f"{api}.json").read_text())


@functools.cache
def methods(api: str) -> dict[str, Method]:
    doc = document(api)
    base = doc["servicePath"]
    found: dict[str, Method] = {}

    def walk(resources: dict) -> None:
        for resource in resources.values():
            for spec in resource.get("methods", {}).values():
                template = base + spec.get("flatPath", spec["path"])
                found[spec["id"]] = Method(spec["id"], spec["httpMethod"], template,
                                           spec.get("request", {}).get("$ref"),
                                           spec.get("response", {}).get("$ref"),
                                           spec.get("description", ""))
            walk(resource.get("resources", {}))

    walk(doc.get("resources", {}))
    return found


def match(api: str, verb: str, path: str) -> Method | None:
    """The documented method serving `verb path`. A literal path beats a template with a
    parameter in the same place (".../instances/aggregated" style); a longer literal prefix wins."""
    hits = [m for m in methods(api).values() if m.verb == verb and m.pattern.fullmatch(path)]
    if not hits:
        return None
    return max(hits, key=lambda m: len(re.sub(r"\{[^}]+\}", "", m.template)))


def check(api: str, schema: str, value, where: str = "") -> list[str]:
    """Violations of `value` against schema `schema` of document `api`; [] when it conforms.
    Each names the field by its JSON path, e.g. "scheduling.maxRunDuration.seconds"."""
    problems: list[str] = []
    _check(document(api)["schemas"], {"$ref": schema}, value, where, problems)
    return problems


def _check(schemas: dict, spec: dict, value, where: str, problems: list[str]) -> None:
    name = where or "(body)"
    if "$ref" in spec:
        spec = schemas[spec["$ref"]]
    kind = spec.get("type", "any")
    if kind == "any":
        return
    if kind == "object":
        if not isinstance(value, dict):
            problems.append(f"{name}: expected an object, got {type(value).__name__}")
            return
        props, extra = spec.get("properties", {}), spec.get("additionalProperties")
        for key, item in value.items():
            path = f"{where}.{key}" if where else key
            if key in props:
                _check(schemas, props[key], item, path, problems)
            elif extra is not None:
                _check(schemas, extra, item, path, problems)
            else:
                problems.append(f"{path}: unknown field (not in schema {spec.get('id', '?')})")
        return
    if kind == "array":
        if not isinstance(value, list):
            problems.append(f"{name}: expected an array, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(schemas, spec.get("items", {}), item, f"{where}[{i}]", problems)
        return
    fmt = spec.get("format")
    if kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{name}: expected a boolean, got {value!r}")
    elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        problems.append(f"{name}: expected an integer ({fmt}), got {value!r}")
    elif kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        problems.append(f"{name}: expected a number, got {value!r}")
    elif kind == "string":
        if "enum" in spec and isinstance(value, int) and not isinstance(value, bool):
            # proto3 JSON parsers take an enum's number as well as its name; the clients ask for
            # numbers ("$alt=json;enum-encoding=int"). Discovery lists names, not their numbers,
            # so only a number past the end of the list is known to be wrong.
            if not 0 <= value < len(spec["enum"]):
                problems.append(f"{name}: enum number {value} is out of range")
        elif not isinstance(value, str):
            problems.append(f"{name}: expected a string ({fmt or 'text'}), got {value!r}")
        elif fmt in ("int64", "uint64") and not _INT_STRING.fullmatch(value):
            problems.append(f"{name}: expected {fmt} as a string of digits, got {value!r}")
        elif fmt == "google-datetime" and not _is_datetime(value):
            problems.append(f"{name}: expected an RFC 3339 timestamp, got {value!r}")
        elif fmt == "google-duration" and not _DURATION.fullmatch(value):
            problems.append(f"{name}: expected a duration like '3.5s', got {value!r}")
        elif "enum" in spec and value not in spec["enum"]:
            problems.append(f"{name}: {value!r} is not one of {spec['enum']}")


def _is_datetime(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class ContractViolation(Exception):
    """A request or response that Google's document does not allow."""


def request_problems(api: str, verb: str, path: str, body) -> tuple[Method | None, list[str]]:
    """The method a request is and what is wrong with its body: no method -> (None, [...])."""
    method = match(api, verb, path)
    if method is None:
        return None, [f"{verb} {path}: no such method in {api}.json"]
    if method.request is None:
        return method, ([] if body in (None, {}) else [f"{method.id} takes no request body"])
    return method, check(api, method.request, body if body is not None else {})


def response_problems(api: str, method: Method, payload) -> list[str]:
    if method.response is None:
        return []
    return check(api, method.response, payload)
