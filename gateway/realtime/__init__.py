"""The only code that holds sockets: connections, the hub and a client's lifecycle."""

from gateway.realtime.admission import Admission
from gateway.realtime.connection import Connection, ConnState
from gateway.realtime.expiry import TokenExpiry
from gateway.realtime.hub import Hub
from gateway.realtime.lifecycle import ClientServer

__all__ = ["Admission", "ClientServer", "ConnState", "Connection", "Hub", "TokenExpiry"]
