"""A Service stand-in for the test bed: round-robin HTTP proxy over local simulator ports.

    python -m tests.support.testbed_proxy PORT ENDPOINTS_JSON [HOLD_S]

ENDPOINTS_JSON holds the list of backend ports (the Ready pods the Service selects); the
supervisor rewrites it as pods come and go, and it is re-read when it changes.  Responses are
streamed chunk by chunk, so a client's time to first token is the server's.  With no endpoint
the proxy answers 503, like a Service without ready pods refuses connections; with HOLD_S > 0
it acts as a scale-to-zero gateway instead: a request waits up to HOLD_S seconds for a Ready
pod.  `GET /-/gateway-metrics` reports the requests in flight (held or being served) as
`hpa_exp_gateway_requests_in_flight`, the gauge a KEDA trigger activates on at zero replicas
(the twin's gateway exports the same name; manifests/keda/scaledobject-vllm-scale-to-zero.yaml).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class Endpoints:
    def __init__(self, path: Path):
        self.path = path
        self.mtime = -1.0
        self.ports: list[int] = []
        self.counter = itertools.count()

    def next(self) -> int | None:
        try:
            mtime = os.stat(self.path).st_mtime
            if mtime != self.mtime:
                self.ports = [int(p) for p in json.loads(self.path.read_text())]
                self.mtime = mtime
        except (OSError, ValueError):
            pass
        if not self.ports:
            return None
        return self.ports[next(self.counter) % len(self.ports)]


GATEWAY_METRICS_PATH = "/-/gateway-metrics"


def make_app(endpoints: Endpoints, hold_s: float = 0.0) -> web.Application:
    session: dict[str, aiohttp.ClientSession] = {}
    in_flight = [0]

    async def startup(_: web.Application) -> None:
        session["s"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False
        )

    async def cleanup(_: web.Application) -> None:
        await session["s"].close()

    async def gateway_metrics(_: web.Request) -> web.Response:
        text = (
            "# HELP hpa_exp_gateway_requests_in_flight Requests held (no Ready pod) or being served.\n"
            "# TYPE hpa_exp_gateway_requests_in_flight gauge\n"
            f"hpa_exp_gateway_requests_in_flight {in_flight[0]}\n"
        )
        return web.Response(text=text, content_type="text/plain")

    async def counted(request: web.Request) -> web.StreamResponse:
        in_flight[0] += 1
        try:
            return await forward(request)
        finally:
            in_flight[0] -= 1

    async def forward(request: web.Request) -> web.StreamResponse:
        port = endpoints.next()
        deadline = asyncio.get_running_loop().time() + hold_s
        while port is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
            port = endpoints.next()
        if port is None:
            return web.Response(status=503, text="no ready endpoints\n")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        body = await request.read()
        try:
            async with session["s"].request(
                request.method, f"http://127.0.0.1:{port}{request.rel_url}", headers=headers, data=body
            ) as upstream:
                response = web.StreamResponse(
                    status=upstream.status,
                    headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS},
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"upstream 127.0.0.1:{port}: {exc}\n")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_get(GATEWAY_METRICS_PATH, gateway_metrics)
    app.router.add_route("*", "/{tail:.*}", counted)
    return app


def main(argv: list[str]) -> int:
    port, path = int(argv[0]), Path(argv[1])
    hold_s = float(argv[2]) if len(argv) > 2 else 0.0
    web.run_app(make_app(Endpoints(path), hold_s), host="127.0.0.1", port=port, print=None, handle_signals=True)
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    sys.exit(main(sys.argv[1:]))
