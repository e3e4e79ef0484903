"""Same-host shared memory: the codec's references, pools that lend and reclaim, hostile refs."""

from __future__ import annotations

import gc
import os
import subprocess

import numpy as np
import pytest

from latentmas_mesh import codec
from latentmas_mesh.errors import InvalidRequest, PayloadTooLarge
from latentmas_mesh.protocol.v1 import AlignVectorRequest
from latentmas_mesh.shm import PeerSegments, SegmentPool, sweep
from latentmas_mesh.shm.pool import GRANULE
from latentmas_mesh.wire.shared import SEGMENT_KEY, SegmentRef

MIB = 1 << 20


@pytest.fixture
def directory(tmp_path):
    return tmp_path / "segments"


@pytest.fixture
def pool(directory):
    made = SegmentPool(directory, bytes_max=64 * MIB, array_bytes_min=MIB)
    yield made
    made.close()


@pytest.fixture
def peers(directory, pool):
    made = PeerSegments(directory, mapped_bytes_max=64 * MIB)
    yield made
    made.close()


def vectors(rows: int, seed: int = 0) -> AlignVectorRequest:
    """A request whose one array is rows x 1,024 float32 (rows x 4 KiB)."""
    array = np.random.default_rng(seed).standard_normal((rows, 1024), dtype=np.float32)
    return AlignVectorRequest(vectors=array, source_model="a", target_model="b")


def header_of(frames) -> dict:
    import msgpack

    return msgpack.unpackb(bytes(frames[0]), raw=False, ext_hook=lambda c, d: (c, d))


def dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


class TestCodecReferences:
    def test_a_large_array_travels_as_a_reference_and_decodes_equal(self, pool, peers):
        message = vectors(512)  # 2 MiB
        scope = pool.scope(copy_in=True)

        frames = codec.encode(message, request_id="r", segments=scope)
        decoded = codec.decode(frames, segments=peers.reader(release=False))

        assert 1 == len(frames)  # the header only: no array frame
        assert SEGMENT_KEY in header_of(frames)["arrays"][0]
        np.testing.assert_array_equal(message.vectors, decoded.message.vectors)
        assert not decoded.message.vectors.flags.writeable
        scope.end(lent=False)

    def test_a_small_array_stays_a_frame(self, pool, peers):
        frames = codec.encode(vectors(4), request_id="r", segments=pool.scope(copy_in=True))

        assert 2 == len(frames)
        assert "frame" in header_of(frames)["arrays"][0]

    def test_a_reader_less_decoder_answers_send_it_inline(self, pool):
        frames = codec.encode(vectors(512), request_id="r", segments=pool.scope(copy_in=True))

        with pytest.raises(InvalidRequest) as refused:
            codec.decode(frames)

        assert "unavailable" == refused.value.details["shared_memory"]

    def test_shared_bytes_count_toward_the_message_bound_before_mapping(self, pool, peers):
        frames = codec.encode(vectors(512), request_id="r", segments=pool.scope(copy_in=True))
        limits = codec.CodecLimits(message_bytes_max=MIB)

        with pytest.raises(PayloadTooLarge):
            codec.decode(frames, limits=limits, segments=peers.reader(release=False))

        assert 0 == peers.opened


class TestHostileReferences:
    def ref(self, pool) -> SegmentRef:
        scope = pool.scope(copy_in=True)
        ref = scope.place(np.ones(MIB // 4, np.float32))
        assert ref is not None
        return ref

    @pytest.mark.parametrize("name", ["../x.seg", "1-zz.seg", "/etc/passwd", "1-0123456789abcdef"])
    def test_names_outside_the_pattern_are_refused_unavailable(self, pool, peers, name):
        ref = self.ref(pool)
        with pytest.raises(InvalidRequest) as refused:
            peers.reader(release=False).view(SegmentRef(name, ref.token, 1, 0), 16)
        assert "unavailable" == refused.value.details["shared_memory"]

    def test_a_missing_file_or_another_token_is_unavailable(self, pool, peers):
        ref = self.ref(pool)
        for wrong in (
            SegmentRef(f"{os.getpid()}-0123456789abcdef.seg", ref.token, 1, 0),
            SegmentRef(ref.name, bytes(16), ref.generation, 0),
        ):
            with pytest.raises(InvalidRequest) as refused:
                peers.reader(release=False).view(wrong, 16)
            assert "unavailable" == refused.value.details["shared_memory"]

    def test_a_link_is_not_followed(self, pool, peers, directory, tmp_path):
        ref = self.ref(pool)
        link = f"{os.getpid()}-fedcba9876543210.seg"
        (directory / link).symlink_to(directory / ref.name)
        with pytest.raises(InvalidRequest) as refused:
            peers.reader(release=False).view(SegmentRef(link, ref.token, 1, 0), 16)
        assert "unavailable" == refused.value.details["shared_memory"]

    def test_a_stale_generation_or_bytes_past_the_capacity_are_refused(self, pool, peers):
        ref = self.ref(pool)
        reader = peers.reader(release=False)
        for wrong, nbytes in (
            (SegmentRef(ref.name, ref.token, ref.generation + 1, 0), 16),
            (SegmentRef(ref.name, ref.token, ref.generation, GRANULE), 64),
            (SegmentRef(ref.name, ref.token, ref.generation, 0), GRANULE + 1),
            (SegmentRef(ref.name, ref.token, ref.generation, 3), 16),  # unaligned
        ):
            with pytest.raises(InvalidRequest) as refused:
                reader.view(wrong, nbytes)
            assert "shared_memory" not in refused.value.details

    def test_a_directory_open_to_others_is_refused(self, tmp_path):
        open_dir = tmp_path / "open"
        open_dir.mkdir(mode=0o755)
        open_dir.chmod(0o755)
        with pytest.raises(PermissionError):
            SegmentPool(open_dir, bytes_max=MIB, array_bytes_min=MIB)


class TestLending:
    def lend_reply(self, pool, lessee: int) -> tuple[list, np.ndarray]:
        """A worker's reply array allocated in its pool, encoded, and lent to `lessee`."""
        scope = pool.scope(lessee=lessee)
        array = scope.allocate((512, 1024), np.dtype(np.float32))
        array[...] = 7.0
        frames = codec.encode(
            AlignVectorRequest(vectors=array, source_model="a", target_model="b"),
            request_id="r", segments=scope,
        )  # fmt: skip
        scope.end(lent=True)
        return frames, array

    def test_a_lent_segment_is_reused_only_after_the_lessee_releases_it(self, pool, directory):
        client = PeerSegments(directory, mapped_bytes_max=64 * MIB)
        frames, _ = self.lend_reply(pool, os.getpid())
        reply = codec.decode(frames, segments=client.reader(release=True))
        self.lend_reply(pool, os.getpid())
        assert 2 == pool.created  # the first is still lent: a second segment was made
        np.testing.assert_array_equal(7.0, reply.message.vectors)

        del reply
        gc.collect()
        self.lend_reply(pool, os.getpid())

        assert 2 == pool.created  # the released one came back
        client.close()

    def test_a_dead_lessees_segment_is_reclaimed(self, pool):
        self.lend_reply(pool, dead_pid())
        self.lend_reply(pool, os.getpid())

        assert 1 == pool.created

    def test_a_failed_reply_frees_what_it_allocated(self, pool):
        scope = pool.scope(lessee=os.getpid())
        scope.allocate((512, 1024), np.dtype(np.float32))
        scope.end(lent=False)
        self.lend_reply(pool, os.getpid())

        assert 1 == pool.created

    def test_past_the_budget_arrays_go_private_and_travel_inline(self, directory):
        small = SegmentPool(directory, bytes_max=2 * MIB, array_bytes_min=MIB)
        scope = small.scope(lessee=os.getpid())
        arrays = [scope.allocate((256, 1024), np.dtype(np.float32)) for _ in range(3)]
        frames = codec.encode(
            AlignVectorRequest(vectors=arrays[2], source_model="a", target_model="b"),
            request_id="r", segments=scope,
        )  # fmt: skip

        assert 2 == small.created  # the budget holds two 1 MiB segments
        assert 2 == len(frames)  # the third array lies in private memory: a frame
        assert scope.place(arrays[0]) is not None
        small.close()

    def test_an_empty_array_is_sent_without_a_copy_and_freed_when_it_dies(self, pool, peers):
        array = pool.empty((512, 1024), np.float32)
        array[...] = 3.0
        scope = pool.scope(copy_in=True)
        ref = scope.place(array[:])
        scope.end(lent=False)

        assert ref is not None
        assert 1 == pool.created
        view = peers.reader(release=False).view(ref, array.nbytes)
        np.testing.assert_array_equal(3.0, np.frombuffer(view, np.float32))
        del array, view
        gc.collect()
        pool.empty((512, 1024), np.float32)
        assert 1 == pool.created


class TestCleanUp:
    def test_sweep_removes_dead_owners_files_only(self, pool, directory):
        pool.empty((512, 1024), np.float32)
        dead = directory / f"{dead_pid()}-0123456789abcdef.seg"
        dead.write_bytes(b"x")
        other = directory / "notes.txt"
        other.write_bytes(b"x")

        assert 1 == sweep(directory)
        assert not dead.exists()
        assert other.exists()
        assert 2 == len(os.listdir(directory))  # the live segment and the other file

    def test_close_removes_the_files_and_views_stay_valid(self, pool, directory):
        array = pool.empty((512, 1024), np.float32)
        array[...] = 5.0
        pool.close()

        assert [] == os.listdir(directory)
        np.testing.assert_array_equal(5.0, array)
