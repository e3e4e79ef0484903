"""Request bodies read under a byte limit, refused before they are buffered past it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from latentmas_mesh.errors import InvalidRequest, PayloadTooLarge


async def read_limited(
    headers: Mapping[str, str], chunks: AsyncIterator[bytes], bytes_max: int
) -> bytes | bytearray:
    """The whole body, or PayloadTooLarge as soon as it is known to exceed `bytes_max`.

    A declared Content-Length over the limit is refused before a byte is read; a body without
    one (chunked) is counted as it arrives, so at most `bytes_max` plus one chunk is held.
    """
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Content-Length is not a number", details={"value": declared})
        if int(declared) > bytes_max:
            raise _too_large(int(declared), bytes_max)
        return await _read_declared(chunks, int(declared))
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > bytes_max:
            raise _too_large(size, bytes_max)
        parts.append(chunk)
    return b"".join(parts)


async def _read_declared(chunks: AsyncIterator[bytes], size: int) -> bytearray:
    """A body of a declared length, read into one buffer of that size (each chunk copied
    once, no final join: a real-sized cache is hundreds of MB); any other length is refused."""
    body = bytearray(size)
    view = memoryview(body)
    offset = 0
    async for chunk in chunks:
        end = offset + len(chunk)
        if end > size:
            raise InvalidRequest(
                f"the body is longer than its Content-Length {size}", details={"bytes": size}
            )
        view[offset:end] = chunk
        offset = end
    if offset != size:
        msg = f"the body ended after {offset} of its Content-Length {size} bytes"
        raise InvalidRequest(msg, details={"bytes": offset, "content_length": size})
    view.release()
    return body


def _too_large(size: int, bytes_max: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the body of at least {size} bytes exceeds this endpoint's {bytes_max}",
        details={"bytes": size, "bytes_max": bytes_max},
    )


__all__ = ["read_limited"]
