"""`gpuctl gke up` before anything exists: the --pools parser (with property tests), the spec
built from flags, default zones, and the cost per hour idle and per GPU node."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.errors import RuleViolation, UsageError
from gpuctl.gke.costs import CLUSTER_FEE_USD_PER_HOUR, cluster_cost
from gpuctl.gke.plan import GkeOptions, build_spec, default_zone, plan_gke, plan_to_dict
from gpuctl.gke.pools import PoolRequest, format_pools, parse_pools
from gpuctl.prices.model import HOURS_PER_MONTH
from gpuctl_infra.gke_spec import PROJECT_PLACEHOLDER

# --- the parser ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("l4", [PoolRequest("l4")]),
    ("l4:2,t4", [PoolRequest("l4", 2), PoolRequest("t4")]),
    (" L4 : 3 , nvidia-tesla-t4 ", [PoolRequest("l4", 3), PoolRequest("t4")]),
    ("a100@a2-highgpu-2g:1", [PoolRequest("a100", 1, "a2-highgpu-2g")]),
    ("t4@n1-highmem-16", [PoolRequest("t4", None, "n1-highmem-16")]),
    ("nvidia-tesla-a100:0", [PoolRequest("a100", 0)]),  # the range is a rule, not syntax
])
def test_pools_parse(text, expected):
    assert parse_pools(text) == expected


@pytest.mark.parametrize(("text", "message", "hint"), [
    ("", "empty item", "--pools l4:2,t4"),
    ("l4,,t4", "empty item", "--pools l4"),
    ("l4,", "empty item", "--pools l4"),
    ("h100", "'h100' is not a GPU gpuctl runs on GKE", "use t4, l4, a100"),
    ("l4:two", "'two' is not a node count", "GPU:MAX"),
    ("l4:-1", "'-1' is not a node count", "whole number"),
    ("l4:", "'' is not a node count", "whole number"),
    ("l4@:2", "'' is not a machine type", "GPU@MACHINE"),
    ("l4@G2 standard", "is not a machine type", "l4@g2-standard-16"),
    ("l4,L4:2", "names l4 twice", "one pool per GPU type"),
    ("t4,nvidia-tesla-t4", "names t4 twice", "larger :MAX"),
])
def test_bad_pools_are_one_line_usage_errors(text, message, hint):
    with pytest.raises(UsageError) as err:
        parse_pools(text)
    assert message in err.value.message and "\n" not in err.value.message
    assert hint in err.value.hint
    assert err.value.exit_code == 2


machines = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
requests = st.lists(
    st.builds(PoolRequest, st.sampled_from(["t4", "l4", "a100"]),
              st.none() | st.integers(0, 9999), st.none() | machines),
    min_size=1, max_size=3, unique_by=lambda r: r.short)


@settings(max_examples=300, deadline=None)
@given(requests)
def test_format_then_parse_is_identity(found):
    assert parse_pools(format_pools(found)) == found


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
       | st.text(alphabet="tl4a10@:,- nvidiaesg2x", max_size=30))
def test_any_text_parses_or_is_a_usage_error(text):
    try:
        found = parse_pools(text)
    except UsageError as exc:
        assert exc.message and exc.hint and "\n" not in exc.message
        return
    assert 1 <= len(found) == len({r.short for r in found})
    assert all(r.max_nodes is None or 0 <= r.max_nodes <= 9999 for r in found)


@settings(max_examples=200, deadline=None)
@given(requests, st.sampled_from([" ", "  ", "\t"]))
def test_whitespace_around_items_does_not_matter(found, pad):
    spaced = ",".join(f"{pad}{r.text()}{pad}" for r in found)
    assert parse_pools(spaced) == found


# --- spec and zone ---------------------------------------------------------------------------


def test_default_zone_offers_every_gpu_asked_for():
    assert default_zone("us-central1", parse_pools("l4")) == "us-central1-a"
    assert default_zone("asia-northeast1", parse_pools("t4,l4,a100")) == "asia-northeast1-a"
    with pytest.raises(UsageError) as err:
        default_zone("europe-west1", parse_pools("a100"))  # no A100 there
    assert "--zone" in err.value.hint


def test_spec_from_flags(ctx):
    spec = build_spec(ctx, GkeOptions(name="ml", pools="l4:3,t4", max_nodes=2))
    assert (spec.name, spec.zone, spec.project) == ("ml", "us-central1-a", PROJECT_PLACEHOLDER)
    assert [(p.accelerator, p.machine_type, p.max_nodes, p.spot) for p in spec.gpu_pools] == [
        ("nvidia-l4", "g2-standard-8", 3, True), ("nvidia-tesla-t4", "n1-standard-8", 2, True)]
    assert spec.labels == {"gpuctl-managed": "true", "gpuctl-owner": "alice", "gpuctl-name": "ml",
                           "gpuctl-expiry": "none", "gpuctl-kind": "gke"}
    assert spec.stack_name == "gke-ml"


def test_spec_takes_project_and_region_from_config(config_file, monkeypatch):
    from gpuctl.context import load_context

    config_file('project = "acme-ml-42"\nregion = "asia-northeast1"\n')
    spec = build_spec(load_context(), GkeOptions(pools="a100"))
    assert (spec.project, spec.zone) == ("acme-ml-42", "asia-northeast1-a")
    assert spec.workload_pool == "acme-ml-42.svc.id.goog"


@pytest.mark.parametrize(("options", "error", "text"), [
    (GkeOptions(pools="l4", zone="us-central1-f"), RuleViolation, "not offered in us-central1-f"),
    (GkeOptions(pools="l4", max_nodes=0), RuleViolation, "max nodes 0"),
    (GkeOptions(pools="t4@g2-standard-8"), RuleViolation, "cannot run on g2-standard-8"),
    (GkeOptions(name="My_Cluster"), RuleViolation, "not a valid GKE cluster name"),
    (GkeOptions(pools="v100"), UsageError, "'v100' is not a GPU"),
])
def test_bad_flags_fail_before_any_program_runs(ctx, options, error, text):
    with pytest.raises(error) as err:
        build_spec(ctx, options)
    assert text in err.value.message and err.value.hint
    assert err.value.exit_code == 2


# --- cost ------------------------------------------------------------------------------------


def test_idle_cost_is_fee_plus_system_pool(ctx):
    spec = build_spec(ctx, GkeOptions(pools="l4:3,t4"))
    cost = cluster_cost(spec, ctx.prices)
    disk = 50 * ctx.prices.disk_gb_month("us-central1", "pd-standard", False) / HOURS_PER_MONTH
    assert cost.system.usd_per_hour == pytest.approx(0.067006 + disk)
    assert cost.idle_hourly == pytest.approx(CLUSTER_FEE_USD_PER_HOUR + 0.067006 + disk)
    assert CLUSTER_FEE_USD_PER_HOUR == 0.10


def test_gpu_node_cost_is_host_gpu_local_ssd_and_disk_at_spot_rates(ctx):
    book = ctx.prices
    spec = build_spec(ctx, GkeOptions(pools="l4:3,t4"))
    cost = cluster_cost(spec, book)
    (l4, l4_max), (t4, t4_max) = cost.gpu
    region = "us-central1"
    ssd = 375 * book.disk_gb_month(region, "local-ssd", True) / HOURS_PER_MONTH
    boot = 100 * book.disk_gb_month(region, "pd-balanced", False) / HOURS_PER_MONTH
    ip = book.network_hourly(region, "external-ipv4", True)  # a node VM has an external IPv4
    assert l4.usd_per_hour == pytest.approx(book.machine_hourly(region, "g2-standard-8", True)
                                            + book.gpu_hourly(region, "nvidia-l4", True) + ssd + boot + ip)
    assert t4.usd_per_hour == pytest.approx(book.machine_hourly(region, "n1-standard-8", True)
                                            + book.gpu_hourly(region, "nvidia-tesla-t4", True) + ssd + boot + ip)
    assert book.gpu_hourly(region, "nvidia-l4", True) == 0.2231  # the snapshot's spot L4
    assert (l4_max, t4_max) == (3, 2)
    assert cost.max_hourly == pytest.approx(
        0.10 + 2 * cost.system.usd_per_hour + 3 * l4.usd_per_hour + 2 * t4.usd_per_hour)


def test_one_node_has_one_price_whichever_module_asks(ctx):
    """gke/pricing (a pod's node) and gke/costs (a pool's node) price the same spot L4 node the
    same: both call cost.node_hourly (issue 14: they said $0.4362/h and $0.4746/h)."""
    from gpuctl.cost import node_hourly
    from gpuctl.gke.pricing import gpu_node_hourly

    (pool_node, _), = cluster_cost(build_spec(ctx, GkeOptions(pools="l4:1")), ctx.prices).gpu
    pod_node = gpu_node_hourly(ctx.prices, "us-central1", "nvidia-l4", 1, True)
    vm = node_hourly(ctx.prices, "us-central1", "g2-standard-8", gpu="nvidia-l4", gpus=1,
                     local_ssds=1, model="SPOT", disk_type="pd-balanced", disk_gb=100)
    assert pod_node["usd_per_hour"] == pytest.approx(pool_node.usd_per_hour, abs=1e-4)
    assert vm.running == pytest.approx(pool_node.usd_per_hour)


def test_the_system_pool_is_priced_from_the_price_book(ctx):
    from gpuctl.errors import PriceError
    from gpuctl.gke.costs import system_machine_hourly

    assert system_machine_hourly("us-central1", "e2-standard-2", ctx.prices) == \
        ctx.prices.machine_hourly("us-central1", "e2-standard-2", False) == 0.067006
    with pytest.raises(PriceError):  # no E2 figure read for this region: said, not guessed
        system_machine_hourly("europe-west4", "e2-standard-2", ctx.prices)


def test_a100_node_on_two_gpu_machine_pays_for_two_gpus(ctx):
    book = ctx.prices
    spec = build_spec(ctx, GkeOptions(pools="a100@a2-highgpu-2g:1"))
    (node, _), = cluster_cost(spec, book).gpu
    assert "2x A100 40GB + 2x 375 GB NVMe" in node.detail
    gpu = book.gpu_hourly("us-central1", "nvidia-tesla-a100", True)
    assert node.usd_per_hour > book.machine_hourly("us-central1", "a2-highgpu-2g", True) + 2 * gpu


def test_plan_lists_the_program_resources_and_the_costs(ctx):
    plan = plan_gke(ctx, GkeOptions(name="ml", pools="l4"))
    report = plan_to_dict(plan, ctx)
    assert sorted((r["type"], r["name"]) for r in report["resources"]) == [
        ("container.Cluster", "ml"), ("container.NodePool", "ml-gpu-l4"),
        ("container.NodePool", "ml-system"), ("projects.IAMMember", "ml-nodes-role"),
        ("serviceaccount.Account", "ml-nodes")]
    cluster = next(r for r in report["resources"] if r["name"] == "ml")
    assert "Dataplane V2 (NetworkPolicy enforced)" in cluster["summary"]
    gpu_pool = next(r for r in report["resources"] if r["name"] == "ml-gpu-l4")
    assert "spot, 0..2 nodes tainted nvidia.com/gpu" in gpu_pool["summary"]
    assert report["cost"]["idle_usd_per_hour"] == pytest.approx(plan.cost.idle_hourly, abs=1e-4)
    assert report["cost"]["idle_usd_per_day"] == pytest.approx(plan.cost.idle_hourly * 24, abs=0.01)
    assert report["cost"]["gpu_pools"][0]["max_nodes"] == 2
    assert report["kube_context"] == "gpuctl-ml" and report["stack"] == "gke-ml"
