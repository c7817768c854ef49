"""Helpers shared by the GKE workload tests."""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager

from gpuctl.gke.incluster_scripts.authproxy import Proxy


@contextmanager
def running_proxy(proxy: Proxy):
    """The real Proxy on its own event loop in a thread; yields its 127.0.0.1 port. On exit every
    connection task is cancelled before the loop closes."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(proxy.serve("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        async def shutdown():
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def kube_flags(cluster, namespace: str) -> list[str]:
    """The kube options every GKE command takes, pointed at the test control plane."""
    return ["--kubeconfig", str(cluster.kubeconfig), "--context", cluster.context, "-n", namespace]
