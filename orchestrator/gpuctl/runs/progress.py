"""Progress from training output, parsed incrementally: feed it bytes as they arrive.

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

Speed (a 1e6-record log in a few seconds, bench/progress.py): lines are split in one C call,
a pattern runs only on lines holding the text it needs, runs of bar-only lines are read from
their end, and a bar is looked for only where it can start. The results are those of the
line-at-a-time parser kept as progress_reference.py, which the tests hold this one to.
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
# The Trainer's dicts as Python prints them: quoted keys, plain numbers, ": " and ", ". Whatever
# this matches, DICT_STRICT matches too and PAIR finds the same pairs (keys hold no ": " or
# ", ", and a number followed by "," or "}" is the one PAIR's greedy number takes).
_NUMBER_PAIR = rf"'[A-Za-z_][\w./-]{{0,100}}': {_NUMBER}"
NUMBERS_DICT = re.compile(rf"\{{{_NUMBER_PAIR}(?:, {_NUMBER_PAIR})*\}}")
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
_CR_TO_LF = bytes.maketrans(b"\r", b"\n")
# Any of the keywords of the patterns other than bars and dicts (see _OTHERS).
_MAYBE_OTHER = re.compile(rb"Running|Total optimization steps|OVERFLOW!|overflow|"
                          rb"educing dynamic loss scale from|skipped=")


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
        # One C-level split instead of a regex match per line: \r and \n both end a line.
        lines = buf.translate(_CR_TO_LF).split(b"\n")
        rest = lines.pop()
        if lines and self._skipping:
            self._skipping = False
            lines[0] = b""  # the tail of an over-long line: dropped
        # What each line may hold (see _kind), worked out in one comprehension since this runs
        # once per line of the log; runs of bar-only lines go to _bar_run.
        other = _MAYBE_OTHER.search
        kinds = [(b"%|" in raw) | (b"{" in raw) << 1 | (other(raw) is not None) << 2
                 for raw in lines]
        line, i, count = self._line, 0, len(lines)
        while i < count:
            if kinds[i] == BAR:
                j = i + 1
                while j < count and (kinds[j] == BAR or (kinds[j] == OTHER
                                                         and _deepspeed_only(lines[j]))):
                    j += 1
                self._bar_run(lines[i:j], kinds[i:j])
                i = j
            else:
                line(lines[i], kinds[i])
                i += 1
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
    def _line(self, raw: bytes, kind: int | None = None) -> None:
        if not raw.strip():
            return
        self.progress.lines += 1
        kind = _kind(raw) if kind is None else kind
        if not kind:
            return
        bar, brace, other = kind & BAR, kind & BRACE, kind & OTHER
        text = raw.decode("utf-8", "replace")
        if kind == BRACE:  # a Trainer dict line: one pattern, already in order
            if len(text) <= 8194 and NUMBERS_DICT.fullmatch(text):  # the line is the dict
                self._apply_dict(_numbers_dict(text))
                return
            for m in DICT_CANDIDATE.finditer(text):
                if ":" in m.group(0):
                    try:
                        self._dict(m)
                    except (ValueError, OverflowError, TypeError):
                        self.progress.malformed += 1
            return
        events = []
        if bar:
            for m in _bars(text):
                events.append((m.start(), ProgressParser._bar, m))
        if brace:
            for m in DICT_CANDIDATE.finditer(text):
                if ":" in m.group(0):
                    events.append((m.start(), ProgressParser._dict, m))
        if other:
            for keyword, pattern, handler in _OTHERS:
                if keyword in raw:
                    for m in pattern.finditer(text):
                        events.append((m.start(), handler, m))
        if len(events) > 1:
            events.sort(key=_at)
        for _, handler, match in events:
            try:
                handler(self, match)
            except (ValueError, OverflowError, TypeError):
                self.progress.malformed += 1

    # -- handlers -----------------------------------------------------------------------------
    def _bar(self, m: re.Match) -> bool:
        """Read one bar; True when it was taken as the training bar."""
        counts = _bar_counts(m)
        if counts is None:
            return False
        n, total = counts
        p = self.progress
        if p.total_steps is not None and self._train_total is None:
            self._train_total = p.total_steps
        if self._train_total is None:
            if self._in_eval:
                return False
            self._train_total = total
        elif total != self._train_total:
            return False  # an eval or data-loading bar
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
        rate = _seconds_per_step(m)
        if rate is not None:
            p.seconds_per_step = rate
        loss = POSTFIX_LOSS.search(m.group("postfix") or "")
        if loss and self._dict_losses == 0:
            value = float(loss.group(1))
            p.loss = value
            if not p.losses or p.losses[-1][0] != n:
                _append(p.losses, [n, value], 0)
        return True

    # -- runs of bar lines ------------------------------------------------------------------
    # tqdm redraws its bar many times per step, so most of a training log is consecutive lines
    # holding nothing but a bar. Once one of them has been taken as the training bar, a later
    # one only overwrites what the earlier ones set (step, remaining; elapsed and rate when it
    # has them), so a run of such lines is read from its end and stops at the first bar that
    # settles everything. The outcome is the same as reading every bar in order.

    def _bar_lines(self, raw: bytes) -> bool:
        """Every bar of one bar-only line, in order, as _line would; True if one was taken."""
        taken = False
        for m in _bars(raw.decode("utf-8", "replace")):
            try:
                taken = self._bar(m) or taken
            except (ValueError, OverflowError, TypeError):
                self.progress.malformed += 1
        return taken

    def _bar_run(self, run: list[bytes], kinds: list[int]) -> None:
        """A run of bar-only lines, with DeepSpeed lines among them: those only count overflows
        and skipped steps (the step too, but only while no training bar is known), so once the
        training total is known they are read apart from the bars without changing anything."""
        if len(run) == 1 or self._train_total is None or (
                self._dict_losses == 0 and any(b"loss=" in raw for raw in run)):
            # One line (nothing to skip), no training bar known yet (the first one taken
            # decides it), or bars that carry the loss (each adds a point): every line, in order.
            for raw, kind in zip(run, kinds):
                self._line(raw, kind)
            return
        if OTHER in kinds:
            for raw, kind in zip(run, kinds):
                if kind == OTHER:
                    self._line(raw, kind)
            run = [raw for raw, kind in zip(run, kinds) if kind == BAR]
        self.progress.lines += len(run)
        try:
            if self._unplaced != [0, 0] or self._in_eval:
                first = self._first_bar(run)  # the first bar taken places the points before it
                if first is None:
                    return
            latest = self._latest_bar(run)
        except (ValueError, OverflowError, TypeError):
            for raw in run:  # counted as malformed where it happens, as _line would
                self._bar_lines(raw)
            return
        if latest is None:
            return
        p = self.progress
        if self._unplaced != [0, 0] or self._in_eval:
            for series, count in zip((p.losses, p.eval_losses), self._unplaced):
                for point in series[len(series) - count:] if count else []:
                    point[0] = max(point[0], first)
            self._unplaced, self._in_eval = [0, 0], False
        (p.step, p.total_steps), p.remaining_seconds, elapsed, rate = latest
        if elapsed is not None:
            p.elapsed_seconds = elapsed
        if rate is not None:
            p.seconds_per_step = rate

    def _first_bar(self, lines: list[bytes]) -> int | None:
        """The step of the first bar in `lines` taken as the training bar (the total is known)."""
        for raw in lines:
            for m in _bars(raw.decode("utf-8", "replace")):
                counts = _bar_counts(m)
                if counts is not None and counts[1] == self._train_total:
                    return counts[0]
        return None

    def _latest_bar(self, lines: list[bytes]):
        """((step, total), remaining, elapsed, rate) of the last training bar in `lines`, with
        elapsed and rate from the last bar that had them; None if no bar there is taken."""
        found = None
        elapsed = rate = None
        for raw in reversed(lines):
            for m in reversed(list(_bars(raw.decode("utf-8", "replace")))):
                counts = _bar_counts(m)
                if counts is None or counts[1] != self._train_total:
                    continue
                elapsed_text, remaining_text = m.group("elapsed", "remaining")
                if found is None:
                    found = (counts, _clock(remaining_text))
                if elapsed is None:
                    elapsed = _clock(elapsed_text)
                if rate is None:
                    rate = _seconds_per_step(m)
                if elapsed is not None and rate is not None:
                    return found + (elapsed, rate)
        return None if found is None else found + (elapsed, rate)

    def _dict(self, m: re.Match) -> None:
        text = m.group(0)
        if NUMBERS_DICT.fullmatch(text):  # the Trainer's own repr: split it, no regex per pair
            self._apply_dict(_numbers_dict(text))
            return
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



# (a byte string every match contains, pattern, handler) for the patterns other than bars and
# dicts, in the order their events tie (as the reference parser lists them).
_OTHERS = ((b"Running", RUNNING_EVAL, ProgressParser._eval_starts),
           (b"Running training", RUNNING_TRAIN, ProgressParser._train_starts),
           (b"Total optimization steps", TOTAL_STEPS, ProgressParser._total_steps),
           (b"OVERFLOW!", DS_OVERFLOW, ProgressParser._overflow),
           (b"overflow", DS_OVERFLOW_OLD, ProgressParser._overflow_old),
           (b"educing dynamic loss scale from", DS_LOSS_SCALE, ProgressParser._loss_scale),
           (b"skipped=", DS_STEP, ProgressParser._ds_step))


# What a line may hold, from the ASCII text each pattern cannot match without (checked on the
# bytes: UTF-8 decoding never makes or removes an ASCII byte): a pattern runs only on lines that
# have its text. That is what makes a 1e6-record log fast; which patterns match, and where, is
# unchanged.
BAR, BRACE, OTHER = 1, 2, 4


def _kind(raw: bytes) -> int:
    return (b"%|" in raw) | (b"{" in raw) << 1 | (_MAYBE_OTHER.search(raw) is not None) << 2


def _deepspeed_only(raw: bytes) -> bool:
    """For an OTHER line: its only keywords are DeepSpeed's, whose handlers touch overflows,
    loss scale and skipped steps, never what a bar sets once the training total is known (the
    ones that do, Running... and Total optimization steps, are not there). See _bar_run."""
    return b"Running" not in raw and b"Total optimization steps" not in raw


def _numbers_dict(text: str) -> dict[str, float]:
    """The values of a dict NUMBERS_DICT matched, as PAIR/FLOAT_TEXT would read them."""
    return {key[1:-1]: float(value)
            for key, value in (pair.split(": ", 1) for pair in text[1:-1].split(", "))}


def _at(event) -> int:
    return event[0]


def _bars(text: str):
    """TQDM.finditer(text), trying one start position per "%|" instead of every position of
    the line (each of which costs TQDM a 200-character look for a description's colon: a long
    line took seconds). A match holds the first "%|" after its start, since a description and
    the digits before "%" cannot contain "%" or "|"; _bar_start finds the one place a match
    through a given "%|" can start, and if TQDM does not match there it matches nowhere
    through that "%|" (what follows "%|" is the same whichever start). The equality with
    finditer is tested on generated lines."""
    start = 0  # matches begin here or later: the end of the last one
    q = text.find("%|")
    while q >= 0:
        at = _bar_start(text, q, start)
        m = TQDM.match(text, at) if at is not None else None
        if m is not None:
            yield m
            start = m.end()
            q = text.find("%|", start)
        else:
            q = text.find("%|", q + 1)


def _bar_start(text: str, q: int, start: int) -> int | None:
    """Where the leftmost TQDM match through the "%|" at q would start (not before `start`):
    at the description before "NAME: 42%|" when there is a colon, then spaces, then 1-3
    digits before q; else at the digits themselves; None without a digit before q."""
    d, lowest = q, max(start, q - 4)
    while d > lowest and text[d - 1].isdecimal():  # re's \d is str.isdecimal
        d -= 1
    if d == q:
        return None
    if q - d <= 3:
        w = d
        while w > start and text[w - 1].isspace():  # re's \s is str.isspace
            w -= 1
        colon = w - 1
        if colon >= start and text[colon] == ":":
            lo = max(start, colon - 200)  # the description: up to 200 characters, no % or |
            return max(lo, text.rfind("|", lo, colon) + 1, text.rfind("%", lo, colon) + 1)
    return max(q - 3, d)


def _bar_counts(m: re.Match) -> tuple[int, int] | None:
    """(n, total) of a bar that can be the training bar by itself (a sane count, not an eval
    bar); whether it is depends on the parser's state."""
    n_text, total_text, desc = m.group("n", "total", "desc")
    # At most 15 digits (the pattern's bound): int() of the digits equals _count's float route.
    n = int(n_text) if n_text.isdecimal() else _count(n_text)
    total = int(total_text) if total_text.isdecimal() else _count(total_text)
    if total <= 0 or n > total * 2:
        return None
    if desc:
        desc = desc.lower()
        if any(word in desc for word in EVAL_WORDS):
            return None
    return n, total


def _seconds_per_step(m: re.Match) -> float | None:
    rate = m.group("rate")
    if rate == "?":
        return None
    value = float(rate)
    unit = m.group("unit")
    if unit.startswith("s/") and value > 0:
        return value
    if unit.endswith("/s") and value > 0:
        return 1.0 / value
    return None


def _count(text: str) -> int:
    suffix = text[-1] if text[-1] in _SCALE else ""
    number = float(text[:-1] if suffix else text)
    return int(number * _SCALE[suffix])


def _clock(text: str) -> float | None:
    """tqdm's '46:16' or '9:01:34' (hours can exceed 24) -> seconds; '?' -> None."""
    if text == "?" or not text:
        return None
    parts = text.split(":")
    if len(parts) == 2:  # the usual MM:SS, without the loop
        minutes, secs = parts
        return float(int(minutes) * 60 + int(secs)) if minutes.isdigit() and secs.isdigit() else None
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
