"""Reply seals: a worker proves to the CURVE client that asked that it wrote this exact reply."""

# The broker routes every frame, so it (or a worker it wrongly admits) could answer in a
# worker's name; CURVE protects each hop, not the reply end to end. Both ends already hold
# Curve25519 keys (the CURVE keys they connect with), so a worker W and a client C share a secret
# with no extra round trip:
#
#     K    = HKDF-SHA256(X25519(own secret, peer public), info = SEAL_LABEL ‖ W public ‖ C public)
#     seal = SEAL_MAGIC (4) ‖ W public (32) ‖ HMAC-SHA256(K, request id ‖ body frames) (32)
#
# The seal is one extra body frame after the reply's own; inside the MAC the id, the frame count
# and every frame carry their length, so no two different replies read alike. Only the holder of
# W's secret can seal to C, and only for that request id and those bytes; the client checks the
# seal before it decodes a byte of the body. Without CURVE there are no keys: nothing is sealed,
# and a plaintext mesh's replies cannot be verified.

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import zmq
import zmq.auth
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel
from zmq.utils import z85

from latentmas_mesh import codec
from latentmas_mesh.errors import ErrorCode, ProtocolError, Unauthorized
from latentmas_mesh.protocol import ErrorBody
from latentmas_mesh.transport import _calls
from latentmas_mesh.transport._calls import Frame
from latentmas_mesh.transport._settings import TransportSettings

if TYPE_CHECKING:
    from latentmas_mesh.transport._sync import Transport

SEAL_MAGIC: Final = b"LMS1"
"""First bytes of a seal frame (version 1 of this layout)."""
KEY_BYTES: Final = 32
MAC_BYTES: Final = 32
SEAL_BYTES: Final = len(SEAL_MAGIC) + KEY_BYTES + MAC_BYTES
SEAL_LABEL: Final = b"latentmas-mesh reply seal v1"
"""HKDF context: a MAC key made here is good for nothing else the two keys might be used for."""
Z85_KEY_CHARS: Final = 40
PEERS_MAX: Final = 4096
"""MAC keys a sealer keeps, least recently used dropped: a new client costs one X25519 (~30 us)."""
TRUSTED_KEYS_MAX: Final = 256


class UnverifiedReply(Unauthorized):
    """A reply that had to be sealed was not sealed by a trusted key for this request id and body.

    Raised by the client before it decodes anything: whatever the reply says ("applied"
    included) is refused. `details["reason"]`: missing, untrusted_key or mismatch.
    """


def is_sealed(frames: Sequence[Frame]) -> bool:
    """Whether the last of at least two frames has a seal's size and magic (not yet checked)."""
    if len(frames) < 2:
        return False
    last = _view(frames[-1])
    return last.nbytes == SEAL_BYTES and last[: len(SEAL_MAGIC)].tobytes() == SEAL_MAGIC


def trusted_keys(directory: Path) -> frozenset[str]:
    """The Z85 public keys of the `*.key` files in `directory`; Unauthorized when it has none."""
    if not directory.is_dir():
        raise Unauthorized(f"trusted key directory {directory} does not exist")
    files = sorted(directory.glob("*.key"))
    if not files:
        raise Unauthorized(f"no trusted public keys (*.key files) in {directory}")
    if len(files) > TRUSTED_KEYS_MAX:
        raise Unauthorized(f"{directory} holds {len(files)} keys; at most {TRUSTED_KEYS_MAX}")
    return frozenset(zmq.auth.load_certificate(path)[0].decode("ascii") for path in files)


class ReplySealer:
    """The worker's side: appends to each reply a seal for the client that asked.

    Built from the `.key_secret` the worker connects with. Not thread-safe: a worker's replies
    are made on its one handler thread.
    """

    __slots__ = ("_keys", "_peers_max", "_private", "_public", "public_key")

    def __init__(self, secret_key_file: Path, *, peers_max: int = PEERS_MAX) -> None:
        self._private, self._public = _key_pair(secret_key_file)
        self.public_key = z85.encode(self._public).decode("ascii")
        self._peers_max = peers_max
        self._keys: OrderedDict[str, bytes] = OrderedDict()

    def seal(self, identity: str | None, request_id: str, body: Sequence[Frame]) -> list[Frame]:
        """`body` and its seal frame; `body` alone when `identity` (the client's Z85 public key,
        None without CURVE) is no key to seal to: that client cannot verify anything anyway."""
        key = self._key_for(identity)
        if key is None:
            return list(body)
        return [*body, SEAL_MAGIC + self._public + _mac(key, request_id, body)]

    def _key_for(self, identity: str | None) -> bytes | None:
        if identity is None:
            return None
        key = self._keys.get(identity)
        if key is not None:
            self._keys.move_to_end(identity)
            return key
        client = _raw_key(identity)
        if client is None:
            return None
        try:
            key = _mac_key(self._private, client, worker=self._public, client=client)
        except ValueError:  # a small-order point: no shared secret with this "key"
            return None
        self._keys[identity] = key
        if len(self._keys) > self._peers_max:
            self._keys.popitem(last=False)
        return key


class ReplyVerifier:
    """The client's side: takes a reply only under a seal of a trusted key, for its request id.

    `trusted` are the Z85 public keys of the workers allowed to answer (for the ledger: the
    `*.key` files of `LATENTMAS_LEDGER_KEYS_DIR`). A MAC key per trusted key is derived once,
    here, so checking a reply costs one HMAC over it. `unsealed_codes` are error codes taken
    without a seal: answers a broker gives itself that settle nothing (dropping the reply would
    do as much), e.g. SERVICE_UNAVAILABLE.
    """

    __slots__ = ("_keys", "unsealed_codes")

    def __init__(
        self,
        secret_key_file: Path,
        trusted: Iterable[str],
        *,
        unsealed_codes: frozenset[ErrorCode] = frozenset(),
    ) -> None:
        private, public = _key_pair(secret_key_file)
        self._keys: dict[bytes, bytes] = {}
        for identity in trusted:
            worker = _raw_key(identity)
            if worker is None:
                raise Unauthorized(f"{identity[:Z85_KEY_CHARS]!r} is not a Z85 CURVE public key")
            self._keys[worker] = _mac_key(private, worker, worker=worker, client=public)
        if not self._keys:
            raise Unauthorized("a reply verifier needs at least one trusted key")
        self.unsealed_codes = unsealed_codes

    def open(self, request_id: str, frames: Sequence[Frame]) -> list[Frame]:
        """The reply's body without its seal, once the seal checks out; else UnverifiedReply."""
        if not is_sealed(frames):
            raise _missing(request_id)
        seal = bytes(_view(frames[-1]))
        worker = seal[len(SEAL_MAGIC) : len(SEAL_MAGIC) + KEY_BYTES]
        key = self._keys.get(worker)
        if key is None:
            shown = z85.encode(worker).decode("ascii")
            msg = f"the reply is sealed by {shown}, which is not a trusted key"
            details = {"reason": "untrusted_key", "key": shown, "request_id": request_id}
            raise UnverifiedReply(msg, details=details)
        body = list(frames[:-1])
        if not hmac.compare_digest(seal[-MAC_BYTES:], _mac(key, request_id, body)):
            msg = "the reply's seal does not match its request id and body: it was altered"
            raise UnverifiedReply(msg, details={"reason": "mismatch", "request_id": request_id})
        return body

    def call(
        self,
        transport: Transport,
        service: str,
        message: BaseModel,
        *,
        timeout_ms: int | None,
        on_behalf_of: str | None = None,
    ) -> codec.Decoded:
        """`transport.call`, with the reply's seal checked before its body is decoded."""
        request_id, frames = _calls.encode_call(message, None, on_behalf_of)
        body = transport.request(service, frames, timeout_ms=timeout_ms, request_id=request_id)
        return self.read(request_id, body, transport.settings)

    def read(
        self, request_id: str, body: Sequence[Frame], settings: TransportSettings
    ) -> codec.Decoded:
        """The decoded reply to `request_id` once its seal checks out (an error reply raises
        its typed error); for callers that send the request themselves, e.g. asyncio ones."""
        if not is_sealed(body):
            raise self._unsealed(body, request_id, settings)
        return _calls.decode_reply(self.open(request_id, body), settings)

    def _unsealed(
        self, body: Sequence[Frame], request_id: str, settings: TransportSettings
    ) -> ProtocolError:
        """What an unsealed reply may be: an error of `unsealed_codes`, or UnverifiedReply."""
        try:
            message = codec.decode(body, limits=codec.CodecLimits.from_settings(settings)).message
        except ProtocolError:
            message = None
        if isinstance(message, ErrorBody) and message.code in self.unsealed_codes:
            return message.to_exception()
        return _missing(request_id)


def _missing(request_id: str) -> UnverifiedReply:
    msg = "the reply carries no seal: nothing shows that a trusted worker wrote it"
    return UnverifiedReply(msg, details={"reason": "missing", "request_id": request_id})


def _view(frame: Frame) -> memoryview:
    return frame.buffer if isinstance(frame, zmq.Frame) else memoryview(frame)


def _key_pair(secret_key_file: Path) -> tuple[X25519PrivateKey, bytes]:
    """The X25519 key of a CURVE `.key_secret` file and its raw public key, checked to match."""
    public, secret = zmq.auth.load_certificate(secret_key_file)
    if secret is None:
        raise Unauthorized(f"{secret_key_file} holds no secret key (use the .key_secret file)")
    private = X25519PrivateKey.from_private_bytes(z85.decode(secret))
    raw_public = private.public_key().public_bytes_raw()
    if raw_public != z85.decode(public):
        raise Unauthorized(f"{secret_key_file}: its public key does not belong to its secret key")
    return private, raw_public


def _raw_key(identity: str) -> bytes | None:
    """A Z85 public key as its 32 bytes; None for anything else."""
    if len(identity) != Z85_KEY_CHARS or not identity.isascii():
        return None
    try:
        return z85.decode(identity.encode("ascii"))
    except (KeyError, ValueError):  # a character outside Z85's alphabet
        return None


def _mac_key(private: X25519PrivateKey, peer: bytes, *, worker: bytes, client: bytes) -> bytes:
    """K = HKDF-SHA256(X25519(private, peer), info = SEAL_LABEL ‖ worker ‖ client).

    ValueError when `peer` is a point of small order (X25519 then gives no shared secret).
    """
    shared = private.exchange(X25519PublicKey.from_public_bytes(peer))
    info = SEAL_LABEL + worker + client
    return HKDF(algorithm=hashes.SHA256(), length=MAC_BYTES, salt=None, info=info).derive(shared)


def _mac(key: bytes, request_id: str, body: Sequence[Frame]) -> bytes:
    """HMAC-SHA256(K, len ‖ request id ‖ frame count ‖ (len ‖ frame)...), lengths 8 bytes BE."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    rid = request_id.encode()
    mac.update(len(rid).to_bytes(8, "big") + rid + len(body).to_bytes(8, "big"))
    for frame in body:
        view = _view(frame)
        mac.update(view.nbytes.to_bytes(8, "big"))
        mac.update(view)
    return mac.digest()


__all__ = [
    "SEAL_BYTES",
    "ReplySealer",
    "ReplyVerifier",
    "UnverifiedReply",
    "is_sealed",
    "trusted_keys",
]
