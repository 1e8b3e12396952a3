"""Client side of the sandbox server: the `Sandbox` facade and its HTTP client.

`Sandbox` is what an agent process holds; `HTTPServiceClient` speaks the wire
protocol one endpoint per method; `HTTPClientConfig` tells it where and how.
"""

from sandbox.client._config import HTTPClientConfig
from sandbox.client._http import HTTPServiceClient
from sandbox.client._sandbox import Sandbox

__all__ = ["HTTPClientConfig", "HTTPServiceClient", "Sandbox"]
