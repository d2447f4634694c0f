"""Progress on long work: a tqdm bar on a terminal, one plain line per epoch in a log."""
from __future__ import annotations

import sys


class Progress:
    """A tqdm bar on a terminal, one plain line per epoch otherwise."""

    def __init__(self, mode: str, total_steps: int, label: str):
        self.bar = None
        if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, desc=label, unit="step", dynamic_ncols=True)
        self.lines, self.label = mode in ("auto", "lines") and self.bar is None, label

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def epoch(self, record: dict, epochs: int) -> None:
        def show(key, value):
            if value is None:
                return f"{key} -"
            if isinstance(value, dict):  # e.g. alignment scores: show the first per-layer list
                name, first = next(((k, v) for k, v in value.items() if isinstance(v, list)), (key, []))
                return f"{key}.{name} [" + " ".join(f"{v:.2f}" for v in first) + "]"
            return f"{key} {100 * value:.1f}%" if key.endswith("acc") else f"{key} {value:.4f}"
        text = " ".join([f"epoch {record['epoch']}/{epochs}"] + [
            show(k, v) for k, v in record.items() if k not in ("epoch", "seconds")])
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        elif self.lines:
            print(f"[{self.label}] {text} ({record['seconds']:.1f}s)", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
