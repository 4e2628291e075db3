"""Public event and command contracts of OrderMesh.

Everything another system may subscribe to lives here: the envelope every message travels in,
the base classes, the registry that maps (type, version) to a model, the JSON codec and the
topic names. One module per bounded context holds that context's messages.
"""

from libs.events.base import Command, DomainEvent, Message
from libs.events.codec import Decoded, DecodeError, decode, encode, make_envelope
from libs.events.envelope import Envelope
from libs.events.registry import registry

__all__ = [
    "Command",
    "DecodeError",
    "Decoded",
    "DomainEvent",
    "Envelope",
    "Message",
    "decode",
    "encode",
    "make_envelope",
    "registry",
]

# Load every context's contracts so decode() knows all public message types.
from libs.events import catalog as _catalog  # noqa: E402,F401
