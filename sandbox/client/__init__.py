"""Client side of the sandbox server.

`Sandbox` is what an agent process holds (AgentFlow's facade: summaries and
lists, a lazy start of the server); `HTTPServiceClient` is the endpoint-per-method
client underneath, each method returning an `Envelope`; `HTTPClientConfig` and
`SandboxConfig` hold their settings.
"""

from sandbox.client._config import HTTPClientConfig, SandboxConfig
from sandbox.client._envelope import Envelope
from sandbox.client._http import HTTPServiceClient
from sandbox.client._sandbox import Sandbox

__all__ = ["Envelope", "HTTPClientConfig", "HTTPServiceClient", "Sandbox", "SandboxConfig"]
