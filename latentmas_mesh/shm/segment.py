"""One shared-memory segment file: a control page, then data, in a directory only its uid reads.

A segment lives in the host's segment directory (tmpfs, e.g. /dev/shm/latentmas-<uid>, mode
0700). Its 4 KiB control page is written by its owner and read by peers, except the `released`
word, which the one peer it was lent to writes back:

    offset  bytes  field
         0      8  magic b"LMSHSEG1"
         8     16  token: random per file; a reference must quote it (a same-named file on
                   another host, or a recreated one, is refused)
        24      8  owner pid (its files are swept once it is dead)
        32      8  capacity: data bytes after the control page
        40      8  generation: bumped by the owner each time it leases the data out
        48      8  lessee pid: the peer the current generation was lent to (0: none)
        56      8  released: the generation the lessee has finished with
    4096    ...    data

Trust: only processes of the same uid on the same host share segments; the directory's mode
and owner are checked, and each file is opened without following links and checked to be a
regular file of this uid, large enough for what its control page claims.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from latentmas_mesh.errors import InvalidRequest, ProtocolError
from latentmas_mesh.wire.shared import SEGMENT_TOKEN_BYTES, SHARED_MEMORY_UNAVAILABLE

CONTROL_BYTES: Final = 4096
MAGIC: Final = b"LMSHSEG1"
ALIGNMENT: Final = 64  # where arrays may start inside the data
NAME: Final = re.compile(r"[0-9]{1,10}-[0-9a-f]{16}\.seg")
# 8-byte words of the control page (see the module's table)
_OWNER, _CAPACITY, _GENERATION, _LESSEE, _RELEASED = 3, 4, 5, 6, 7
_OPEN_FLAGS: Final = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


def default_directory() -> Path:
    """This uid's segment directory on tmpfs (memory, not disk)."""
    return Path("/dev/shm") / f"latentmas-{os.geteuid()}"  # noqa: S108 (checked: 0700, ours)


def unavailable(reason: str) -> InvalidRequest:
    """The refusal that tells a sender to send the same arrays inline."""
    return InvalidRequest(
        f"shared memory not usable here: {reason}; send the arrays inline",
        details={"shared_memory": SHARED_MEMORY_UNAVAILABLE, "reason": reason[:200]},
    )


def prepare_directory(directory: Path) -> Path:
    """Create the directory (mode 0700) or check an existing one is ours alone; raises
    PermissionError for one that is a link, not a directory, another uid's, or open to others."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        msg = f"{directory} must be a directory of uid {os.geteuid()} with mode 0700"
        raise PermissionError(msg)
    return directory


def owner_of(name: str) -> int:
    """The pid a segment name starts with."""
    return int(name.split("-", 1)[0])


def alive(pid: int) -> bool:
    """Whether a process of this pid exists (a pid of another uid counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(eq=False)
class Segment:
    """A mapped segment file: `mm` maps the control page and the data, `words` views the control
    page's 8-byte fields, `fd` is kept open so a reader sees when the owner unlinks the file."""

    name: str
    mm: mmap.mmap
    fd: int
    token: bytes
    capacity: int
    inode: int
    words: np.ndarray = field(repr=False)

    @property
    def generation(self) -> int:
        return int(self.words[_GENERATION])

    @property
    def owner(self) -> int:
        return int(self.words[_OWNER])

    @property
    def lessee(self) -> int:
        return int(self.words[_LESSEE])

    @property
    def released(self) -> int:
        return int(self.words[_RELEASED])

    def lease(self, lessee: int) -> int:
        """Owner: start a new generation (lent to `lessee`, 0 for none); returns it."""
        generation = self.generation + 1
        self.words[_LESSEE] = lessee
        self.words[_GENERATION] = generation
        return generation

    def release(self, generation: int) -> None:
        """Lessee: say it is done with `generation` (one aligned 8-byte store)."""
        self.words[_RELEASED] = generation

    def data(self, offset: int, nbytes: int) -> memoryview:
        """The data bytes [offset, offset + nbytes), checked against the capacity."""
        if offset % ALIGNMENT or offset < 0 or offset + nbytes > self.capacity:
            msg = f"bytes {offset}..{offset + nbytes} are outside segment {self.name}"
            raise InvalidRequest(msg, details={"capacity": self.capacity})
        start = CONTROL_BYTES + offset
        return memoryview(self.mm)[start : start + nbytes]

    def unlinked(self) -> bool:
        """Whether the owner has removed the file (the mapping then only pins memory)."""
        try:
            return os.fstat(self.fd).st_nlink == 0
        except OSError:
            return True

    def close(self) -> None:
        """Unmap if nobody holds a view any more (else the last view unmaps), close the fd."""
        with contextlib.suppress(BufferError):  # arrays still look at it: they unmap it last
            self.mm.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def create(directory: Path, capacity: int) -> Segment:
    """A new segment of this process with `capacity` data bytes, its memory reserved up front
    (posix_fallocate: a full tmpfs fails here with OSError, not later with SIGBUS) and mapped."""
    name = f"{os.getpid()}-{secrets.token_hex(8)}.seg"
    path = directory / name
    fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, CONTROL_BYTES + capacity)
        mm = _map(fd, CONTROL_BYTES + capacity)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    token = secrets.token_bytes(SEGMENT_TOKEN_BYTES)
    mm[0 : len(MAGIC)] = MAGIC
    mm[8 : 8 + SEGMENT_TOKEN_BYTES] = token
    words = np.frombuffer(mm, dtype="<u8", count=8)
    words[_OWNER], words[_CAPACITY] = os.getpid(), capacity
    return Segment(name, mm, fd, token, capacity, os.fstat(fd).st_ino, words)


def open_peer(directory: Path, name: str, token: bytes) -> Segment:
    """Map a peer's segment after checking it is what a reference says; raises the
    `unavailable` refusal (so the sender falls back inline) for anything else."""
    if NAME.fullmatch(name) is None:
        raise unavailable(f"{name[:80]!r} is not a segment name")
    try:
        fd = os.open(directory / name, _OPEN_FLAGS)
    except OSError as error:
        raise unavailable(f"segment {name} cannot be opened ({error.strerror})") from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise unavailable(f"segment {name} is not a regular file of uid {os.geteuid()}")
        if info.st_size < CONTROL_BYTES:
            raise unavailable(f"segment {name} is shorter than its control page")
        mm = _map(fd, info.st_size)
    except ProtocolError:
        os.close(fd)
        raise
    except OSError as error:
        os.close(fd)
        raise unavailable(f"segment {name} cannot be mapped ({error.strerror})") from error
    words = np.frombuffer(mm, dtype="<u8", count=8)
    capacity = int(words[_CAPACITY])
    if mm[0 : len(MAGIC)] != MAGIC or bytes(mm[8 : 8 + SEGMENT_TOKEN_BYTES]) != token:
        segment = Segment(name, mm, fd, b"", 0, info.st_ino, words)
        segment.close()
        raise unavailable(f"segment {name} is another file than the one referenced")
    if CONTROL_BYTES + capacity > info.st_size:
        Segment(name, mm, fd, token, 0, info.st_ino, words).close()
        raise unavailable(f"segment {name} claims more bytes than its file holds")
    return Segment(name, mm, fd, token, capacity, info.st_ino, words)


def _map(fd: int, size: int) -> mmap.mmap:
    """Shared read-write mapping with its page tables filled now (MAP_POPULATE: no page faults
    on the request path later)."""
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def sweep(directory: Path) -> int:
    """Remove segment files whose owner process is dead (killed before it could clean up);
    returns how many. Only names of the segment pattern are touched."""
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        if NAME.fullmatch(name) and not alive(owner_of(name)):
            try:
                os.unlink(directory / name)
                removed += 1
            except OSError:
                pass
    return removed


__all__ = [
    "ALIGNMENT",
    "CONTROL_BYTES",
    "Segment",
    "alive",
    "create",
    "default_directory",
    "open_peer",
    "prepare_directory",
    "sweep",
    "unavailable",
]
