"""The progress parser as it was before it was made fast (issue 15), frozen: the oracle that
gpuctl.runs.progress must agree with, field for field and state for state
(tests/test_runs_progress.py), and the baseline bench/progress.py times it against. Nothing
in gpuctl imports it. Do not change it; change progress.py and keep them equal.

Progress from training output, parsed incrementally: feed it bytes as they arrive.

What it reads (everything else is ignored):

* Hugging Face Trainer log dicts: `{'loss': 8.6182, 'learning_rate': 8.8e-06, 'epoch': 0.01}`,
  eval dicts (`eval_loss`, `eval_*`), the final `{'train_runtime': ..., 'train_loss': ...}`,
  and the preamble line `Total optimization steps = 2,515`;
* tqdm bars: `  8%|███     | 200/2515 [46:16<9:01:34, 14.04s/it]` (s/it or it/s, `?` rates,
  k/M-scaled counts, a `loss=` postfix), which tqdm rewrites in place with `\\r`;
* DeepSpeed: `OVERFLOW! ... Attempted loss scale: 65536, reducing to 32768.0`,
  `Grad overflow on iteration N`, `step=N, skipped=M`.

Lines end at `\\n` or `\\r`. A line without its end yet (tqdm's current bar, a half-written
dict) is kept and read again when more bytes come; `snapshot()` also peeks at it, so the bar
on screen right now counts. A dict must be whole and well formed: an interleaved or truncated
one is counted as malformed and skipped, never half-read into a wrong loss. Nothing here
raises on any input. The state round-trips through JSON (`state_dict` / `from_state`), so a
log can be parsed once and then only its new bytes.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass, field

STATE_VERSION = 1
MAX_LINE = 64 * 1024  # a "line" longer than this is garbage (or a binary dump): skipped
MAX_POINTS = 20_000  # a curve longer than this is thinned to every other point
EVAL_WORDS = ("eval", "valid", "predict", "test")

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FLOATISH = rf"(?:{_NUMBER}|[-+]?(?:nan|NaN|NAN|inf|Inf|INF|infinity|Infinity))"
_VALUE = rf"(?:{_FLOATISH}|'[^'\\\r\n]*'|\"[^\"\\\r\n]*\"|None|True|False|null|true|false)"
_KEY = r"(?:'[A-Za-z_][\w./-]{0,100}'|\"[A-Za-z_][\w./-]{0,100}\")"
_PAIR = rf"{_KEY}\s*:\s*{_VALUE}"
DICT_CANDIDATE = re.compile(r"\{[^{}\r\n]{0,8192}\}")
DICT_STRICT = re.compile(rf"\{{\s*{_PAIR}(?:\s*,\s*{_PAIR})*\s*,?\s*\}}")
PAIR = re.compile(rf"({_KEY})\s*:\s*({_VALUE})")
FLOAT_TEXT = re.compile(rf"^{_FLOATISH}$")

_COUNT = r"\d{1,15}(?:\.\d{1,6})?[kMGT]?"
TQDM = re.compile(
    r"(?:(?P<desc>[^\r\n|%]{0,200}?):\s*)?(?P<pct>\d{1,3})%\|[^|\r\n]{0,400}\|\s*"
    rf"(?P<n>{_COUNT})/(?P<total>{_COUNT})\s*"
    r"\[(?P<elapsed>[\d:]{1,20}|\?)<(?P<remaining>[\d:]{1,20}|\?),\s*"
    r"(?P<rate>\d{1,15}(?:\.\d{1,9})?|\?)\s?(?P<unit>[A-Za-z]{0,12}/[A-Za-z]{1,12})"
    r"(?P<postfix>[^\]\r\n]{0,400})\]")
POSTFIX_LOSS = re.compile(rf"(?:^|[\s,])(?:train_)?loss=({_FLOATISH})")
TOTAL_STEPS = re.compile(r"Total optimization steps\s*=\s*([\d,]{1,20})")
RUNNING_EVAL = re.compile(r"\*{3,}\s*Running (?:Evaluation|Prediction)")
RUNNING_TRAIN = re.compile(r"\*{3,}\s*Running training")
DS_OVERFLOW = re.compile(
    rf"OVERFLOW!.{{0,200}}?Attempted loss scale:\s*({_NUMBER}).{{0,50}}?reducing to\s*({_NUMBER})")
DS_OVERFLOW_OLD = re.compile(r"(?:Grad overflow on iteration\s*\d{1,15}|loss scale overflow)")
DS_LOSS_SCALE = re.compile(rf"[Rr]educing dynamic loss scale from\s*{_NUMBER}\s*to\s*({_NUMBER})")
DS_STEP = re.compile(r"\bstep=(\d{1,15}),\s*skipped=(\d{1,15})")
_SCALE = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


@dataclass
class Progress:
    """What the output said so far. Steps are optimizer steps (the Trainer's global step)."""

    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    eval_loss: float | None = None
    eval_metrics: dict[str, float] = field(default_factory=dict)
    elapsed_seconds: float | None = None  # the training bar's elapsed
    remaining_seconds: float | None = None  # the training bar's estimate
    seconds_per_step: float | None = None
    overflows: int = 0  # DeepSpeed fp16 overflows (skipped steps)
    loss_scale: float | None = None
    skipped_steps: int | None = None
    losses: list[list[float]] = field(default_factory=list)  # [step, loss]
    eval_losses: list[list[float]] = field(default_factory=list)  # [step, eval_loss]
    train_loss: float | None = None  # the Trainer's final average
    finished: bool = False  # the final train_runtime dict was seen
    lines: int = 0
    malformed: int = 0  # dicts that were cut off or interleaved, skipped

    def as_dict(self) -> dict:
        return asdict(self)


class ProgressParser:
    def __init__(self) -> None:
        self.progress = Progress()
        self._pending = b""
        self._skipping = False  # inside an over-long line: drop until its end
        self._train_total: int | None = None  # the training bar's total, once known
        self._in_eval = False
        self._dict_losses = 0
        # Points logged since the last training bar: tqdm.write() redraws the bar right after
        # the Trainer's dict, and that redraw shows the step the dict belongs to (the bar drawn
        # before it may lag by tqdm's mininterval).
        self._unplaced = [0, 0]  # [losses, eval_losses] at the end of each series

    # -- feeding ---------------------------------------------------------------------------
    def feed(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        if not data:
            return
        buf = self._pending + data
        start = 0
        for match in re.finditer(rb"[\r\n]", buf):
            if self._skipping:
                self._skipping = False
            else:
                self._line(buf[start:match.start()])
            start = match.end()
        rest = buf[start:]
        if len(rest) > MAX_LINE:
            self._skipping, rest = True, b""
            self.progress.malformed += 1
        self._pending = b"" if self._skipping else rest

    def close(self) -> Progress:
        """End of input: read the unterminated last line too."""
        if self._pending and not self._skipping:
            self._line(self._pending)
        self._pending, self._skipping = b"", False
        return self.progress

    def snapshot(self) -> Progress:
        """Progress including the line still being written (tqdm's current bar)."""
        if not self._pending or self._skipping:
            return copy.deepcopy(self.progress)
        peek = copy.deepcopy(self)
        return peek.close()

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "progress": self.progress.as_dict(),
                "pending": self._pending.decode("latin-1"), "skipping": self._skipping,
                "train_total": self._train_total, "in_eval": self._in_eval,
                "dict_losses": self._dict_losses, "unplaced": list(self._unplaced)}

    @classmethod
    def from_state(cls, state: dict) -> "ProgressParser":
        parser = cls()
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            return parser
        try:
            parser.progress = Progress(**state["progress"])
            parser._pending = str(state.get("pending", "")).encode("latin-1")
            parser._skipping = bool(state.get("skipping"))
            parser._train_total = state.get("train_total")
            parser._in_eval = bool(state.get("in_eval"))
            parser._dict_losses = int(state.get("dict_losses", 0))
            parser._unplaced = [int(n) for n in state.get("unplaced", [0, 0])][:2]
        except (KeyError, TypeError, ValueError, UnicodeEncodeError):
            return cls()
        return parser

    # -- one line -----------------------------------------------------------------------------
    def _line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        self.progress.lines += 1
        text = raw.decode("utf-8", "replace")
        events = []
        for m in TQDM.finditer(text):
            events.append((m.start(), self._bar, m))
        for m in DICT_CANDIDATE.finditer(text):
            if ":" in m.group(0):
                events.append((m.start(), self._dict, m))
        for pattern, handler in ((RUNNING_EVAL, self._eval_starts),
                                 (RUNNING_TRAIN, self._train_starts),
                                 (TOTAL_STEPS, self._total_steps), (DS_OVERFLOW, self._overflow),
                                 (DS_OVERFLOW_OLD, self._overflow_old),
                                 (DS_LOSS_SCALE, self._loss_scale), (DS_STEP, self._ds_step)):
            for m in pattern.finditer(text):
                events.append((m.start(), handler, m))
        events.sort(key=lambda e: e[0])
        for _, handler, match in events:
            try:
                handler(match)
            except (ValueError, OverflowError, TypeError):
                self.progress.malformed += 1

    # -- handlers -----------------------------------------------------------------------------
    def _bar(self, m: re.Match) -> None:
        n, total = _count(m.group("n")), _count(m.group("total"))
        if total <= 0 or n > total * 2:
            return
        desc = (m.group("desc") or "").lower()
        if any(word in desc for word in EVAL_WORDS):
            return
        p = self.progress
        if p.total_steps is not None and self._train_total is None:
            self._train_total = p.total_steps
        if self._train_total is None:
            if self._in_eval:
                return
            self._train_total = total
        elif total != self._train_total:
            return  # an eval or data-loading bar
        self._in_eval = False
        p.step, p.total_steps = n, total
        for series, count in zip((p.losses, p.eval_losses), self._unplaced):
            for point in series[len(series) - count:] if count else []:
                point[0] = max(point[0], n)
        self._unplaced = [0, 0]
        elapsed, remaining = _clock(m.group("elapsed")), _clock(m.group("remaining"))
        if elapsed is not None:
            p.elapsed_seconds = elapsed
        p.remaining_seconds = remaining
        rate = m.group("rate")
        if rate != "?":
            value = float(rate)
            unit = m.group("unit")
            if unit.startswith("s/") and value > 0:
                p.seconds_per_step = value
            elif unit.endswith("/s") and value > 0:
                p.seconds_per_step = 1.0 / value
        loss = POSTFIX_LOSS.search(m.group("postfix") or "")
        if loss and self._dict_losses == 0:
            value = float(loss.group(1))
            p.loss = value
            if not p.losses or p.losses[-1][0] != n:
                _append(p.losses, [n, value], 0)

    def _dict(self, m: re.Match) -> None:
        text = m.group(0)
        if not DICT_STRICT.fullmatch(text):
            if PAIR.search(text):
                self.progress.malformed += 1
            return
        values: dict[str, float] = {}
        for key, raw in PAIR.findall(text):
            raw = raw.strip("'\"")
            if FLOAT_TEXT.match(raw):
                values[key.strip("'\"")] = float(raw)
        self._apply_dict(values)

    def _apply_dict(self, values: dict[str, float]) -> None:
        p = self.progress
        if "epoch" in values:
            p.epoch = values["epoch"]
        step = values.get("step", values.get("global_step"))
        if step is not None and math.isfinite(step) and 0 <= step < 1e15:
            p.step = int(step)
        if "train_runtime" in values or "train_loss" in values:
            p.finished = "train_runtime" in values or p.finished
            if "train_loss" in values:
                p.train_loss = values["train_loss"]
            if p.finished and p.total_steps:
                p.step, p.remaining_seconds = p.total_steps, 0.0
            return
        if "loss" in values:
            self._dict_losses += 1
            p.loss = values["loss"]
            at = p.step if p.step is not None else self._dict_losses
            self._unplaced[0] = _append(p.losses, [at, p.loss], self._unplaced[0])
        if "learning_rate" in values:
            p.learning_rate = values["learning_rate"]
        if "grad_norm" in values:
            p.grad_norm = values["grad_norm"]
        evals = {k: v for k, v in values.items() if k.startswith("eval_")}
        if evals:
            self._in_eval = False
            p.eval_metrics.update(evals)
            if "eval_loss" in evals:
                p.eval_loss = evals["eval_loss"]
                at = p.step if p.step is not None else len(p.eval_losses) + 1
                self._unplaced[1] = _append(p.eval_losses, [at, p.eval_loss], self._unplaced[1])

    def _eval_starts(self, m: re.Match) -> None:
        self._in_eval = True

    def _train_starts(self, m: re.Match) -> None:
        self._in_eval = False

    def _total_steps(self, m: re.Match) -> None:
        total = int(m.group(1).replace(",", "") or "0")
        if total > 0:
            self.progress.total_steps = total
            self._train_total = total

    def _overflow(self, m: re.Match) -> None:
        self.progress.overflows += 1
        self.progress.loss_scale = float(m.group(2))

    def _overflow_old(self, m: re.Match) -> None:
        self.progress.overflows += 1

    def _loss_scale(self, m: re.Match) -> None:
        self.progress.loss_scale = float(m.group(1))

    def _ds_step(self, m: re.Match) -> None:
        p = self.progress
        p.skipped_steps = int(m.group(2))
        if self._train_total is None:  # no tqdm bar: DeepSpeed's own step count is all there is
            p.step = int(m.group(1))


def _count(text: str) -> int:
    suffix = text[-1] if text[-1] in _SCALE else ""
    number = float(text[:-1] if suffix else text)
    return int(number * _SCALE[suffix])


def _clock(text: str) -> float | None:
    """tqdm's '46:16' or '9:01:34' (hours can exceed 24) -> seconds; '?' -> None."""
    if text == "?" or not text:
        return None
    parts = text.split(":")
    if len(parts) > 3 or not all(part.isdigit() for part in parts):
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return float(seconds)


def _append(series: list, point: list, unplaced: int) -> int:
    """Add a point; returns the new count of unplaced points at the end of the series."""
    series.append(point)
    if len(series) > MAX_POINTS:
        last = series[-1]
        del series[1::2]
        if series[-1] is not last:
            series.append(last)
        return 1
    return unplaced + 1


def parse_text(data: bytes | str) -> Progress:
    """Parse a whole log at once."""
    parser = ProgressParser()
    parser.feed(data)
    return parser.close()
