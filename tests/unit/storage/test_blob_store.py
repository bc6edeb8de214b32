"""Every blob store (filesystem, S3 on a real S3 protocol server): stage, publish, release (with batched
syncs), read, write, list, and recovery from every state a crash can leave behind."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dicomflow.errors import StorageError
from dicomflow.storage import FileSystemBlobStore, RecoveryReport, S3BlobStore, StagedBlob
from s3 import S3Server
from waiting import wait_until

KEY = "1.2.3/1.2.3.4/1.2.3.4.5.0123456789abcdef.dcm"
DATA = b"DICM-ish bytes " * 100
Store = FileSystemBlobStore | S3BlobStore
MakeStore = Callable[..., Store]


@pytest.fixture(params=["filesystem", "filesystem-no-fsync", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Makes stores of one back end on one shared place (a directory, a fresh bucket), as processes or
    nodes would: ``make_store(fsync=..., node_id=...)`` (``fsync`` defaults to the back end's)."""
    made: list[Store] = []
    default_fsync = not request.param.endswith("no-fsync")
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        bucket = server.new_bucket()

        def make(*, fsync: bool = default_fsync, node_id: str = "node-1") -> Store:
            made.append(
                S3BlobStore(
                    bucket,
                    tmp_path / "staging",
                    endpoint_url=server.endpoint_url,
                    fsync=fsync,
                    node_id=node_id,
                )
            )
            return made[-1]
    else:

        def make(*, fsync: bool = default_fsync, node_id: str = "node-1") -> Store:
            made.append(FileSystemBlobStore(tmp_path / "blobs", fsync=fsync, node_id=node_id))
            return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    return make_store()


def staged_names(store: Store) -> list[Path]:
    """Staged files of every process of every node (each stages in a folder of its own)."""
    return sorted(p for p in store.staging_area.root.rglob("*") if p.suffix in (".part", ".dcm"))


def die(store: Store) -> None:
    """What the end of its process does to a store: the lock on its staging folder ends, its files stay.

    The store object then acts as the next process would (a new staging folder at its next write).
    """
    area = store.staging_area
    own = area._own
    assert own is not None
    os.close(own.lock_fd)
    area._own = None


def objects(store: Store) -> list[str]:
    return store.list_keys()


class Index:
    """The index as recovery sees it: which keys have a row."""

    def __init__(self, *keys: str) -> None:
        self.keys = set(keys)

    def __call__(self, key: str) -> bool:
        return key in self.keys


def key_by_content(path: Path) -> str | None:
    """Recovery's key function for these tests: the key is derived from the bytes; ``None`` if unreadable."""
    data = path.read_bytes()
    return None if data.startswith(b"garbage") else f"k/{hashlib.sha256(data).hexdigest()[:16]}.dcm"


# -- writing -------------------------------------------------------------------------------------------


def test_stage_writes_and_hashes_the_chunks(store: Store) -> None:
    chunks: list[bytes | memoryview] = [b"abc", memoryview(b"defg"), b""]

    staged = store.stage(chunks)

    assert staged.path.parent.parent == store.staging_area.directory
    assert staged.path.suffix == ".part"
    assert staged.path.read_bytes() == b"abcdefg"
    assert (staged.size, staged.sha256) == (7, hashlib.sha256(b"abcdefg").hexdigest())


def test_new_staging_paths_are_unique(store: Store) -> None:
    assert len({store.new_staging_path() for _ in range(1000)}) == 1000


def test_publish_links_the_staged_bytes_under_the_key(store: Store) -> None:
    staged = store.stage([DATA])

    assert store.publish(staged, KEY) is True

    with store.open(KEY) as handle:
        assert handle.read() == DATA
    assert store.get(KEY) == DATA and store.exists(KEY) and store.size(KEY) == len(DATA)


def test_publish_under_an_existing_key_writes_nothing(store: Store) -> None:
    first = store.stage([DATA])
    store.publish(first, KEY)
    second = store.stage([DATA])

    assert store.publish(second, KEY) is False

    assert store.get(KEY) == DATA


def test_release_without_publishing_removes_the_staged_name_at_once(store: Store) -> None:
    staged = store.stage([DATA])

    store.release(staged)

    assert staged_names(store) == []


def test_released_blob_keeps_its_staged_name_until_its_directory_is_synced(make_store: MakeStore) -> None:
    store = make_store(fsync=True)
    staged = store.stage([DATA])
    store.publish(staged, KEY)

    store.release(staged, published_as=KEY)
    assert staged.path.exists(), "the staged name is the durable copy until the directory sync"
    store.flush()

    assert staged_names(store) == []
    assert objects(store) == [KEY]


def test_background_syncer_removes_released_staged_names(make_store: MakeStore) -> None:
    store = make_store(fsync=True)
    for n in range(5):
        staged = store.stage([DATA + bytes([n])])
        key = f"a/b/{n}.dcm"
        store.publish(staged, key)
        store.release(staged, published_as=key)

    wait_until(
        lambda: not staged_names(store), timeout=5, interval=0.02, message=lambda: str(staged_names(store))
    )

    assert staged_names(store) == []
    assert len(objects(store)) == 5


def test_close_finishes_pending_syncs(make_store: MakeStore) -> None:
    store = make_store(fsync=True)
    staged = store.stage([DATA])
    store.publish(staged, KEY)
    store.release(staged, published_as=KEY)

    store.close()

    assert staged_names(store) == []
    assert objects(store) == [KEY]


def test_release_without_fsync_removes_the_staged_name_at_once(tmp_path: Path) -> None:
    store = FileSystemBlobStore(tmp_path / "blobs", fsync=False)  # S3 always waits for the index sync
    staged = store.stage([DATA])
    store.publish(staged, KEY)

    store.release(staged, published_as=KEY)

    assert staged_names(store) == []
    assert objects(store) == [KEY]


def test_delete_removes_a_blob_and_tolerates_a_missing_one(store: Store) -> None:
    staged = store.stage([DATA])
    store.publish(staged, KEY)
    store.release(staged)

    store.delete(KEY)
    store.delete(KEY)

    assert objects(store) == []


def test_open_of_a_missing_blob_is_a_storage_error(store: Store) -> None:
    with pytest.raises(StorageError, match="cannot read blob"):
        store.open(KEY)


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a/../../b", "../x", "a/.."])
def test_keys_must_stay_inside_the_store(store: Store, key: str) -> None:
    with pytest.raises(ValueError, match="not a relative key"):
        store.get(key)
    with pytest.raises(ValueError, match="not a relative key"):
        store.put(key, DATA)
    staged = store.stage([DATA])
    with pytest.raises(ValueError, match="not a relative key"):
        store.publish(staged, key)


def test_stage_into_a_missing_staging_directory_is_a_storage_error(make_store: MakeStore) -> None:
    store = make_store()
    store.staging_area.directory.rmdir()

    with pytest.raises(StorageError, match="cannot make a staging folder"):
        store.stage([DATA])


def test_publish_where_a_file_blocks_the_directory_is_a_storage_error(tmp_path: Path) -> None:
    store = FileSystemBlobStore(tmp_path / "blobs")
    (store.objects / "1.2.3").write_bytes(b"in the way")
    staged = store.stage([DATA])

    with pytest.raises(StorageError, match="cannot publish"):
        store.publish(staged, KEY)


def test_store_directory_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")

    with pytest.raises(StorageError, match="cannot create blob store"):
        FileSystemBlobStore(tmp_path / "file" / "blobs")


# -- recovery: the states a crash leaves -----------------------------------------------------------------


def crash_state(store: Store, data: bytes, *, published: bool) -> tuple[StagedBlob, str]:
    """A write stopped after staging (and publishing, if ``published``), before release, by the end of
    its process."""
    staged = store.stage([data])
    key = key_by_content(staged.path)
    assert key is not None
    if published:
        store.publish(staged, key)
    die(store)
    return staged, key


def test_recover_removes_a_write_stopped_before_publishing(store: Store) -> None:
    crash_state(store, DATA, published=False)

    report = store.recover(key_by_content, Index())

    assert report == RecoveryReport(kept=0, removed=1)
    assert (staged_names(store), objects(store)) == ([], [])


def test_recover_removes_a_write_stopped_before_its_row_was_committed(store: Store) -> None:
    crash_state(store, DATA, published=True)

    report = store.recover(key_by_content, Index())

    assert report == RecoveryReport(kept=0, removed=1)
    assert (staged_names(store), objects(store)) == ([], [])


def test_recover_keeps_a_committed_write_and_drops_its_staged_name(store: Store) -> None:
    _staged, key = crash_state(store, DATA, published=True)

    report = store.recover(key_by_content, Index(key))

    assert report == RecoveryReport(kept=1, removed=0)
    assert (staged_names(store), objects(store)) == ([], [key])
    assert store.get(key) == DATA


def test_recover_restores_a_committed_blob_whose_link_was_lost(store: Store) -> None:
    """The row was durable, the directory entry under ``objects/`` was not (no sync before the crash)."""
    _staged, key = crash_state(store, DATA, published=True)
    store.delete(key)

    report = store.recover(key_by_content, Index(key))

    assert report == RecoveryReport(kept=1, removed=0)
    assert staged_names(store) == []
    assert store.get(key) == DATA


def test_recover_keeps_a_blob_another_write_published_under_the_same_key(store: Store) -> None:
    """Two identical instances: the first is committed, the second crashed before release; the committed
    blob is a different file under the same key and must survive."""
    first, key = crash_state(store, DATA, published=True)
    store.release(first)
    store.flush()
    crash_state(store, DATA, published=False)

    report = store.recover(key_by_content, Index(key))

    assert report == RecoveryReport(kept=1, removed=0)
    assert (staged_names(store), objects(store)) == ([], [key])


def test_recover_does_not_delete_a_blob_it_did_not_stage(store: Store) -> None:
    """A leftover not indexed whose key names an existing, unrelated file: only the leftover goes."""
    first, key = crash_state(store, DATA, published=True)
    store.release(first)
    crash_state(store, DATA, published=False)

    report = store.recover(key_by_content, Index())

    assert report.removed == 1
    assert objects(store) == [key]
    assert staged_names(store) == []


def test_recover_removes_unreadable_leftovers(store: Store) -> None:
    staged, _key = crash_state(store, DATA, published=True)
    garbage = staged.path.with_name("0123456789abcdef01234567.part")
    garbage.write_bytes(b"garbage, half written")
    (store.staging_area.root / "left.dcm").write_bytes(b"garbage too")  # as a version before nodes left

    report = store.recover(key_by_content, Index())

    assert report == RecoveryReport(kept=0, removed=3)
    assert (staged_names(store), objects(store)) == ([], [])


def test_recover_handles_a_mix_and_is_idempotent(store: Store) -> None:
    _a, kept_key = crash_state(store, DATA + b"a", published=True)
    crash_state(store, DATA + b"b", published=True)
    crash_state(store, DATA + b"c", published=False)
    index = Index(kept_key)

    assert store.recover(key_by_content, index) == RecoveryReport(kept=1, removed=2)
    assert store.recover(key_by_content, index) == RecoveryReport(kept=0, removed=0)
    assert (staged_names(store), objects(store)) == ([], [kept_key])


def test_recover_ignores_published_blobs_without_leftovers(store: Store) -> None:
    """Recovery looks at staging only: finished writes are not scanned (nor touched)."""
    staged, key = crash_state(store, DATA, published=True)
    store.release(staged)
    store.flush()

    assert store.recover(key_by_content, Index()) == RecoveryReport(kept=0, removed=0)
    assert objects(store) == [key]


# -- one staging folder per process ----------------------------------------------------------------------


def test_recovery_leaves_the_staged_files_of_a_live_process_alone(
    store: Store, make_store: MakeStore
) -> None:
    other = make_store()  # another process's store, writing
    staged = other.stage([DATA])
    published = other.stage([DATA + b"p"])
    assert key_by_content(published.path) is not None
    other.publish(published, str(key_by_content(published.path)))

    assert store.staged_leftovers() == []
    assert store.recover(key_by_content, Index()) == RecoveryReport(kept=0, removed=0)

    assert staged.path.read_bytes() == DATA
    assert published.path.exists() and len(objects(store)) == 1
    die(other)
    assert store.recover(key_by_content, Index()) == RecoveryReport(kept=0, removed=2)
    assert (staged_names(store), objects(store), list(store.staging_area.directory.iterdir())) == ([], [], [])


def test_a_staged_file_keeps_its_origin_for_recovery(store: Store, make_store: MakeStore) -> None:
    other = make_store()
    first = other.stage([DATA], origin='{"kind":"dimse","called_ae":"kp-lungs"}')
    second = other.stage([DATA + b"2"], origin="an upload")
    again = other.stage([DATA + b"3"], origin="an upload")
    plain = other.stage([DATA + b"4"])
    die(other)

    leftovers = store.staged_leftovers()

    assert sorted(leftovers) == sorted([first.path, second.path, again.path, plain.path])
    assert [store.origin_of(p) for p in (first.path, second.path, again.path, plain.path)] == [
        '{"kind":"dimse","called_ae":"kp-lungs"}',
        "an upload",
        "an upload",
        "",
    ]
    with pytest.raises(ValueError, match="one line"):
        store.stage([DATA], origin="two\nlines")


def test_a_clean_close_leaves_no_staging_folder(make_store: MakeStore) -> None:
    store = make_store()
    staged = store.stage([DATA], origin="someone")
    store.publish(staged, KEY)
    store.release(staged, published_as=KEY)
    store.close()
    assert list(store.staging_area.directory.iterdir()) == []
    assert objects(store) == [KEY]


def test_a_forked_process_stages_in_a_folder_of_its_own(store: Store) -> None:
    parent = store.stage([DATA]).path.parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the store object it inherited must not write into the parent's folder
        try:
            os.write(write, str(store.stage([DATA]).path.parent).encode())
        finally:
            os._exit(0)
    os.close(write)
    child = Path(os.read(read, 4096).decode())
    os.close(read)
    os.waitpid(pid, 0)
    assert child.parent == parent.parent and child != parent
    assert {p.parent for p in store.staged_leftovers()} == {child}  # the child has ended, we have not


# -- one staging area per node ---------------------------------------------------------------------------


def test_recovery_touches_only_its_own_nodes_staging(make_store: MakeStore) -> None:
    """Two nodes on one store: a process of node ``a`` has staged and published (its row not yet
    committed) when node ``b`` starts and recovers. ``b`` cannot see ``a``'s locks (another host), so it
    must not judge ``a``'s staging at all: nothing of ``a`` is touched."""
    first = make_store(node_id="a")
    staged = first.stage([DATA], origin="sender")
    key = key_by_content(staged.path)
    assert key is not None
    first.publish(staged, key)
    die(first)  # as node b sees it: a's lock is on another host

    second = make_store(node_id="b")
    assert second.staged_leftovers() == []
    assert second.recover(key_by_content, Index()) == RecoveryReport(kept=0, removed=0)
    second.close()

    assert staged.path.read_bytes() == DATA
    assert objects(first) == [key]
    assert first.recover(key_by_content, Index(key)) == RecoveryReport(kept=1, removed=0)  # a's own recovery


# -- reading and writing blobs ---------------------------------------------------------------------------


def test_put_get_range_and_list_by_prefix(store: Store) -> None:
    store.put("results/7/report.pdf", b"%PDF-" + bytes(range(256)))
    store.put("results/7/nested/mask.nii.gz", io.BytesIO(b"gz" * 5000))
    store.put("results/70/other", b"x")
    store.put("logs/7/job.log", b"line\n")

    assert store.get("results/7/report.pdf")[:5] == b"%PDF-"
    assert store.read_range("results/7/report.pdf", 5, 3) == bytes([0, 1, 2])
    assert store.read_range("results/7/report.pdf", 259, 100) == bytes([254, 255])
    assert store.read_range("results/7/report.pdf", 10_000, 10) == b""
    assert store.size("results/7/nested/mask.nii.gz") == 10_000
    assert store.list_keys("results/7/") == ["results/7/nested/mask.nii.gz", "results/7/report.pdf"]
    assert store.list_keys("results/7") == [
        "results/7/nested/mask.nii.gz",
        "results/7/report.pdf",
        "results/70/other",
    ]
    assert store.list_keys("nothing/") == []


def test_put_replaces_and_delete_removes(store: Store) -> None:
    store.put("uploads/1/a.dcm", b"first")
    store.put("uploads/1/a.dcm", b"second")
    assert store.get("uploads/1/a.dcm") == b"second"

    store.delete("uploads/1/a.dcm")

    assert not store.exists("uploads/1/a.dcm")
    with pytest.raises(StorageError, match="cannot read blob"):
        store.get("uploads/1/a.dcm")
    with pytest.raises(StorageError, match="cannot read blob"):
        store.size("uploads/1/a.dcm")


def test_local_files_gives_readable_files_and_cleans_up(store: Store, tmp_path: Path) -> None:
    store.put("a/1.dcm", b"one")
    store.put("b/2.dcm", b"two")
    scratch = tmp_path / "scratch"

    with store.local_files(["b/2.dcm", "a/1.dcm"], scratch) as paths:
        assert [p.read_bytes() for p in paths] == [b"two", b"one"]

    assert not scratch.exists() or list(scratch.iterdir()) == []


def test_hold_and_retire_delete_a_replaced_blob_after_the_index_sync(store: Store) -> None:
    staged = store.stage([DATA])
    store.publish(staged, KEY)
    store.release(staged, published_as=KEY)
    synced: list[bool] = []
    store.before_release = lambda: synced.append(True)

    hold = store.hold(KEY)
    assert hold.path.read_bytes() == DATA
    store.retire(KEY, hold)
    store.flush()

    assert synced and not store.exists(KEY) and not hold.path.exists()


def test_check_says_whether_the_store_answers(make_store: MakeStore, tmp_path: Path) -> None:
    make_store().check()
    if isinstance(make_store(), S3BlobStore):
        unreachable = S3BlobStore("no-such-bucket", tmp_path / "elsewhere", endpoint_url="http://127.0.0.1:9")
        with pytest.raises(StorageError, match="cannot be reached"):
            unreachable.check()
        unreachable.close()
