"""Client side of the sandbox server.

`Sandbox` is what an agent process holds: `HTTPServiceClient` (one method per
endpoint, each returning an `Envelope`) plus a lazy start of the server;
`HTTPClientConfig` tells the client where and how to connect.
"""

from sandbox.client._config import HTTPClientConfig
from sandbox.client._envelope import Envelope
from sandbox.client._http import HTTPServiceClient
from sandbox.client._sandbox import Sandbox

__all__ = ["Envelope", "HTTPClientConfig", "HTTPServiceClient", "Sandbox"]
