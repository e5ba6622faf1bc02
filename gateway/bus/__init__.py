"""The pub/sub seam: the one `Publisher` services say what happened to, the `Bus` interface, a
redis-py backend and an in-memory one."""

from gateway.bus.base import Bus, Delivery, Reconnected
from gateway.bus.memory import MemoryBroker, MemoryBus
from gateway.bus.publisher import Publisher
from gateway.bus.redis import RedisBus

__all__ = ["Bus", "Delivery", "MemoryBroker", "MemoryBus", "Publisher", "Reconnected", "RedisBus"]
