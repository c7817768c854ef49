"""The functional checks' pure parts: the batch protocol and each judge, on canned output
and on anything at all (hypothesis)."""

from __future__ import annotations

import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuctl.provision import checks
from gpuctl.provision.checks import DONE, SKIP, TODO, Check, Verdict
from gpuctl.provision.gpu_steps import CudaStep, DriverStep, VerifyStep
from gpuctl.provision.nvme import judge_nvme
from gpuctl.provision.python_step import judge_venv, parse_base
from gpuctl.provision.settings import ProvisionSettings
from gpuctl.provision.system_steps import (SHUTDOWN_CRON, IdleWatchdogStep, ShutdownCronStep,
                                           TimezoneStep)
from gpuctl_infra.spec import DailyStop

S = ProvisionSettings(login_user="gpuctl", time_zone="Asia/Tokyo", python="3.11", cuda="12.4",
                      daily_stop=DailyStop(6, 0, "Asia/Tokyo"))
MP = "/mnt/disks/nvme"
UUID = "0b7c2b43-0c2a-4a38-9b0e-1f6f1d1f2a3b"
NVME_OK = (f"fstab UUID={UUID} ext4\nmounted /dev/nvme0n1 ext4\nuuid {UUID}\nwritable yes\n"
           "disks 1 1\n")


def test_nvme_done_only_when_everything_holds():
    assert judge_nvme(NVME_OK, MP).state == DONE
    broken = {
        "nothing is mounted": "fstab UUID=x ext4\nuuid \ndisks 1 1\n",
        "2 entries": NVME_OK + f"fstab UUID={UUID} ext4\n",
        "UUID=unknown": NVME_OK.replace(f"uuid {UUID}", "uuid "),
        "fstab mounts UUID=other": NVME_OK.replace(f"fstab UUID={UUID}", "fstab UUID=other"),
        "not ext4": NVME_OK.replace("nvme0n1 ext4", "nvme0n1 xfs"),
        "not writable": NVME_OK.replace("writable yes\n", ""),
    }
    for reason, text in broken.items():
        verdict = judge_nvme(text, MP)
        assert verdict.state == TODO and reason in verdict.reason, (reason, verdict)
    assert judge_nvme("disks 0 0\n", MP).state == SKIP


def test_venv_judge():
    ok = ("python 3.11\npip 23.0.1\npip-script #!/home/gpuctl/venv/bin/python3.11\n"
          "writable yes\n")
    assert judge_venv(ok, S).state == DONE
    assert "no virtualenv" in judge_venv("venv missing\npip-script \n", S).reason
    assert "no working pip" in judge_venv(ok.replace("pip 23.0.1", "pip-broken "
                                                     "ModuleNotFoundError"), S).reason
    assert "python is 3.10" in judge_venv(ok.replace("3.11\n", "3.10\n", 1), S).reason
    assert "not writable" in judge_venv(ok.replace("writable yes\n", ""), S).reason
    with_reqs = ProvisionSettings(login_user="gpuctl", python="3.11", requirements=("a==1", "b"))
    verdict = judge_venv(ok + "req-ok a==1\nreq-import b b\n", with_reqs)
    assert verdict.state == TODO and verdict.data["broken"] == ["b"]
    assert judge_venv(ok + "req-ok a==1\nreq-ok b\n", with_reqs).state == DONE
    assert parse_base("base 3.11\nvenv-module ok\n") == ("3.11", True)
    assert parse_base("base 3.11\nModuleNotFoundError: No module named 'ensurepip'\n") == ("3.11", False)
    assert parse_base("sh: 1: python3.12: not found\n") == (None, False)


def _file_line(step, path):
    content, mode = step._wanted(S)[path]
    return "file " + checks.file_line(path, content, mode)


def test_cron_files_need_their_bytes_their_mode_and_cron():
    step = ShutdownCronStep()
    good = _file_line(step, SHUTDOWN_CRON) + "\ncron installed\n"
    judge = step.check(S).judge
    assert judge(good).state == DONE
    assert judge(good.replace(" 644:", " 666:")).state == TODO
    assert judge(good.replace("cron installed\n", "")).reason == "cron is not installed"
    assert "not enabled" in judge(good + "systemd disabled\n").reason
    assert judge(good + "systemd enabled\n").state == DONE
    watchdog = IdleWatchdogStep()
    lines = "\n".join(_file_line(watchdog, p) for p in watchdog._wanted(S))
    assert watchdog.check(S).judge(lines + "\ncron installed\npython3 ok\n").state == DONE
    assert "python3" in watchdog.check(S).judge(lines + "\ncron installed\n").reason


def test_timezone_judge():
    judge = TimezoneStep().check(S).judge
    ok = "localtime /usr/share/zoneinfo/Asia/Tokyo\nzonefile ok\ntimezone Asia/Tokyo\n"
    assert judge(ok).state == DONE
    assert judge(ok.replace("zonefile ok\n", "")).state == TODO
    assert judge(ok.replace("timezone Asia/Tokyo", "timezone Etc/UTC")).state == TODO


def test_gpu_judges():
    smi = "smi NVIDIA L4, 535.183.01, 23034, 0\n"
    nvcc = "nvcc Cuda compilation tools, release 12.4, V12.4.131\n"
    assert DriverStep().check(S).judge("").state == SKIP
    assert DriverStep(check_only_without_gpu=False).check(S).judge("").state == TODO
    assert DriverStep().check(S).judge("gpu yes\n" + smi).state == DONE
    assert DriverStep().check(S).judge("gpu yes\n" + smi.replace("535", "470")).state == TODO
    assert CudaStep().check(S).judge("gpu yes\n" + nvcc).state == DONE
    assert CudaStep().check(S).judge("gpu yes\n" + nvcc.replace("12.4", "12.1")).state == TODO
    assert VerifyStep().check(S).judge("gpu yes\n" + smi + nvcc).state == DONE
    assert "sees no GPU" in VerifyStep().check(S).judge("gpu yes\n" + nvcc).reason
    assert VerifyStep().check(S).judge("").state == SKIP


def _run_batch_locally(snippets: dict[str, str], nonce: str) -> dict[str, str]:
    script = checks.batch_script({k: Check(v, lambda t: Verdict(DONE, t)) for k, v in
                                  snippets.items()}, nonce)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout
    return checks.split_answers(out, nonce)


def test_batch_keeps_answers_apart_even_when_a_snippet_exits_or_fails():
    answers = _run_batch_locally({"a": "echo one; exit 3", "b": "set -e; false; echo never",
                                  "c": "echo '@@fake c'; echo two", "d": "printf no-newline"},
                                 "n0nce")
    assert answers == {"a": "one\n", "b": "", "c": "@@fake c\ntwo\n", "d": "no-newline\n"}


def test_a_batch_cut_off_gives_no_verdict_for_the_step_it_was_in():
    text = "@@n a\nfine\n\n@@n b\nhalf"
    assert checks.split_answers(text, "n") == {"a": "fine\n"}


LINES = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                 blacklist_characters="\n\r\x00'\\"),
                         max_size=20), max_size=4)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["nvme", "caches", "python", "cuda"]), LINES, min_size=1))
def test_batch_round_trip_returns_each_snippets_own_lines(outputs):
    snippets = {k: "\n".join(f"printf '%s\\n' '{line}'" for line in lines) or "true"
                for k, lines in outputs.items()}
    answers = _run_batch_locally(snippets, "abc123")
    for k, lines in outputs.items():
        assert answers[k] == "".join(line + "\n" for line in lines)


JUDGES = [lambda t: judge_nvme(t, MP), lambda t: judge_venv(t, S), parse_base,
          ShutdownCronStep().check(S).judge, IdleWatchdogStep().check(S).judge,
          TimezoneStep().check(S).judge, DriverStep().check(S).judge,
          CudaStep().check(S).judge, VerifyStep().check(S).judge,
          lambda t: checks.split_answers(t, "x"), checks.keyed]


@settings(max_examples=300)
@given(text=st.text(), which=st.sampled_from(JUDGES))
def test_judges_never_raise_on_any_text(text, which):
    which(text)


@settings(max_examples=200)
@given(st.text())
def test_junk_is_never_done(text):
    """Nothing but the exact answers makes a step done: random text never does."""
    for judge in (lambda t: judge_nvme(t, MP), lambda t: judge_venv(t, S),
                  ShutdownCronStep().check(S).judge, TimezoneStep().check(S).judge):
        assert judge(text).state != DONE
