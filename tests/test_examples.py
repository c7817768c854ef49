"""examples/: the LoRA fine-tune compiles, parses its arguments and builds its data without
torch, and its job files are valid VM job specs. The training itself runs where torch is:
set GPUCTL_EXAMPLE_PYTHON to a Python with torch, transformers and peft (a GPU VM, or a CPU)."""

from __future__ import annotations

import importlib.util
import os
import py_compile
import subprocess
from pathlib import Path

import pytest

from gpuctl.jobspec import load_job_spec, notes_for_target
from gpuctl.runs.progress import parse_text
from gpuctl.runs.service import output_dirs

LORA = Path(__file__).parent.parent / "examples" / "lora"


def load_example():
    spec = importlib.util.spec_from_file_location("train_lora", LORA / "train_lora.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports no torch at module level
    return module


def test_train_lora_compiles_and_parses_its_arguments():
    py_compile.compile(str(LORA / "train_lora.py"), doraise=True)
    module = load_example()
    args = module.parse_args(["--tiny"])
    assert (args.r, args.alpha) == (32, 64)
    assert module.LORA_TARGETS == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert module.parse_args(["--model", "meta-llama/Llama-3.1-8B"]).model == "meta-llama/Llama-3.1-8B"
    with pytest.raises(SystemExit):
        module.parse_args([])  # a model or --tiny is required
    texts = module.synthetic_texts(50, 1)
    assert texts == module.synthetic_texts(50, 1) and len(set(texts)) > 10
    ids = module.ByteTokenizer().encode("héllo")
    assert ids[0] == 1 and ids[-1] == 2 and max(ids) < module.ByteTokenizer.vocab_size


def test_resume_picks_the_newest_complete_checkpoint_and_skips_one_cut_short(tmp_path, monkeypatch):
    module = load_example()
    assert module.newest_checkpoint(str(tmp_path / "none-yet")) is None
    assert module.newest_checkpoint(None) is None
    for step, complete in ((100, True), (250, True), (300, False)):  # 300: preempted mid-save
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()  # not the Trainer's
    (tmp_path / "runs").mkdir()
    assert module.newest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-250")
    monkeypatch.setenv("GPUCTL_CHECKPOINT_DIR", "/mnt/disks/nvme/gpuctl/checkpoints/r1")
    assert load_example().parse_args(["--tiny"]).checkpoint_dir == "/mnt/disks/nvme/gpuctl/checkpoints/r1"


@pytest.mark.parametrize("name", ["job.yaml", "job-tiny.yaml"])
def test_job_files_are_valid_vm_jobs_writing_to_the_nvme(name):
    spec = load_job_spec(LORA / name)
    assert notes_for_target(spec, "vm") == []
    assert spec.argv[:2] == ["python", "train_lora.py"]
    assert all(path.startswith("/mnt/disks/nvme/") for path in output_dirs(spec))
    assert (LORA / spec.requirements).is_file()


@pytest.mark.skipif(not os.environ.get("GPUCTL_EXAMPLE_PYTHON"),
                    reason="opt-in: set GPUCTL_EXAMPLE_PYTHON to a Python with torch, transformers, peft")
def test_tiny_lora_really_trains(tmp_path):
    done = subprocess.run(
        [os.environ["GPUCTL_EXAMPLE_PYTHON"], str(LORA / "train_lora.py"), "--tiny",
         "--max_steps", "40", "--batch_size", "8", "--grad_accum", "1", "--lr", "2e-3",
         "--logging_steps", "5", "--eval_steps", "20", "--output_dir", str(tmp_path / "out")],
        capture_output=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    p = parse_text(done.stdout + done.stderr)
    assert p.finished and p.step == 40 and p.losses[-1][1] < p.losses[0][1]
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


def test_the_same_job_file_renders_for_gke_unchanged(monkeypatch):
    """`gpuctl train --gke job.yaml --dry-run` and `gpuctl run --gke job.yaml --dry-run` take the
    VM job file as it is (issue 14): the folder ships as a ConfigMap, requirements are
    installed, the image and GPU default, and HF_TOKEN is a Secret read at submit (not now)."""
    import yaml
    from click.testing import CliRunner

    from gpuctl.cli.main import cli

    monkeypatch.delenv("HF_TOKEN", raising=False)  # a dry run reads no secret
    for argv in (["train", "--gke"], ["run", "--gke"]):
        result = CliRunner().invoke(cli, [*argv, str(LORA / "job.yaml"), "--dry-run"])
        assert result.exit_code == 0, result.output
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        assert [d["kind"] for d in docs] == ["ConfigMap", "Job"]
        container = docs[1]["spec"]["template"]["spec"]["containers"][0]
        assert container["image"].startswith("docker.io/pytorch/pytorch:")
        assert "pip install --no-input -r requirements.txt" in container["command"][2]
        assert "# note: workdir . is packed" in result.stdout
    import base64
    import io
    import tarfile

    code = base64.b64decode(docs[0]["binaryData"]["code.tar.gz"])
    names = tarfile.open(fileobj=io.BytesIO(code), mode="r:gz").getnames()
    assert "train_lora.py" in names and "requirements.txt" in names
