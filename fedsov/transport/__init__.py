"""gRPC over mTLS, both ends: the servicer (hands calls to a ``FederationHandler``),
the client, the server, and protobuf <-> message conversion. Imports no role."""

from fedsov.transport.client import FederationClient
from fedsov.transport.errors import status_for
from fedsov.transport.handler import FederationHandler
from fedsov.transport.server import RunningServer, start_server
from fedsov.transport.service import FederationService

__all__ = [
    "FederationClient",
    "FederationHandler",
    "FederationService",
    "RunningServer",
    "start_server",
    "status_for",
]
