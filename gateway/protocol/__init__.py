"""The wire protocol and the bus formats, sans I/O.

`frames` decodes client frames into typed objects, `events` builds every server frame, `codes`
holds close and error codes, `envelope` the bus envelope and its control part.
`docs/protocol.md` is the contract this package implements.
"""

from gateway.protocol.codes import Close, ErrorCode, ProtocolError
from gateway.protocol.frames import ClientFrame, decode

__all__ = ["ClientFrame", "Close", "ErrorCode", "ProtocolError", "decode"]
