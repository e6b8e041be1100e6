"""The gateway in front of the vLLM pods, for the requests that find no Ready pod.

Such a request either waits (`gateway_at_zero: wait`, the default: FIFO, released to the first
pod that becomes Ready; the client counts it as in flight) or fails at once (`fail`: outcome
`failed_no_replica`, as a plain Service with no endpoints refuses the connection).  With scale
to zero this is every request of an idle gap until KEDA has scaled up and a pod is Ready.

The gateway is scraped like a pod (job="gateway"), so a KEDA trigger can see load while no vLLM
pod exists:
- `hpa_exp_gateway_requests_total`: counter, requests the load generators sent (held or not);
- `hpa_exp_gateway_requests_held`: gauge, requests waiting for a Ready pod now;
- `hpa_exp_gateway_requests_in_flight`: gauge, requests sent and not yet ended (held or at a pod),
  the signal that stays above 0 exactly while there is work, also when clients are blocked at
  their concurrency limit (a request counter's rate then drops to 0).
On a cluster the gateway's own metrics play this part (docs/keda.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from hpa_experiments.backends.sim.serving import Request

GATEWAY_AT_ZERO = ("wait", "fail")
REQUESTS_TOTAL = "hpa_exp_gateway_requests_total"
REQUESTS_HELD = "hpa_exp_gateway_requests_held"
REQUESTS_IN_FLIGHT = "hpa_exp_gateway_requests_in_flight"


class Gateway:
    """Holds (or refuses) requests while no pod is Ready."""

    def __init__(self, at_zero: str = "wait") -> None:
        if at_zero not in GATEWAY_AT_ZERO:
            raise ValueError(f"gateway_at_zero must be wait or fail, not {at_zero!r}")
        self.waits = at_zero == "wait"
        self._held: deque[Request] = deque()

    def hold(self, req: Request) -> bool:
        """Keep `req` until a pod is Ready; False when the gateway refuses it instead."""
        if self.waits:
            self._held.append(req)
        return self.waits

    def release(self) -> list[Request]:
        """Every held request, oldest first (a pod just became Ready)."""
        held, self._held = list(self._held), deque()
        return held

    def drop(self, gone: Iterable[Request]) -> None:
        """Forget requests whose client went away (their Job was stopped)."""
        gone_set = set(gone)
        if self._held and gone_set:
            self._held = deque(r for r in self._held if r not in gone_set)

    def __len__(self) -> int:
        return len(self._held)

    def metric_families(self, sent_total: int, in_flight: int) -> list[tuple[str, dict[str, str], float]]:
        return [
            (REQUESTS_TOTAL, {}, float(sent_total)),
            (REQUESTS_HELD, {}, float(len(self._held))),
            (REQUESTS_IN_FLIGHT, {}, float(in_flight)),
        ]
