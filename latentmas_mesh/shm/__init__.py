"""Same-host shared memory for arrays: segments, the pool an owner leases them from, and the
cache a peer maps them with. The codec only sees `wire.shared`'s reference and roles."""

from latentmas_mesh.shm.peers import PeerSegments, Reader
from latentmas_mesh.shm.pool import Scope, SegmentPool
from latentmas_mesh.shm.segment import default_directory, sweep

__all__ = ["PeerSegments", "Reader", "Scope", "SegmentPool", "default_directory", "sweep"]
