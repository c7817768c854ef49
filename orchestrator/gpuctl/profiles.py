"""Machine profiles: validated data, bundled and user-defined.

A profile says what machine to rent and what to install on it. Bundled profiles live in
data/profiles.toml; each -spot profile gets an on-demand twin. Users override fields or add
profiles in their config; the result is validated here and against GCE rules at plan time.
"""

from __future__ import annotations

import re
from typing import Any

from gpuctl_infra.catalog import MACHINES  # plain data, cheap to import
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ProfileError
from .paths import bundled_data
from .validation import first_error

PROFILE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
UBUNTU_2204 = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts"
_VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+){0,2}$", re.ASCII)
# A GCE image: a family or image URL path, or a bare image name (RFC 1035).
_IMAGE_RE = re.compile(r"(projects/[a-z][-a-z0-9.:]{0,62}/global/images/(family/)?)?"
                       r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    machine_type: str
    gpu: str | None = None  # attached accelerator (N1 only); built-in GPUs come from the type
    gpu_count: int = Field(default=0, ge=0, le=8)
    nvme_count: int = Field(default=0, ge=0, le=24)  # scratch NVMe disks to add
    spot: bool = True
    flex_start: bool = False  # provisioning model FLEX_START (DWS): at most 7 days, no stop
    region: str | None = None  # None: the config's region
    zones: list[str] | None = None  # preference order; None: every zone with the GPU
    boot_disk_gb: int = Field(default=100, ge=10, le=65536)
    boot_disk_type: str = "pd-ssd"
    image: str = UBUNTU_2204
    os: str = "ubuntu-22.04"
    driver: str = "535"
    cuda: str = "11.8"
    python: str = "3.10"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not PROFILE_NAME_RE.fullmatch(value):
            raise ValueError("use lowercase letters, digits and dashes (max 31)")
        return value

    @field_validator("driver", "cuda", "python", mode="before")
    @classmethod
    def _version(cls, value: object) -> str:
        if isinstance(value, bool) or isinstance(value, float):
            # TOML would read cuda = 12.10 as 12.1: make the user quote it instead of guessing.
            raise ValueError(f"write the version as a string, e.g. \"{value}\"")
        value = str(value) if isinstance(value, int) else value
        if not isinstance(value, str) or not _VERSION_RE.fullmatch(value):
            raise ValueError(f"'{value}' is not a version like 535, 12.4 or 3.10")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not _IMAGE_RE.fullmatch(value):
            raise ValueError(f"{value[:80]!r} is not a GCE image (e.g. {UBUNTU_2204})")
        return value

    @model_validator(mode="after")
    def _gpu_matches_machine(self):
        # A2/A3/G2 types come with their GPUs; an override naming another GPU (or count) would
        # be dropped by GCE's API shape, so the VM would not be what the profile says.
        machine = MACHINES.get(self.machine_type)
        if machine and machine.builtin_gpu:
            if self.gpu is not None and self.gpu != machine.builtin_gpu:
                raise ValueError(f"gpu {self.gpu} cannot go on {self.machine_type}: it has "
                                 f"{machine.builtin_gpu_count}x {machine.builtin_gpu} built in")
            if self.gpu_count and self.gpu_count != machine.builtin_gpu_count:
                raise ValueError(f"gpu_count {self.gpu_count} does not match {self.machine_type}"
                                 f" ({machine.builtin_gpu_count} built in)")
        return self

    @model_validator(mode="after")
    def _one_model(self):
        if self.flex_start and self.spot:
            raise ValueError("flex_start and spot are two provisioning models: set spot = false")
        return self

    @property
    def model(self) -> str:
        """GCE's provisioning model: SPOT, STANDARD (on demand) or FLEX_START."""
        return "FLEX_START" if self.flex_start else "SPOT" if self.spot else "STANDARD"

    @property
    def gpu_type(self) -> str | None:
        machine = MACHINES.get(self.machine_type)
        if machine and machine.builtin_gpu:
            return machine.builtin_gpu
        return self.gpu

    @property
    def gpu_total(self) -> int:
        machine = MACHINES.get(self.machine_type)
        if machine and machine.builtin_gpu:
            return machine.builtin_gpu_count
        return self.gpu_count

    @property
    def local_ssd_total(self) -> int:
        """Local SSDs the VM will have: bundled ones plus added scratch disks."""
        machine = MACHINES.get(self.machine_type)
        return (machine.bundled_local_ssd if machine else 0) + self.nvme_count


def _on_demand_twin(name: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    twin = dict(fields, spot=False)
    twin["description"] = fields.get("description", "") + " (on-demand)"
    return name.removesuffix("-spot") + "-ondemand", twin


def bundled_profile_fields() -> dict[str, dict[str, Any]]:
    from .safe_read import load_toml

    raw = load_toml(bundled_data("profiles.toml"), "bundled profiles", ProfileError,
                    "reinstall gpuctl: its bundled profiles.toml is damaged")
    out: dict[str, dict[str, Any]] = {}
    for name, fields in raw.items():
        out[name] = fields
        machine = MACHINES[fields["machine_type"]]
        if name.endswith("-spot") and not machine.spot_only:
            twin_name, twin = _on_demand_twin(name, fields)
            out[twin_name] = twin
    return out


def build_profiles(overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Profile]:
    """Bundled profiles, with user overrides merged field by field and user profiles added.

    A user profile may start from another with `base = "a100-spot"`.
    """
    fields = bundled_profile_fields()
    for name, override in (overrides or {}).items():
        override = dict(override)
        base_name = override.pop("base", None)
        if base_name is not None:
            if not isinstance(base_name, str) or base_name not in fields:
                raise ProfileError(f"profile {name}: base {base_name!r} is not a profile",
                                   f"known profiles: {', '.join(sorted(fields))}")
            start = dict(fields[base_name])
        else:
            start = dict(fields.get(name, {}))
        start.update(override)
        fields[name] = start
    profiles: dict[str, Profile] = {}
    for name, values in fields.items():
        try:
            profiles[name] = Profile(name=name, **values)
        except ValidationError as exc:
            raise ProfileError(f"profile {name}: {first_error(exc)}",
                               "fix [profiles." + name + "] in your config "
                               "(`gpuctl config path` shows where it is)") from None
        except TypeError as exc:
            raise ProfileError(f"profile {name}: {exc}", "each profile is a TOML table") from None
    return profiles


def get_profile(profiles: dict[str, Profile], name: str) -> Profile:
    if name in profiles:
        return profiles[name]
    import difflib

    close = difflib.get_close_matches(name, profiles, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ProfileError(f"unknown profile '{name}'",
                       hint + "run `gpuctl profiles` to list them")
