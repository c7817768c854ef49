"""What the real Pulumi engine costs a `gpuctl up`, beside the same creates without it.

Both sides apply gpuctl's real VM program (firewall rule + spot T4 VM) against the Compute
stand-in on loopback, creating each resource through the real google-cloud-compute client:

  engine    `AutomationEngine` as shipped: the `pulumi` CLI built from Go modules, the inline
            program over the Automation API, the gcp provider plugin double (tests/gcp_provider)
            started by the engine; then `destroy`.
  baseline  the same program under `pulumi.runtime.set_mocks`, each registered resource created
            in-process by the same provider code (what the old test engine did): only the
            program run, the creates and the operation waits.

The engine's time is broken down: CLI start (`pulumi version`), plugin start (until it prints
its port), stack selection and config (the Automation API's CLI calls), the update itself, and
destroy. Ratios are engine / baseline; medians of --runs runs on this machine.

    .venv/bin/python bench/engine.py [--runs 3] [--out bench/results/engine-DATE.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def plugin_start_s(plugin: Path) -> float:
    """From exec to the port line: what the engine waits for before its first RPC."""
    started = time.perf_counter()
    process = subprocess.Popen([str(plugin), "127.0.0.1:1"], stdout=subprocess.PIPE, text=True)
    process.stdout.readline()
    elapsed = time.perf_counter() - started
    process.kill()
    process.wait()
    return elapsed


def vm_spec(project: str):
    from gpuctl.context import load_context
    from gpuctl.plan import UpOptions, plan_vm

    plan = plan_vm(load_context(), UpOptions(profile="t4-spot", ssh_from="198.51.100.7"), with_resources=False)
    return replace(plan.spec, zone="us-central1-a", project=project,
                   ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench gpuctl")


def engine_run(standin, spec, stack: str) -> dict[str, float]:
    from pulumi import automation as auto

    from gpuctl.adapters import pulumi_engine
    from gpuctl.lifecycle.up import vm_program

    engine = pulumi_engine.AutomationEngine("gpuctl-vm")
    phases: dict[str, float] = {}
    real_select, real_set = auto.create_or_select_stack, auto.Stack.set_all_config

    def select(*args, **kwargs):
        started = time.perf_counter()
        try:
            return real_select(*args, **kwargs)
        finally:
            phases["select stack"] = time.perf_counter() - started

    def set_config(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return real_set(self, *args, **kwargs)
        finally:
            phases["set config"] = time.perf_counter() - started

    auto.create_or_select_stack, auto.Stack.set_all_config = select, set_config
    try:
        total = timed(lambda: engine.up(stack, vm_program(spec), {"gcp:project": spec.project,
                                                                  "gcp:zone": spec.zone}))
    finally:
        auto.create_or_select_stack, auto.Stack.set_all_config = real_select, real_set
    phases["update (pulumi up)"] = total - phases["select stack"] - phases["set config"]
    phases["up, total"] = total
    phases["destroy"] = timed(lambda: engine.destroy(stack))
    return phases


def baseline_run(standin, spec, stack: str) -> dict[str, float]:
    """The program under mocks; each gcp resource created in-process by the double's code."""
    import pulumi

    from gpuctl.lifecycle.up import vm_program
    from tests.gcp_provider.config import ProviderConfig
    from tests.gcp_provider.server import TYPES

    config = ProviderConfig({"project": spec.project, "zone": spec.zone,
                             "computeCustomEndpoint": standin.endpoint + "/compute/v1/"})
    made: list[tuple[str, str, dict]] = []

    class Applying(pulumi.runtime.Mocks):
        def new_resource(self, args):
            if args.typ not in TYPES:
                return f"{args.name}-id", {}
            resource_id, outputs = TYPES[args.typ].create(config, dict(args.inputs))
            made.append((args.typ, resource_id, outputs))
            return resource_id, outputs

        def call(self, args):
            return {}

    pulumi.runtime.set_mocks(Applying(), project="gpuctl-vm", stack=stack, preview=False)
    up = timed(lambda: pulumi.runtime.test(vm_program(spec))())

    def destroy():
        for typ, resource_id, outputs in reversed(made):
            TYPES[typ].delete(config, resource_id, outputs)

    return {"up, total": up, "destroy": timed(destroy)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path,
                        default=REPO / "bench" / "results" / f"engine-{dt.date.today().isoformat()}.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gpuctl-bench-engine-"))
    os.environ.update({"GPUCTL_HOME": str(work / "home"), "GPUCTL_CONFIG": str(work / "config.toml"),
                       "GPUCTL_OWNER": "bench"})
    from tests.gcp_provider.plugin import engine_environment
    from tests.standins.compute import ComputeStandIn

    os.environ.update(engine_environment(work / "engine"))
    plugin = work / "engine" / "plugin-bin" / "pulumi-resource-gcp"
    samples: dict[str, dict[str, list[float]]] = {"engine": {}, "baseline": {}}

    def add(side: str, phases: dict[str, float]) -> None:
        for key, value in phases.items():
            samples[side].setdefault(key, []).append(value)

    with ComputeStandIn("gpuctl-bench") as standin:
        os.environ["GPUCTL_COMPUTE_ENDPOINT"] = standin.endpoint
        spec = vm_spec("gpuctl-bench")
        for run in range(args.runs):
            add("engine", {"CLI start (pulumi version)": timed(lambda: subprocess.run(
                ["pulumi", "version"], check=True, capture_output=True)),
                "plugin start (to its port)": plugin_start_s(plugin)})
            add("engine", engine_run(standin, spec, f"bench-{run}"))
            add("baseline", baseline_run(standin, spec, f"bench-{run}"))
            if standin.instances() or standin.firewalls():
                raise SystemExit("a run left resources behind; the numbers would be wrong")

    median = {side: {k: statistics.median(v) for k, v in rows.items()} for side, rows in samples.items()}
    lines = [f"# `gpuctl up` through the real engine vs the same creates without it ({dt.date.today()})",
             "", f"Medians of {args.runs} runs on this machine ({os.cpu_count()} cores); seconds.",
             "Against the Compute stand-in on loopback: the GCE operations themselves take no time here,",
             "so this is the engine's own cost, which a real `up` adds to minutes of GCE work.", "",
             "| part | engine (s) | baseline (s) | ratio |", "| --- | ---: | ---: | ---: |"]
    for key, value in median["engine"].items():
        base = median["baseline"].get(key)
        ratio = f"{value / base:.1f}" if base else ""
        lines.append(f"| {key} | {value:.2f} | {'' if base is None else f'{base:.2f}'} | {ratio} |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
