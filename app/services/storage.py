"""Where attachment bytes live: a small async interface and its local-disk backend.

Keys are random hex strings the server generates (`new_key()`); a backend refuses anything
else, so no user input ever becomes a path. The embedded default keeps files under
`<data_dir>/attachments/`; `HELPDESK_ATTACHMENTS__BACKEND=s3` puts them on S3-compatible object
storage instead (app/services/s3.py), so several machines serve the same files.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    import httpx

    from app.core.config import AttachmentSettings

_KEY = re.compile(r"^[0-9a-f]{32}$")
CHUNK_SIZE = 64 * 1024


class StorageError(Exception):
    """Base for storage failures."""


class InvalidKey(StorageError, ValueError):
    """A key that is not one `new_key()` could have made."""


class ObjectNotFound(StorageError, KeyError):
    """No object is stored under the key."""


def new_key() -> str:
    """A fresh storage key: 128 random bits as 32 lower-case hex digits."""
    return secrets.token_hex(16)


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidKey(key)
    return key


class StoredObject(Protocol):
    """An opened object: its size, known before the first byte is sent, and its bytes."""

    @property
    def size(self) -> int: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The bytes in order; the object is closed when the iteration ends."""
        ...

    async def aclose(self) -> None: ...


class Storage(Protocol):
    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, all or nothing: a reader never sees a partial object."""
        ...

    async def get(self, key: str) -> bytes:
        """The whole object; ObjectNotFound if there is none."""
        ...

    async def open(self, key: str) -> StoredObject:
        """The object for streaming; ObjectNotFound (raised here, before any byte) if missing."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    async def exists(self, key: str) -> bool: ...


class LocalStorage:
    """Files under `root`, fanned out by the key's first two digits (`ab/abcdef...`).

    Every file operation runs in a worker thread, never on the event loop. A write goes to a
    temporary file in the target directory, is flushed to disk and renamed over the final name
    (`os.replace` is atomic on POSIX and Windows), so a crash leaves the old state or the new one.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key

    async def put(self, key: str, data: bytes) -> None:
        await anyio.to_thread.run_sync(_write_atomically, self._path(key), data)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await anyio.Path(path).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    async def open(self, key: str) -> StoredObject:
        path = self._path(key)
        try:
            handle = await anyio.open_file(path, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        try:
            size = (await anyio.to_thread.run_sync(os.fstat, handle.wrapped.fileno())).st_size
        except BaseException:
            await handle.aclose()
            raise
        return _LocalObject(handle, size)

    async def delete(self, key: str) -> None:
        await anyio.Path(self._path(key)).unlink(missing_ok=True)

    async def exists(self, key: str) -> bool:
        return await anyio.Path(self._path(key)).is_file()


class _LocalObject:
    def __init__(self, handle: anyio.AsyncFile[bytes], size: int) -> None:
        self._handle = handle
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await self._handle.read(CHUNK_SIZE):
                yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self._handle.aclose()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is; Windows cannot open directories.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_storage(settings: AttachmentSettings, *, data_dir: Path, http: httpx.AsyncClient) -> Storage:
    """The backend the settings choose (`HELPDESK_ATTACHMENTS__BACKEND`)."""
    if settings.backend == "s3":
        from app.services.s3 import S3Storage  # here: s3 builds on this module

        return S3Storage(settings, http)
    return LocalStorage(data_dir / "attachments")
