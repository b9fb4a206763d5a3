"""A simulated schedule: lag of the oldest due binding over time, with a virtual clock.

Model (the product's contract, nothing more): B bindings on an interval I; a binding
polled at t is due again at t + I (an empty poll takes milliseconds). Each virtual second
the cluster polls up to ``min(boxes * per-box rate, cluster cap)`` due bindings, oldest
first (the claim orders by ``next_fetch_at``). The cluster cap is what no number of boxes
raises: in stage 1 the one beat dispatcher (tick limit / tick period, or one dispatcher's
claim + publish rate with the limit raised); since stage 2 the database's claim capacity.

Bindings are kept as counts per second of due time (a histogram), so a million bindings
over hours of virtual time take well under a second. Two starting states:

- ``steady``: due times spread evenly over one interval (a deployment that keeps up);
- ``outage``: the same after the cluster was down for one interval: everything is due,
  the oldest one interval late.

Lag at t = t - the due time of the oldest binding still due (0 when none is).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Sim:
    bindings: int
    interval: int  # seconds
    capacity: float  # polls per second the cluster can do
    start: str = "steady"  # or "outage"
    lags: list[float] = field(default_factory=list)  # lag at the end of each second

    def run(self, seconds: int) -> Sim:
        """Advance the virtual clock `seconds` seconds, one second at a time."""
        eps = 1e-9
        # buckets[k] = bindings due at second base + k (a fluid: fractions are fine).
        buckets: deque[float] = deque([self.bindings / self.interval] * self.interval)
        base = -self.interval if self.start == "outage" else 0
        for now in range(1, seconds + 1):
            left, polled = self.capacity, 0.0
            while left > eps and buckets and base <= now:  # oldest first, while due
                take = min(buckets[0], left)
                buckets[0] -= take
                left -= take
                polled += take
                if buckets[0] <= eps:
                    buckets.popleft()
                    base += 1
            slot = now + self.interval - base  # polled now: due again one interval later
            while len(buckets) <= slot:
                buckets.append(0.0)
            buckets[slot] += polled
            while buckets and buckets[0] <= eps:
                buckets.popleft()
                base += 1
            self.lags.append(float(now - base) if buckets and base <= now else 0.0)
        return self

    def lag_at(self, second: int) -> float:
        return self.lags[min(second, len(self.lags)) - 1]

    def recovered_after(self, under: float) -> int | None:
        """First second from which the lag stays under `under` to the end, or None."""
        last_bad = None
        for second, lag in enumerate(self.lags, start=1):
            if lag >= under:
                last_bad = second
        if last_bad is None:
            return 0
        return None if last_bad >= len(self.lags) else last_bad + 1


@dataclass
class Model:
    """A way of running the cluster: how fast one box polls, and what caps the cluster."""

    name: str
    per_box: float  # polls per second per box
    cluster_cap: float | None  # polls per second nobody can exceed (None: no cap)
    source: str  # where the numbers come from

    def capacity(self, boxes: int) -> float:
        total = boxes * self.per_box
        return min(total, self.cluster_cap) if self.cluster_cap else total


def steady_lag(model: Model, bindings: int, interval: int, boxes: int, seconds: int) -> float:
    """Lag at the end of `seconds` from the steady start (where it has settled)."""
    return simulate(model, bindings, interval, boxes, seconds, "steady").lags[-1]


def boxes_for(
    model: Model, bindings: int, interval: int, under: float, seconds: int, limit: int = 10_000
) -> int | None:
    """Fewest boxes that keep the steady lag under `under` seconds (None: no number does)."""
    if model.per_box <= 0:
        return None
    if steady_lag(model, bindings, interval, limit, seconds) >= under:
        return None  # the cluster cap, not the boxes, decides
    low, high = 0, limit  # lag(low) >= under > lag(high); lag falls as boxes grow
    while high - low > 1:
        middle = (low + high) // 2
        if steady_lag(model, bindings, interval, middle, seconds) < under:
            high = middle
        else:
            low = middle
    return high


def simulate(
    model: Model, bindings: int, interval: int, boxes: int, seconds: int, start: str
) -> Sim:
    return Sim(bindings, interval, model.capacity(boxes), start).run(seconds)


def table(models: list[Model], bindings: int, interval: int, seconds: int) -> list[dict]:
    """Per model: boxes for lag < one interval and to keep up (lag < 60 s), and lag over
    time with a few box counts around them."""
    rows = []
    for model in models:
        under = boxes_for(model, bindings, interval, interval, seconds)
        keep = boxes_for(model, bindings, interval, 60, seconds)
        counts = {n for n in (under, keep) if n} | ({keep - 1} if keep and keep > 1 else set())
        if not counts:
            counts = {1, 10, 100}
        series = []
        for boxes in sorted(counts):
            steady = simulate(model, bindings, interval, boxes, seconds, "steady")
            outage = simulate(model, bindings, interval, boxes, seconds, "outage")
            series.append(
                {
                    "boxes": boxes,
                    "capacity": model.capacity(boxes),
                    "steady_lags": _sample(steady.lags),
                    "steady_lag_end_s": steady.lags[-1],
                    "outage_lags": _sample(outage.lags),
                    "outage_recovered_s": outage.recovered_after(60.0),
                }
            )
        rows.append(
            {
                "model": model.name,
                "source": model.source,
                "per_box": model.per_box,
                "cluster_cap": model.cluster_cap,
                "boxes_lag_under_interval": under,
                "boxes_keep_up": keep,
                "series": series,
            }
        )
    return rows


SAMPLES = (60, 300, 900, 3600, 4 * 3600, 24 * 3600)


def _sample(lags: list[float]) -> dict[int, float]:
    return {t: lags[t - 1] for t in SAMPLES if t <= len(lags)}
