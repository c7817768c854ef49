"""The progress parser and the figures from it, on recorded training output (tests/data/logs/)
and on whatever hypothesis can throw at it: random bytes, any chunking, cut and interleaved
lines, huge numbers, NaN and infinite losses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuctl.runs.estimate import (Guard, eta_seconds, extra_hours, figures, guard_warning,
                                  hours_text, smoothed, trend)
from gpuctl.runs.progress import MAX_LINE, Progress, ProgressParser, parse_text

LOGS = Path(__file__).parent / "data" / "logs"


def log(name: str) -> bytes:
    return (LOGS / name).read_bytes()


def same(a: Progress, b: Progress) -> bool:
    """Equal, with NaN equal to NaN (a diverged loss is the same in both)."""
    return json.dumps(a.as_dict(), sort_keys=True) == json.dumps(b.as_dict(), sort_keys=True)


def feed_in_chunks(data: bytes, sizes: list[int]) -> ProgressParser:
    parser, pos, i = ProgressParser(), 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        parser.feed(data[pos:pos + size])
        pos, i = pos + size, i + 1
    return parser


# --- recorded output -----------------------------------------------------------------------

def test_users_md_lines_verbatim():
    p = parse_text(log("users_md_snippet.log"))
    assert (p.step, p.total_steps) == (200, 2515)
    assert p.loss == 8.6182 and p.learning_rate == pytest.approx(8.809389787307027e-06)
    assert p.eval_loss == 0.7646484375 and p.epoch == 0.08
    assert p.elapsed_seconds == 46 * 60 + 16 and p.remaining_seconds == 9 * 3600 + 60 + 34
    assert p.seconds_per_step == 14.04
    assert (p.overflows, p.loss_scale) == (1, 32768.0)
    assert p.eval_metrics["eval_runtime"] == 38.6124
    assert p.malformed == 0 and not p.finished


def test_trainer_run_in_progress_with_tqdm_rewrites_and_an_eval_bar():
    p = parse_text(log("trainer_a100_lora.log"))
    # The eval bar (203 batches) is not mistaken for training progress.
    assert (p.step, p.total_steps) == (230, 2515)
    assert p.remaining_seconds == 8 * 3600 + 54 * 60 + 41
    assert len(p.losses) == 9 and p.losses[0] == [25, pytest.approx(8.0169, abs=0.1)]
    assert [point[0] for point in p.losses] == list(range(25, 230, 25))
    assert p.eval_losses == [[200, 0.7646484375]]
    f = figures(p, price_per_hour=1.65)
    assert f["loss_trend"] == "down"
    assert f["smoothed_loss"] > f["loss"]  # the EMA lags a falling loss
    assert f["eta_seconds"] == p.remaining_seconds
    assert f["cost_to_complete_usd"] == pytest.approx(p.remaining_seconds / 3600 * 1.65, abs=1e-4)
    assert f["cost_so_far_usd"] == pytest.approx((53 * 60 + 49) / 3600 * 1.65, abs=1e-4)


def test_deepspeed_zero2_finished_run():
    p = parse_text(log("deepspeed_zero2_finished.log"))
    assert p.finished and p.step == p.total_steps == 120
    assert p.overflows == 4 and p.loss_scale == 4096.0 and p.skipped_steps == 4
    assert p.train_loss is not None
    f = figures(p, price_per_hour=2.0)
    assert f["eta_seconds"] == 0 and f["cost_to_complete_usd"] == 0
    assert f["percent"] == 100.0


def test_interleaved_ranks_and_a_truncated_tail():
    p = parse_text(log("interleaved_ranks.log"))
    assert (p.step, p.total_steps) == (28, 400)
    # The whole dict inside the interleaved line is read; its cut-up neighbours are not.
    values = [point[1] for point in p.losses]
    assert values[:3] == [3.1234, 2.9876, 2.7654]
    assert 3.0 not in values and 2.8 not in values and 3.0112 not in values
    assert math.isnan(values[-1]) and math.isnan(p.loss)
    assert p.overflows == 1
    f = figures(p)
    assert f["loss"] is None and f["loss_finite"] is False
    assert any("nan" in w for w in f["warnings"])
    json.dumps(f, allow_nan=False)  # --json output never holds NaN


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("*.log")))
def test_any_chunking_gives_the_same_result(name):
    data = log(name)
    whole = parse_text(data)
    for sizes in ([1], [7, 3, 1000], [4096]):
        assert same(feed_in_chunks(data, sizes).close(), whole)


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("*.log")))
def test_state_saved_midway_resumes_to_the_same_result(name):
    data = log(name)
    for cut in (1, len(data) // 3, len(data) // 2 + 5, len(data) - 2):
        first = ProgressParser()
        first.feed(data[:cut])
        state = json.loads(json.dumps(first.state_dict()))
        resumed = ProgressParser.from_state(state)
        resumed.feed(data[cut:])
        assert same(resumed.close(), parse_text(data))


def test_snapshot_counts_the_bar_being_drawn_but_keeps_it_pending():
    parser = ProgressParser()
    parser.feed(b"\r 10%|#  | 10/100 [00:10<01:30,  1.00it/s]")
    assert parser.progress.step is None
    assert parser.snapshot().step == 10
    parser.feed(b"\r 20%|## | 20/100 [00:20<01:20,  1.00it/s]")
    assert parser.snapshot().step == 20 and parser.progress.step == 10


def test_truncated_dict_is_not_half_read():
    parser = ProgressParser()
    parser.feed(b"{'loss': 1.5, 'learning_rate': 1e-05, 'epoch': 0.1}\n{'loss': 1.4")
    assert parser.snapshot().loss == 1.5  # the cut dict stays pending
    parser.feed(b"2, 'epoch': 0.2}\n")
    assert parser.progress.loss == 1.42


@pytest.mark.parametrize("line, step, total, sps", [
    ("100%|##########| 1000/1000 [01:40<00:00,  9.98it/s]", 1000, 1000, 1 / 9.98),
    ("  0%|          | 0/50 [00:00<?, ?it/s]", 0, 50, None),
    (" 45%|####5     | 450/1000 [00:30<00:36, 15.00it/s, loss=1.23, v_num=0]", 450, 1000, 1 / 15),
    (" 12%|#2        | 1.20k/10.0k [1:00:00<7:20:00,  3.00s/it]", 1200, 10000, 3.0),
    ("Epoch 0:  50%|#####     | 5/10 [00:05<00:05,  1.00step/s]", 5, 10, 1.0),
])
def test_tqdm_variants(line, step, total, sps):
    p = parse_text(line + "\n")
    assert (p.step, p.total_steps) == (step, total)
    assert p.seconds_per_step == (pytest.approx(sps) if sps else None)


def test_postfix_loss_is_used_only_without_trainer_dicts():
    p = parse_text(" 45%|####5 | 450/1000 [00:30<00:36, 15.00it/s, loss=1.23]\n")
    assert p.loss == 1.23 and p.losses == [[450, 1.23]]
    p = parse_text("{'loss': 2.0, 'epoch': 0.1}\n 45%|####5 | 450/1000 [00:30<00:36, 15.00it/s, loss=1.23]\n")
    assert p.loss == 2.0


def test_eval_bar_named_by_its_description_is_not_training():
    p = parse_text(" 10%|#  | 10/100 [00:10<01:30,  1.00it/s]\n"
                   "Evaluating:  50%|#####     | 100/200 [00:05<00:05, 20.00it/s]\n")
    assert (p.step, p.total_steps) == (10, 100)


def test_unknown_lines_and_config_dicts_are_ignored():
    p = parse_text("hello world\n{'lora_r': 32, 'target_modules': 'q_proj'}\n"
                   "Some weights were not initialized: {'score.weight'}\n"
                   "50% of something | 3/4 done\n")
    assert p.step is None and p.loss is None and p.losses == []


def test_deepspeed_step_line_gives_the_step_when_no_bar():
    p = parse_text("[Rank 0] step=300, skipped=2, lr=[1e-05], mom=[(0.9, 0.999)]\n"
                   "Reducing dynamic loss scale from 1024 to 512\n")
    assert (p.step, p.skipped_steps, p.loss_scale) == (300, 2, 512.0)


def test_quoted_numbers_and_json_style_dicts():
    p = parse_text('{"loss": "1.25", "eval_loss": 1.5, "epoch": 1}\n')
    assert p.loss == 1.25 and p.eval_loss == 1.5


def test_overlong_line_is_skipped_without_holding_memory():
    parser = ProgressParser()
    parser.feed(b"x" * (MAX_LINE + 10))
    parser.feed(b"y" * MAX_LINE)
    assert len(parser.state_dict()["pending"]) == 0
    parser.feed(b"{'loss': 1.0}\n{'loss': 0.5}\n")
    assert [pt[1] for pt in parser.progress.losses] == [0.5]  # the first belonged to the long line


def test_damaged_state_starts_over():
    assert ProgressParser.from_state({"version": 99}).progress == Progress()
    assert ProgressParser.from_state({"version": 1, "progress": {"bogus": 1}}).progress == Progress()
    assert ProgressParser.from_state("nonsense").progress == Progress()


# --- properties ------------------------------------------------------------------------------

FRAGMENTS = st.sampled_from([
    b"{'loss': ", b"8.6182", b", 'learning_rate': 1e-05", b", 'epoch': 0.01}", b"\n", b"\r",
    b"  8%|####  | ", b"200/2515 ", b"[46:16<9:01:34, 14.04s/it]", b"***** Running Evaluation *****",
    b"{'eval_loss': 0.76}", b"OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768.0",
    b"nan", b"inf", b"-inf", b"1e400", b"9" * 40, b"{", b"}", b"'", b":", b",", b"|", b"%", b"\xff\xfe",
    "█".encode(), b"Total optimization steps = 1,000", b"step=5, skipped=1", b"?it/s]", b"loss=nan",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(FRAGMENTS, st.binary(max_size=40)), max_size=60),
       st.lists(st.integers(1, 50), min_size=1, max_size=5))
def test_parser_never_raises_and_chunking_never_matters(parts, sizes):
    data = b"".join(parts)
    whole = parse_text(data)
    chunked = feed_in_chunks(data, sizes).close()
    assert same(chunked, whole)
    f = figures(whole, price_per_hour=1.65, guards=[Guard("run limit", 3600, "deletes the VM")])
    json.dumps(f, allow_nan=False)
    for key in ("step", "total_steps", "loss", "eval_loss", "eta_seconds", "cost_to_complete_usd"):
        assert key in f
    if f["eta_seconds"] is not None:
        assert f["eta_seconds"] >= 0


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 10**18),
       st.integers(1, 10**18))
def test_extreme_numbers(loss, n, total):
    text = f"{{'loss': {loss!r}, 'epoch': 0.5}}\n {n}/{total} x\n 5%|#| {n}/{total} [00:01<00:02, 1.0it/s]\n"
    p = parse_text(text)
    assert (p.loss == loss) or (math.isnan(loss) and math.isnan(p.loss))
    json.dumps(figures(p, price_per_hour=1e9), allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 400))
def test_state_round_trip_at_any_cut(data, cut):
    first = ProgressParser()
    first.feed(data[:cut])
    resumed = ProgressParser.from_state(json.loads(json.dumps(first.state_dict())))
    resumed.feed(data[cut:])
    assert same(resumed.close(), parse_text(data))


# --- figures ---------------------------------------------------------------------------------

def test_smoothing_and_trend():
    assert smoothed([]) is None and smoothed([float("nan")]) is None
    assert smoothed([2.0]) == pytest.approx(2.0)  # bias-corrected: no pull towards zero
    falling = [10 - i * 0.5 for i in range(12)]
    assert trend(falling) == "down" and trend(falling[::-1]) == "up"
    assert trend([1.0] * 10) == "flat" and trend([1.0, 2.0]) is None


def test_eta_from_rate_when_tqdm_gave_no_estimate_and_staleness_is_subtracted():
    p = Progress(step=100, total_steps=1100, seconds_per_step=2.0)
    assert eta_seconds(p) == 2000
    assert eta_seconds(p, since_update=500) == 1500
    assert eta_seconds(Progress(step=100, total_steps=1100, remaining_seconds=60), 100) == 0
    assert eta_seconds(Progress()) is None


def test_guard_warning_says_how_much_to_extend():
    guard = Guard("run limit", 6 * 3600, "deletes the VM", "`gpuctl extend a100 --hours {hours}`")
    first, text = guard_warning(9 * 3600, [guard, Guard("daily stop", 8 * 3600, "stops the VM")])
    assert first is guard
    assert text == ("needs ~9 h, the VM is capped at ~6 h (run limit, then it deletes the VM): "
                    "`gpuctl extend a100 --hours 4`")
    assert guard_warning(5 * 3600, [guard]) == (guard, None)
    assert guard_warning(None, [guard]) == (guard, None)
    assert guard_warning(3600, []) == (None, None)


def test_hours_text_and_extra_hours():
    assert hours_text(30 * 60) == "~30 min" and hours_text(2.5 * 3600) == "~2.5 h"
    assert hours_text(11.4 * 3600) == "~11 h" and hours_text(9 * 3600) == "~9 h"
    assert extra_hours(9 * 3600, 6 * 3600) == 4 and extra_hours(6 * 3600 + 60, 6 * 3600) == 1


def test_figures_warn_through_the_guard_and_cost_to_complete():
    p = Progress(step=200, total_steps=2515, remaining_seconds=9 * 3600, elapsed_seconds=3600)
    guard = Guard("run limit", 6 * 3600, "deletes the VM", "`gpuctl extend a100 --hours {hours}`")
    f = figures(p, price_per_hour=1.65, guards=[guard], run_seconds=4000)
    assert f["cost_to_complete_usd"] == pytest.approx(9 * 1.65)
    assert f["cost_so_far_usd"] == pytest.approx(4000 / 3600 * 1.65, abs=1e-4)
    assert f["guard"]["kind"] == "run limit"
    assert f["warnings"][0].endswith("`gpuctl extend a100 --hours 4`")
    stopped = figures(p, price_per_hour=1.65, guards=[guard], running=False)
    assert stopped["eta_seconds"] is None and stopped["warnings"] == []


def test_real_transformers5_output_from_the_lora_example():
    """Recorded from examples/lora/train_lora.py --tiny on a CPU (transformers 5, peft): floats
    quoted as strings, nested tqdm bars with cursor-up escapes, a separate eval bar."""
    p = parse_text(log("transformers5_tiny_lora_cpu.log"))
    assert (p.step, p.total_steps) == (60, 60) and p.finished
    assert [pt[0] for pt in p.losses] == list(range(5, 61, 5))
    assert p.losses[0][1] > p.losses[-1][1]
    assert [pt[0] for pt in p.eval_losses] == [20, 40, 60]
    assert p.train_loss == pytest.approx(4.571)
    assert figures(p)["loss_trend"] == "down"


# --- the fast parser equals the line-at-a-time one it replaced ---------------------------------
# gpuctl.runs.progress_reference is the parser as it was before it learned to skip redundant
# bars and patterns that cannot match; every result (state included) must be the same.

from gpuctl.runs import progress_reference  # noqa: E402


def both(data: bytes, sizes: list[int] | None = None):
    fast, slow = ProgressParser(), progress_reference.ProgressParser()
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        fast.feed(data[pos:pos + size])
        slow.feed(data[pos:pos + size])
        assert fast.state_dict() == slow.state_dict() or \
            json.dumps(fast.state_dict(), sort_keys=True) == json.dumps(slow.state_dict(), sort_keys=True)
        pos, i = pos + size, i + 1
    assert same(fast.snapshot(), slow.snapshot())
    return fast.close(), slow.close()


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("*.log")))
@pytest.mark.parametrize("sizes", [None, [1], [7, 300], [4096]])
def test_recorded_logs_parse_as_the_reference_does(name, sizes):
    fast, slow = both(log(name), sizes)
    assert same(fast, slow)
    assert fast.lines > 0


def bar(rng_n, total, desc="", elapsed="00:10", remaining="00:20", rate="1.5s/it", postfix=""):
    lead = f"{desc}: " if desc else ""
    pct = min(100, rng_n * 100 // max(total, 1))
    return f"{lead}{pct:3d}%|██  | {rng_n}/{total} [{elapsed}<{remaining}, {rate}{postfix}]"


TOTALS = st.sampled_from([10, 50, 2515])
BAR = st.builds(
    bar, st.integers(0, 120), TOTALS,
    desc=st.sampled_from(["", "Epoch 1", "Evaluating", "train", "valid"]),
    elapsed=st.sampled_from(["00:10", "?", "1:02:03", "00:11"]),
    remaining=st.sampled_from(["00:20", "?", "9:01:34", "00:00"]),
    rate=st.sampled_from(["1.5s/it", "?it/s", "3.2it/s", "0.00s/it", " 2.0s/it"]),
    postfix=st.sampled_from(["", ", loss=2.5", ", loss=nan", ", train_loss=1e400"]))
DICT = st.builds(
    lambda pairs: "{" + ", ".join(f"'{k}': {v}" for k, v in pairs) + "}",
    st.lists(st.tuples(st.sampled_from(["loss", "eval_loss", "learning_rate", "epoch", "step",
                                        "grad_norm", "train_runtime", "train_loss", "eval_acc"]),
                       st.sampled_from(["1.5", "0.01", "nan", "inf", "1e-05", "-2", "7",
                                        "'x'", "None", "1e400"])), min_size=1, max_size=5))
OTHER = st.sampled_from([
    "***** Running Evaluation *****", "***** Running training *****",
    "  Total optimization steps = 50", "  Total optimization steps = 2,515",
    "[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768.0",
    "Grad overflow on iteration 7", "Reducing dynamic loss scale from 1024 to 512",
    "step=12, skipped=2", "{'loss': 1.0, 'epoch'", "plain text", "", "   ", "{}", "%|", "50%|",
])
LINE = st.one_of(BAR, BAR, BAR, DICT, OTHER, st.text(max_size=30))
END = st.sampled_from(["\r", "\n", "\r\n", "\r\r"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(LINE, END, st.lists(BAR, max_size=3)), max_size=40),
       st.lists(st.integers(1, 200), min_size=1, max_size=4), st.booleans())
def test_generated_logs_parse_as_the_reference_does(lines, sizes, in_chunks):
    """Realistic logs: runs of bars (the fast path) broken by dicts, evals and DeepSpeed lines,
    bars glued several to a line, in any chunking."""
    data = "".join(text + end + "".join(b + "\r" for b in bars) for text, end, bars in lines)
    fast, slow = both(data.encode("utf-8"), sizes if in_chunks else None)
    assert same(fast, slow)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(FRAGMENTS, st.binary(max_size=40)), max_size=60),
       st.lists(st.integers(1, 50), min_size=1, max_size=5))
def test_any_bytes_parse_as_the_reference_does(parts, sizes):
    fast, slow = both(b"".join(parts), sizes)
    assert same(fast, slow)


def test_long_lines_with_many_bar_marks_stay_fast():
    """A bar search starts near each "%|", not at every character of a 60 KB line."""
    import time

    line = ("x" * 300 + "%|" + "y" * 300) * 100
    started = time.monotonic()
    p = parse_text((line + "\n") * 20)
    assert time.monotonic() - started < 2
    assert p.lines == 20 and p.step is None


BAR_ALPHABET = st.sampled_from(list(":  1234567890%|a█/[]<,.s?itk") + ["\u00a0", "\u0663", "it/s]",
                                                                     "s/it]", "%|", "00:01<"])


@settings(max_examples=1000, deadline=None)
@given(st.lists(BAR_ALPHABET, max_size=80).map("".join), st.lists(BAR, max_size=3))
def test_bar_finder_equals_finditer(noise, bars):
    """_bars tries one start per "%|"; it must find exactly what TQDM.finditer finds."""
    from gpuctl.runs.progress import TQDM, _bars

    for text in (noise, noise.join(bars), "".join(bars) + noise, noise + ": " + "".join(bars)):
        assert [m.span() for m in _bars(text)] == [m.span() for m in TQDM.finditer(text)]
