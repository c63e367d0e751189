"""A clock and a sleep that only advance when told: rate-limit waits without waiting."""

from __future__ import annotations

T0 = 1_700_000_010.0  # 30 s before a minute boundary (1_700_000_040)


class FakeTime:
    def __init__(self, start: float = T0):
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
