"""Loss curves: a PNG (train loss as a line, eval loss as a line with dots, against step) and a
sparkline for the terminal. Pure Python (zlib + a 5x7 bitmap font), so plotting adds no
dependency and works the same on a laptop and in CI."""

from __future__ import annotations

import math
import struct
import zlib

BLOCKS = "▁▂▃▄▅▆▇█"
WHITE, BLACK, GRID, AXIS = (255, 255, 255), (20, 20, 20), (228, 228, 228), (90, 90, 90)
TRAIN, EVAL = (31, 119, 180), (230, 100, 20)

# 5x7 glyphs, one string of 5 bits per row. Text is drawn upper-case.
_FONT_ROWS = {
    "A": "01110 10001 10001 11111 10001 10001 10001", "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110", "D": "11110 10001 10001 10001 10001 10001 11110",
    "E": "11111 10000 10000 11110 10000 10000 11111", "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111", "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110", "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001", "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001", "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110", "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101", "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110", "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110", "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010", "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100", "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110", "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111", "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010", "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110", "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110", "9": "01110 10001 10001 01111 00001 00010 01100",
    ".": "00000 00000 00000 00000 00000 01100 01100", ",": "00000 00000 00000 00000 01100 00100 01000",
    "-": "00000 00000 00000 11111 00000 00000 00000", "+": "00000 00100 00100 11111 00100 00100 00000",
    ":": "00000 01100 01100 00000 01100 01100 00000", "/": "00001 00010 00010 00100 01000 01000 10000",
    "_": "00000 00000 00000 00000 00000 00000 11111", "%": "11001 11010 00010 00100 01000 01011 10011",
    "(": "00010 00100 01000 01000 01000 00100 00010", ")": "01000 00100 00010 00010 00010 00100 01000",
    "=": "00000 00000 11111 00000 11111 00000 00000", "?": "01110 10001 00001 00010 00100 00000 00100",
    " ": "00000 00000 00000 00000 00000 00000 00000",
}
FONT = {ch: [row for row in rows.split()] for ch, rows in _FONT_ROWS.items()}


def sparkline(values: list[float], width: int = 40) -> str:
    """Block characters for the finite values, resampled to at most `width` buckets."""
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return ""
    if len(clean) > width:
        size = len(clean) / width
        clean = [sum(chunk) / len(chunk) for chunk in
                 (clean[int(i * size):max(int((i + 1) * size), int(i * size) + 1)]
                  for i in range(width))]
    low, high = min(clean), max(clean)
    span = high - low
    if span <= 0 or not math.isfinite(span):
        return BLOCKS[3] * len(clean)
    return "".join(BLOCKS[min(7, int((v - low) / span * 7.999))] for v in clean)


class Canvas:
    def __init__(self, width: int, height: int, color=WHITE):
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(color) * (width * height))

    def set(self, x: int, y: int, color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i:i + 3] = bytes(color)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color) -> None:
        for y in range(max(0, y0), min(self.height, y1 + 1)):
            for x in range(max(0, x0), min(self.width, x1 + 1)):
                self.set(x, y, color)

    def line(self, x0: float, y0: float, x1: float, y1: float, color, thick: int = 2) -> None:
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for i in range(steps + 1):
            t = i / steps
            x, y = round(x0 + (x1 - x0) * t), round(y0 + (y1 - y0) * t)
            self.rect(x - thick // 2, y - thick // 2, x + (thick - 1) // 2, y + (thick - 1) // 2,
                      color)

    def text(self, x: int, y: int, text: str, color=BLACK, scale: int = 2) -> None:
        for ch in text.upper():
            glyph = FONT.get(ch, FONT["?"])
            for row, bits in enumerate(glyph):
                for col, bit in enumerate(bits):
                    if bit == "1":
                        self.rect(x + col * scale, y + row * scale, x + col * scale + scale - 1,
                                  y + row * scale + scale - 1, color)
            x += 6 * scale

    def png(self) -> bytes:
        raw = b"".join(b"\0" + bytes(self.pixels[y * self.width * 3:(y + 1) * self.width * 3])
                       for y in range(self.height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def text_width(text: str, scale: int = 2) -> int:
    return len(text) * 6 * scale


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9 and len(ticks) < 20:
        ticks.append(round(value, 12))
        value += step
    return ticks


def tick_label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10000:
        return f"{value / 1000:g}K"
    return f"{value:.4g}"


def render_png(train: list[list[float]], evals: list[list[float]], title: str = "",
               width: int = 800, height: int = 450) -> bytes:
    """Loss against step. Points are [step, loss]; non-finite losses are left out."""
    train = [p for p in train if all(math.isfinite(v) for v in p)]
    evals = [p for p in evals if all(math.isfinite(v) for v in p)]
    canvas = Canvas(width, height)
    left, right, top, bottom = 90, width - 20, 50, height - 60
    points = train + evals
    if title:
        canvas.text(left, 16, title[:60], BLACK)
    if not points:
        canvas.text(left, height // 2, "NO LOSS LOGGED YET", AXIS)
        return canvas.png()
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.05 or max(abs(y1) * 0.05, 1e-6)
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    for tick in nice_ticks(y0, y1):
        y = round(py(tick))
        canvas.rect(left, y, right, y, GRID)
        label = tick_label(tick)
        canvas.text(left - 8 - text_width(label), y - 7, label, AXIS)
    for tick in nice_ticks(x0, x1, 6):
        x = round(px(tick))
        canvas.rect(x, top, x, bottom, GRID)
        label = tick_label(tick)
        canvas.text(x - text_width(label) // 2, bottom + 10, label, AXIS)
    canvas.rect(left, top, left + 1, bottom, AXIS)
    canvas.rect(left, bottom, right, bottom + 1, AXIS)
    canvas.text((left + right) // 2 - text_width("STEP") // 2, height - 24, "STEP", AXIS)
    for series, color, dots in ((train, TRAIN, len(train) < 60), (evals, EVAL, True)):
        for a, b in zip(series, series[1:]):
            canvas.line(px(a[0]), py(a[1]), px(b[0]), py(b[1]), color)
        if dots or len(series) == 1:
            for x, y in series:
                canvas.rect(round(px(x)) - 3, round(py(y)) - 3, round(px(x)) + 3,
                            round(py(y)) + 3, color)
    legend_x = right - text_width("TRAIN LOSS") - 30
    for i, (label, color, series) in enumerate((("TRAIN LOSS", TRAIN, train),
                                                ("EVAL LOSS", EVAL, evals))):
        if series:
            y = top + 8 + i * 22
            canvas.rect(legend_x, y + 5, legend_x + 16, y + 8, color)
            canvas.text(legend_x + 22, y, label, color)
    return canvas.png()
