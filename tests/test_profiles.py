"""Machine profiles: bundled data, on-demand twins, user overrides (gpuctl.profiles)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.errors import ProfileError
from gpuctl.profiles import UBUNTU_2204, Profile, build_profiles, get_profile
from gpuctl_infra.catalog import GPUS, MACHINES

SPOT = ["t4-spot", "l4-spot", "a100-spot", "a100-80-spot", "h100-spot", "a100x4-spot"]
ON_DEMAND = ["t4-ondemand", "l4-ondemand", "a100-ondemand", "a100-80-ondemand", "a100x4-ondemand"]
# Added with the full catalog; Blackwell and big boxes pin their own drivers and disks.
NEW_SPOT = ["l4x4-spot", "rtxpro-spot", "h100x8-spot", "h200x8-spot", "b200x8-spot"]
NEW_ON_DEMAND = ["l4x4-ondemand", "rtxpro-ondemand", "h100x8-ondemand"]
FIELD_NAMES = sorted(set(Profile.model_fields) - {"name"})


@pytest.fixture(scope="module")
def bundled():
    return build_profiles()


# --- bundled profiles -------------------------------------------------------------------------

def test_bundled_names(bundled):
    assert set(bundled) == set(SPOT) | set(ON_DEMAND) | set(NEW_SPOT) | set(NEW_ON_DEMAND)
    # Sold only as spot or flex-start capacity: no on-demand twin.
    for name in ("h100-ondemand", "h200x8-ondemand", "b200x8-ondemand"):
        assert name not in bundled


@pytest.mark.parametrize("name,machine,gpu,gpus,ssds", [
    ("l4x4-spot", "g2-standard-48", "nvidia-l4", 4, 4),
    ("rtxpro-spot", "g4-standard-48", "nvidia-rtx-pro-6000", 1, 4),
    ("h100x8-spot", "a3-highgpu-8g", "nvidia-h100-80gb", 8, 16),
    ("h200x8-spot", "a3-ultragpu-8g", "nvidia-h200-141gb", 8, 32),
    ("b200x8-spot", "a4-highgpu-8g", "nvidia-b200", 8, 32),
])
def test_new_profiles_carry_their_shapes(bundled, name, machine, gpu, gpus, ssds):
    profile = bundled[name]
    assert (profile.machine_type, profile.gpu_type, profile.gpu_total, profile.local_ssd_total) \
        == (machine, gpu, gpus, ssds)
    if gpu in ("nvidia-b200", "nvidia-rtx-pro-6000"):  # Blackwell: R570+ and CUDA 12.8+
        assert int(profile.driver) >= 570 and profile.cuda == "12.8"


def test_every_bundled_profile_is_valid_against_the_catalog(bundled):
    for name, profile in bundled.items():
        assert profile.name == name
        assert profile.machine_type in MACHINES, name
        assert profile.gpu_type in GPUS, name
        assert profile.gpu_total >= 1, name
        assert profile.spot is name.endswith("-spot"), name


@pytest.mark.parametrize("name", SPOT + ON_DEMAND)
def test_shared_defaults(bundled, name):
    profile = bundled[name]
    assert profile.image == UBUNTU_2204
    assert "ubuntu-2204" in profile.image
    assert profile.os == "ubuntu-22.04"
    assert profile.boot_disk_gb == 100
    assert profile.boot_disk_type == "pd-ssd"
    assert profile.driver == "535"
    assert profile.cuda == "11.8"
    assert profile.python == "3.10"


def test_t4_spot(bundled):
    t4 = bundled["t4-spot"]
    assert t4.machine_type == "n1-highmem-8"
    assert t4.gpu == "nvidia-tesla-t4"
    assert t4.gpu_count == 1
    assert t4.gpu_type == "nvidia-tesla-t4"
    assert t4.gpu_total == 1
    assert t4.nvme_count == 1
    assert t4.local_ssd_total == 1
    assert t4.spot is True


def test_l4_spot(bundled):
    l4 = bundled["l4-spot"]
    assert l4.machine_type == "g2-standard-8"
    assert l4.gpu is None  # built in
    assert l4.gpu_type == "nvidia-l4"
    assert l4.gpu_total == 1
    assert l4.nvme_count == 1


def test_a100_spot(bundled):
    a100 = bundled["a100-spot"]
    assert a100.machine_type == "a2-highgpu-1g"
    assert a100.gpu_type == "nvidia-tesla-a100"
    assert a100.gpu_total == 1
    assert a100.nvme_count == 1
    assert a100.local_ssd_total == 1


def test_a100_80_spot_has_bundled_ssd_only(bundled):
    a100_80 = bundled["a100-80-spot"]
    assert a100_80.machine_type == "a2-ultragpu-1g"
    assert a100_80.gpu_type == "nvidia-a100-80gb"
    assert a100_80.nvme_count == 0
    assert a100_80.local_ssd_total == 1
    assert a100_80.region == "us-central1"  # no A100 80GB in Tokyo


def test_h100_spot(bundled):
    h100 = bundled["h100-spot"]
    assert h100.machine_type == "a3-highgpu-1g"
    assert h100.gpu_type == "nvidia-h100-80gb"
    assert h100.nvme_count == 0
    assert h100.spot is True


def test_a100x4_spot(bundled):
    quad = bundled["a100x4-spot"]
    assert quad.machine_type == "a2-highgpu-4g"
    assert quad.gpu_total == 4
    assert quad.nvme_count == 4


@pytest.mark.parametrize("spot, twin", list(zip(
    ["t4-spot", "l4-spot", "a100-spot", "a100-80-spot", "a100x4-spot"], ON_DEMAND)))
def test_on_demand_twin_matches_spot_but_for_spot(bundled, spot, twin):
    a, b = bundled[spot], bundled[twin]
    assert b.spot is False
    assert b.description.endswith("(on-demand)")
    same = {k: v for k, v in a.model_dump().items() if k not in ("name", "spot", "description")}
    assert same == {k: v for k, v in b.model_dump().items()
                    if k not in ("name", "spot", "description")}


def test_profiles_are_frozen(bundled):
    with pytest.raises(Exception):
        bundled["t4-spot"].nvme_count = 3  # type: ignore[misc]
    assert bundled["t4-spot"].nvme_count == 1


# --- user overrides ---------------------------------------------------------------------------

def test_override_merges_field_by_field():
    profiles = build_profiles({"a100-spot": {"zones": ["asia-northeast1-c", "asia-northeast1-a"],
                                             "nvme_count": 2}})
    a100 = profiles["a100-spot"]
    assert a100.zones == ["asia-northeast1-c", "asia-northeast1-a"]
    assert a100.nvme_count == 2
    # Everything not overridden stays as bundled.
    assert a100.machine_type == "a2-highgpu-1g"
    assert a100.spot is True
    assert a100.driver == "535"
    assert a100.description.startswith("A100 40GB")
    # Other profiles are untouched.
    assert profiles["t4-spot"] == build_profiles()["t4-spot"]


def test_overrides_do_not_leak_between_calls():
    build_profiles({"t4-spot": {"nvme_count": 4}})
    assert build_profiles()["t4-spot"].nvme_count == 1


def test_base_copies_a_profile():
    profiles = build_profiles({"my-t4": {"base": "t4-spot", "nvme_count": 2, "cuda": "12.4"}})
    mine, t4 = profiles["my-t4"], profiles["t4-spot"]
    assert mine.name == "my-t4"
    assert mine.machine_type == t4.machine_type == "n1-highmem-8"
    assert mine.gpu == "nvidia-tesla-t4"
    assert mine.nvme_count == 2
    assert mine.cuda == "12.4"
    assert t4.nvme_count == 1 and t4.cuda == "11.8"  # the base is not changed


def test_base_can_be_an_on_demand_twin():
    mine = build_profiles({"mine": {"base": "a100-ondemand"}})["mine"]
    assert mine.spot is False
    assert mine.machine_type == "a2-highgpu-1g"


def test_user_profile_from_scratch():
    mine = build_profiles({"big-t4": {"machine_type": "n1-highmem-16",
                                      "gpu": "nvidia-tesla-t4", "gpu_count": 2}})["big-t4"]
    assert mine.gpu_total == 2
    assert mine.nvme_count == 0
    assert mine.driver == "535"
    assert mine.spot is True


def test_base_unknown_is_profile_error():
    with pytest.raises(ProfileError) as info:
        build_profiles({"mine": {"base": "t5-spot"}})
    assert "mine" in info.value.message
    assert "t5-spot" in info.value.message
    assert "t4-spot" in info.value.hint


def test_user_profile_without_machine_type_is_profile_error():
    with pytest.raises(ProfileError) as info:
        build_profiles({"mine": {"nvme_count": 1}})
    assert "mine" in info.value.message
    assert "machine_type" in info.value.message


@pytest.mark.parametrize("override, field", [
    ({"nvme_count": -1}, "nvme_count"),
    ({"nvme_count": 25}, "nvme_count"),
    ({"gpu_count": 9}, "gpu_count"),
    ({"boot_disk_gb": 5}, "boot_disk_gb"),
    ({"driver": "latest"}, "driver"),
    ({"cuda": "12.x"}, "cuda"),
    ({"python": "3.10.1.2"}, "python"),
    ({"python": ""}, "python"),
    ({"spot": "maybe"}, "spot"),
    ({"zones": "us-central1-a"}, "zones"),
    ({"nvme_cuont": 2}, "nvme_cuont"),  # unknown key
])
def test_invalid_fields_name_the_profile(override, field):
    with pytest.raises(ProfileError) as info:
        build_profiles({"t4-spot": override})
    assert "t4-spot" in info.value.message
    assert field in info.value.message
    assert "t4-spot" in info.value.hint


@pytest.mark.parametrize("name", ["My-Profile", "9lives", "a" * 32, "under_score", "x y"])
def test_invalid_profile_names_are_refused(name):
    with pytest.raises(ProfileError) as info:
        build_profiles({name: {"base": "t4-spot"}})
    assert name in info.value.message


def test_profile_name_with_trailing_newline_is_refused():
    # "$" in PROFILE_NAME_RE matches before a final newline, so "foo\n" passes the name check.
    with pytest.raises(ProfileError):
        build_profiles({"foo\n": {"base": "t4-spot"}})


def test_version_with_trailing_newline_is_refused():
    with pytest.raises(ProfileError):
        build_profiles({"t4-spot": {"driver": "535\n"}})


@pytest.mark.parametrize("base", [["t4-spot"], {"name": "t4-spot"}])
def test_base_of_the_wrong_type_is_profile_error(base):
    # Config allows any TOML value in a profile table, so `base = ["t4-spot"]` reaches here.
    with pytest.raises(ProfileError):
        build_profiles({"mine": {"base": base}})


# --- get_profile ------------------------------------------------------------------------------

def test_get_profile_returns_it(bundled):
    assert get_profile(bundled, "l4-spot") is bundled["l4-spot"]


@pytest.mark.parametrize("typo, meant", [("a100-spt", "a100-spot"), ("t4spot", "t4-spot"),
                                         ("l4-ondemnd", "l4-ondemand"), ("h100-sopt", "h100-spot")])
def test_get_profile_suggests_the_close_name(bundled, typo, meant):
    with pytest.raises(ProfileError) as info:
        get_profile(bundled, typo)
    assert typo in info.value.message
    assert f"did you mean {meant}?" in info.value.hint


def test_get_profile_without_close_name_still_hints(bundled):
    with pytest.raises(ProfileError) as info:
        get_profile(bundled, "zzzzzzzzzzzz")
    assert "did you mean" not in info.value.hint
    assert "gpuctl profiles" in info.value.hint


# --- arbitrary overrides ----------------------------------------------------------------------

_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-50, max_value=70000),
    st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["t4-spot", "a100-spot", "n1-highmem-8", "nvidia-tesla-t4", "12.4", "535",
                     "us-central1-a", "pd-balanced"]),
    st.lists(st.text(max_size=8), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_keys = st.one_of(st.sampled_from(FIELD_NAMES + ["base", "name"]), st.text(max_size=10))
_profile_names = st.one_of(st.sampled_from(SPOT + ON_DEMAND + ["mine"]),
                           st.text(max_size=12))


def _check_build(overrides) -> None:
    try:
        profiles = build_profiles(overrides)
    except ProfileError as exc:
        assert exc.message.startswith(("profile ", "unknown profile"))
        assert exc.hint
        return
    assert set(SPOT + ON_DEMAND) <= set(profiles)
    for name, profile in profiles.items():
        assert isinstance(profile, Profile)
        assert profile.name == name


@settings(max_examples=200)
@given(st.dictionaries(_profile_names, st.dictionaries(_keys, _values, max_size=4), max_size=3))
def test_random_overrides_give_profiles_or_profile_error(overrides):
    _check_build(overrides)


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), _values, max_size=4))
def test_random_field_values_on_a_bundled_profile(override):
    _check_build({"t4-spot": override})


@settings(max_examples=100)
@given(st.text(max_size=20))
def test_get_profile_random_name(bundled, name):
    if name in bundled:
        assert get_profile(bundled, name).name == name
        return
    with pytest.raises(ProfileError) as info:
        get_profile(bundled, name)
    assert info.value.hint


# --- `gpuctl profiles`: offers in every region, readable at 80 columns -------------------------

def _profiles_cli(*args, currency: str | None = None, tmp_path=None):
    from click.testing import CliRunner

    from gpuctl.cli.main import cli

    env = {"COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}
    return CliRunner().invoke(cli, ["profiles", *args], env=env)


@pytest.mark.parametrize("currency", [None, 'currency = "JPY"\nfx_rate = 150\n'])
def test_profiles_fit_80_columns_and_never_cut_names_or_prices(config_file, currency):
    if currency:
        config_file(currency)
    result = _profiles_cli()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in build_profiles():
        row = next((line for line in lines if line.split() and line.split()[0] == name), None)
        assert row is not None, f"{name} is cut or missing"
        if name != "rtxpro-spot" and name != "rtxpro-ondemand":
            assert "$" in row and (("¥" in row) == bool(currency)), row


def test_profiles_json_lists_every_region_of_the_catalog_with_a_price_per_offer():
    import json

    from gpuctl_infra.catalog import REGIONS

    result = _profiles_cli("--json")
    data = json.loads(result.output)
    regions = {r for p in data["profiles"] for r in p["regions"]}
    assert regions == set(REGIONS) - {"asia-south2"}  # only spot-less H200 there (see test_plan)
    assert all(o["hourly_usd"] > 0 for o in data["offers"])
    assert "as of 2026-12-01" in data["price_note"] and "SkyPilot" in data["price_note"]
    a100 = {p["name"]: p for p in data["profiles"]}["a100-spot"]["regions"]
    assert a100["asia-northeast1"]["zones"] == ["asia-northeast1-a", "asia-northeast1-c"]


def test_profiles_filters_by_gpu_and_region_pattern_and_sorts_by_price():
    import json

    data = json.loads(_profiles_cli("--gpu", "l4", "--region", "europe-*", "--sort", "price",
                                    "--json").output)
    assert {o["profile"] for o in data["offers"]} == {"l4-spot", "l4-ondemand", "l4x4-spot",
                                                      "l4x4-ondemand"}
    assert all(o["region"].startswith("europe-") for o in data["offers"])
    prices = [o["hourly_usd"] for o in data["offers"]]
    assert prices == sorted(prices)


@pytest.mark.parametrize("args,words", [(["--gpu", "X9000"], "not a GPU"),
                                        (["--region", "europe-wst4"], "no GPU data")])
def test_profiles_refuses_unknown_gpus_and_regions_in_one_line(args, words):
    result = _profiles_cli(*args)
    assert result.exit_code != 0
    assert words in result.output and "hint" in result.output
