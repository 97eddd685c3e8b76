#!/usr/bin/env python3
"""FUSE pass-through file system that models a power cut.

Usage:
    python3 powerloss_fs.py BACKING DURABLE MOUNTPOINT

BACKING holds the live tree that processes see through MOUNTPOINT.  DURABLE
holds, at every moment, exactly what would survive if power were cut now.
At start BACKING and DURABLE must hold identical trees (normally both are
empty); whatever they hold then counts as durable.  The program stays in the
foreground, prints one line "ready" on stdout once the mount answers, and
exits on SIGTERM, SIGINT or SIGHUP (it unmounts) or when unmounted from
outside (umount / fusermount -u).  Exit status: 0 clean, 1 mount failure,
3 if DURABLE ever failed to mirror a metadata change (reported on stderr).
If the daemon is SIGKILLed the mount stays behind ("transport endpoint is not
connected"); remove it with `umount -l MOUNTPOINT`.

To simulate the cut, kill the processes using the mount (SIGKILL) and read
DURABLE only then, or after the daemon has exited: an operation still in
flight may be half applied.  To "reboot", copy DURABLE (cp -a) into a fresh
BACKING and a fresh DURABLE and mount again.

Durability model
----------------
File data.  write, truncate and ftruncate go to BACKING at once and are
remembered as dirty state of the file: a set of dirty byte ranges plus the
smallest size the file was truncated to since its last sync (an open with
O_TRUNC counts as truncation to 0).  Nothing of it reaches DURABLE until an
fsync or fdatasync of that file (both treated alike).  A sync opens the
file's DURABLE copy, truncates it to the recorded smallest size (if any),
copies the dirty ranges from BACKING into it, sets its size to BACKING's
current size and clears the dirty state.  Writes through a descriptor opened
with O_SYNC or O_DSYNC are synced as part of the write.  flush and release
(close) are not syncs: a closed, unsynced file stays dirty.

Dirty state belongs to the file, not to its name: it is keyed by BACKING's
(st_dev, st_ino), so a rename, a rename of a parent directory or a hard link
carries it along.  It is dropped when the file's last name goes away (unlink,
or being the target of a rename) or when the last descriptor of an unlinked
file is closed.

Metadata.  Namespace and attribute changes are durable at once, as on a
file system with a metadata journal: mkdir, rmdir, create and mknod (DURABLE
gets an EMPTY file), unlink, rename, symlink, link, chmod and chown are
applied to BACKING and then repeated on DURABLE.  Hence writing a temporary
file and renaming it over a target without fsync leaves in DURABLE, under the
target name, only what had been fsynced under the temporary name (possibly
nothing): the classic rename-without-fsync data loss.  fsyncdir is a no-op.
Timestamps (utimens) are applied to BACKING only.

Everything else (getattr, read, readdir, readlink, statfs, access, open,
utimens) is served from BACKING.  Open and create return real BACKING
descriptors as FUSE file handles; I/O uses os.pread/os.pwrite at the offset
the kernel supplies (for O_APPEND the kernel supplies the end of file, so
BACKING descriptors are opened without O_APPEND).

Locks.  The lock and flock operations are deliberately not implemented, so
the kernel keeps flock(2) and fcntl(2) locks locally on the FUSE inodes.
They therefore work, with real conflicts, between all processes on this
machine that use the mount; they are not visible on BACKING itself.

Limits (from fusepy 3.0 on libfuse 2.9): no fallocate (callers get
EOPNOTSUPP and fall back to writing), no rename flags (renameat2 with
RENAME_NOREPLACE or RENAME_EXCHANGE fails with EINVAL), no extended
attributes (EOPNOTSUPP).  An unlinked file that is still open is gone from
DURABLE; syncing it does nothing.  If a file that is still open is unlinked
while it has another hard link, fsync through that descriptor cannot find a
path and does nothing (the data stays dirty until a sync through the
other name).
"""

import errno
import importlib.util
import logging
import os
import stat
import sys
import threading
import time
from bisect import bisect_left


def _load_fusepy():
    """Import fusepy under any of its names (pip: fuse, Debian: fusepy).

    Debian's python3-fusepy lives in /usr/lib/python3/dist-packages, which an
    interpreter from pyenv or a venv does not search; the module is pure
    Python (ctypes over libfuse2), so loading the file directly is safe.
    """
    for name in ("fuse", "fusepy"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        if hasattr(module, "FUSE"):
            return module
    for path in ("/usr/lib/python3/dist-packages/fusepy.py",
                 "/usr/lib/python3/dist-packages/fuse.py"):
        if os.path.exists(path):
            spec = importlib.util.spec_from_file_location("fusepy", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules["fusepy"] = module
            return module
    sys.exit("powerloss_fs: fusepy not found (apt-get install python3-fusepy)")


fusepy = _load_fusepy()
FuseOSError = fusepy.FuseOSError

COPY_CHUNK = 1 << 20

# Flags never passed on to BACKING's open(): O_APPEND because we write at
# the kernel's offset, O_DIRECT because our buffers are not aligned, the
# sync flags because BACKING's own durability is irrelevant (they are
# honoured in the model instead), and creation flags handled by create().
_STRIPPED_FLAGS = (os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOCTTY
                   | getattr(os, "O_DIRECT", 0) | os.O_SYNC | os.O_DSYNC)


class RangeSet:
    """Sorted, disjoint, non-touching half-open byte ranges [start, end)."""

    def __init__(self):
        self.starts = []
        self.ends = []

    def add(self, start, end):
        if start >= end:
            return
        # First range that overlaps or touches [start, end): ends are sorted
        # because the ranges are disjoint and sorted.
        i = bisect_left(self.ends, start)
        j = i
        while j < len(self.starts) and self.starts[j] <= end:
            start = min(start, self.starts[j])
            end = max(end, self.ends[j])
            j += 1
        self.starts[i:j] = [start]
        self.ends[i:j] = [end]

    def clip(self, limit):
        """Forget everything at or beyond `limit`."""
        i = bisect_left(self.ends, limit + 1)  # first range ending past limit
        del self.starts[i + 1:]
        del self.ends[i + 1:]
        if i < len(self.starts):
            if self.starts[i] >= limit:
                del self.starts[i]
                del self.ends[i]
            else:
                self.ends[i] = limit

    def __iter__(self):
        return iter(list(zip(self.starts, self.ends)))


class DirtyFile:
    """What has happened to a file's data since its last sync."""

    def __init__(self):
        self.ranges = RangeSet()
        self.min_truncate = None  # smallest size truncated to, or None

    def truncated(self, length):
        self.ranges.clip(length)
        if self.min_truncate is None or length < self.min_truncate:
            self.min_truncate = length


class Handle:
    """An open BACKING descriptor handed to FUSE as the file handle."""

    def __init__(self, key, sync_writes):
        self.key = key                  # (st_dev, st_ino) of the file
        self.sync_writes = sync_writes  # opened with O_SYNC / O_DSYNC


def _key(st):
    return (st.st_dev, st.st_ino)


class PowerLossFS:
    # fusepy: timestamps as integer nanoseconds.
    use_ns = True
    # libfuse: allow a NULL path for operations on an open file whose name
    # was removed (needed with hard_remove, see main()).
    flag_nullpath_ok = 1

    def __init__(self, backing, durable, mountpoint):
        self.backing = backing
        self.durable = durable
        self.mountpoint = mountpoint
        # One lock for the dirty state, the handle table and every operation
        # that changes BACKING, so DURABLE never sees half an operation.
        self._mutex = threading.RLock()
        self.dirty = {}     # file key -> DirtyFile
        self.handles = {}   # BACKING fd -> Handle
        self.divergences = 0

    # fusepy dispatches every operation through the instance. Only methods
    # defined here are registered with libfuse; anything else is ENOSYS.
    def __call__(self, op, *args):
        return getattr(self, op)(*args)

    # -- helpers -----------------------------------------------------------

    def _b(self, path):
        return self.backing + path

    def _d(self, path):
        return self.durable + path

    def _diverged(self, what, exc):
        self.divergences += 1
        print("powerloss_fs: DURABLE failed to mirror %s: %s" % (what, exc),
              file=sys.stderr, flush=True)

    def _mirror(self, what, func, *args):
        """Repeat a metadata change on DURABLE (BACKING already succeeded)."""
        try:
            func(*args)
        except OSError as exc:
            self._diverged(what, exc)

    def _state(self, key):
        state = self.dirty.get(key)
        if state is None:
            state = self.dirty[key] = DirtyFile()
        return state

    def _handle(self, fi):
        handle = self.handles.get(fi.fh)
        if handle is None:
            raise FuseOSError(errno.EBADF)
        return handle

    def _register(self, fd, fuse_flags):
        handle = Handle(_key(os.fstat(fd)), bool(fuse_flags & os.O_DSYNC))
        self.handles[fd] = handle
        return handle

    def _sync(self, path, key):
        """Make the file at `path` (identified by `key`) durable."""
        state = self.dirty.pop(key, None)
        if state is None:
            return  # nothing changed since the last sync
        try:
            self._copy_to_durable(path, state)
        except OSError as exc:
            # Keep the file dirty. The lock is held for the whole sync, so no
            # newer state can have been recorded in the meantime.
            self.dirty[key] = state
            print("powerloss_fs: sync of %s failed: %s" % (path, exc),
                  file=sys.stderr, flush=True)
            raise FuseOSError(errno.EIO)

    def _copy_to_durable(self, path, state):
        src = os.open(self._b(path), os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                dst = os.open(self._d(path), os.O_WRONLY | os.O_CLOEXEC)
            except FileNotFoundError as exc:
                # Create and durability are one operation, so this means the
                # two trees drifted apart; recreate the file and go on.
                self._diverged("existence of " + path, exc)
                dst = os.open(self._d(path),
                              os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if state.min_truncate is not None:
                    os.ftruncate(dst, state.min_truncate)
                size = os.fstat(src).st_size
                for start, end in state.ranges:
                    end = min(end, size)
                    pos = start
                    while pos < end:
                        data = os.pread(src, min(COPY_CHUNK, end - pos), pos)
                        if not data:
                            break
                        written = os.pwrite(dst, data, pos)
                        pos += written
                os.ftruncate(dst, size)
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _forget_if_last_link(self, st):
        """Drop dirty state of a file whose last name was just removed."""
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_nlink <= 1:
            self.dirty.pop(_key(st), None)

    # -- lifecycle ---------------------------------------------------------

    def init(self, path):
        # Called while libfuse handles FUSE_INIT; the kernel answers requests
        # only after that returns, so announce readiness from another thread
        # once the mount point really is served by us.
        threading.Thread(target=self._announce_ready, daemon=True).start()

    def _announce_ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if os.path.ismount(self.mountpoint):
                    os.stat(self.mountpoint)
                    print("ready", flush=True)
                    return
            except OSError:
                pass
            time.sleep(0.01)
        print("powerloss_fs: mount did not come up", file=sys.stderr,
              flush=True)

    def destroy(self, path):
        with self._mutex:
            for fd in list(self.handles):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.handles.clear()

    # -- attributes and lookups (BACKING only) -------------------------------

    def getattr(self, path, fh=None):
        # fh is a fuse_file_info (raw_fi) or a NULL pointer (falsy).
        if fh:
            st = os.fstat(fh.fh)
        elif path is not None:
            st = os.lstat(self._b(path))
        else:
            raise FuseOSError(errno.ENOENT)
        return {
            "st_mode": st.st_mode, "st_ino": st.st_ino, "st_dev": st.st_dev,
            "st_nlink": st.st_nlink, "st_uid": st.st_uid, "st_gid": st.st_gid,
            "st_rdev": st.st_rdev, "st_size": st.st_size,
            "st_blocks": st.st_blocks, "st_blksize": st.st_blksize,
            "st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns,
            "st_ctime": st.st_ctime_ns,
        }

    def readlink(self, path):
        return os.readlink(self._b(path))

    def access(self, path, amode):
        if not os.access(self._b(path), amode):
            raise FuseOSError(errno.EACCES)
        return 0

    def statfs(self, path):
        sv = os.statvfs(self._b(path))
        return {name: getattr(sv, name) for name in (
            "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
            "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")}

    def utimens(self, path, times=None):
        if times is None:
            os.utime(self._b(path), follow_symlinks=False)
        else:
            os.utime(self._b(path), ns=times, follow_symlinks=False)
        return 0

    # -- directories -------------------------------------------------------

    def opendir(self, path):
        return 0

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._b(path))

    def releasedir(self, path, fh):
        return 0

    def fsyncdir(self, path, datasync, fh):
        return 0  # metadata is durable already

    # -- metadata changes: BACKING, then DURABLE -----------------------------

    def mkdir(self, path, mode):
        with self._mutex:
            os.mkdir(self._b(path), mode)
            self._mirror("mkdir " + path, os.mkdir, self._d(path), mode)
        return 0

    def rmdir(self, path):
        with self._mutex:
            os.rmdir(self._b(path))
            self._mirror("rmdir " + path, os.rmdir, self._d(path))
        return 0

    def mknod(self, path, mode, dev):
        with self._mutex:
            os.mknod(self._b(path), mode, dev)
            if stat.S_ISREG(mode):
                # A new inode may reuse the number of a forgotten one.
                self.dirty.pop(_key(os.lstat(self._b(path))), None)
            self._mirror("mknod " + path, os.mknod, self._d(path), mode, dev)
        return 0

    def unlink(self, path):
        with self._mutex:
            st = os.lstat(self._b(path))
            os.unlink(self._b(path))
            self._forget_if_last_link(st)
            self._mirror("unlink " + path, os.unlink, self._d(path))
        return 0

    def rename(self, old, new):
        with self._mutex:
            src = os.lstat(self._b(old))
            try:
                dst = os.lstat(self._b(new))
            except FileNotFoundError:
                dst = None
            os.rename(self._b(old), self._b(new))
            # Renaming a name onto another link of the same inode does
            # nothing; otherwise the replaced target may lose its last name.
            if dst is not None and _key(dst) != _key(src):
                self._forget_if_last_link(dst)
            self._mirror("rename %s -> %s" % (old, new),
                         os.rename, self._d(old), self._d(new))
        return 0

    def symlink(self, path, target):
        # fusepy passes (name of the new link, what it points to).
        with self._mutex:
            os.symlink(target, self._b(path))
            self._mirror("symlink " + path, os.symlink, target, self._d(path))
        return 0

    def link(self, path, existing):
        # fusepy passes (new name, existing name).
        with self._mutex:
            os.link(self._b(existing), self._b(path), follow_symlinks=False)
            self._mirror("link %s -> %s" % (path, existing), os.link,
                         self._d(existing), self._d(path))
        return 0

    def chmod(self, path, mode):
        with self._mutex:
            os.chmod(self._b(path), mode)
            self._mirror("chmod " + path, os.chmod, self._d(path), mode)
        return 0

    def chown(self, path, uid, gid):
        with self._mutex:
            os.chown(self._b(path), uid, gid, follow_symlinks=False)
            self._mirror("chown " + path, os.chown, self._d(path), uid, gid,
                         follow_symlinks=False)
        return 0

    # -- files ---------------------------------------------------------------

    def open(self, path, fi):
        # raw_fi: fi is the fuse_file_info; we set fi.fh and return 0.
        flags = (fi.flags & ~_STRIPPED_FLAGS) | os.O_CLOEXEC
        with self._mutex:
            fd = os.open(self._b(path), flags)
            handle = self._register(fd, fi.flags)
            # The kernel normally truncates with a separate setattr, but an
            # O_TRUNC that does arrive here is a truncation to 0 as well.
            if flags & os.O_TRUNC and (flags & os.O_ACCMODE) != os.O_RDONLY:
                self._state(handle.key).truncated(0)
        fi.fh = fd
        return 0

    def create(self, path, mode, fi):
        flags = ((fi.flags & ~_STRIPPED_FLAGS) | os.O_CREAT | os.O_CLOEXEC
                 | (fi.flags & os.O_EXCL))
        with self._mutex:
            existed = os.path.lexists(self._b(path))
            fd = os.open(self._b(path), flags, mode)
            handle = self._register(fd, fi.flags)
            if not existed:
                self.dirty.pop(handle.key, None)  # fresh inode, fresh state

                def make_empty():
                    os.close(os.open(self._d(path), os.O_WRONLY | os.O_CREAT
                                     | os.O_TRUNC | os.O_CLOEXEC, mode))
                self._mirror("create " + path, make_empty)
            elif flags & os.O_TRUNC:
                self._state(handle.key).truncated(0)
        fi.fh = fd
        return 0

    def read(self, path, size, offset, fi):
        return os.pread(fi.fh, size, offset)

    def write(self, path, data, offset, fi):
        with self._mutex:
            handle = self._handle(fi)
            written = os.pwrite(fi.fh, data, offset)
            self._state(handle.key).ranges.add(offset, offset + written)
            if handle.sync_writes and path is not None:
                self._sync(path, handle.key)
        return written

    def truncate(self, path, length, fh=None):
        with self._mutex:
            if fh:
                key = self._handle(fh).key
                os.ftruncate(fh.fh, length)
            else:
                key = _key(os.lstat(self._b(path)))
                os.truncate(self._b(path), length)
            self._state(key).truncated(length)
        return 0

    def flush(self, path, fi):
        return 0  # close is not a sync

    def fsync(self, path, datasync, fi):
        with self._mutex:
            handle = self._handle(fi)
            if path is None:
                # The name this descriptor was opened under is gone. If no
                # link is left, the file is gone from DURABLE too.
                if os.fstat(fi.fh).st_nlink == 0:
                    self.dirty.pop(handle.key, None)
                return 0
            current = _key(os.lstat(self._b(path)))
            if current != handle.key:
                self._diverged("fsync %s (inode changed)" % path,
                               "handle and path disagree")
                raise FuseOSError(errno.EIO)
            self._sync(path, handle.key)
        return 0

    def release(self, path, fi):
        with self._mutex:
            handle = self.handles.pop(fi.fh, None)
            try:
                if handle is not None and os.fstat(fi.fh).st_nlink == 0:
                    self.dirty.pop(handle.key, None)
            finally:
                # Remove from the table before closing: once closed, the fd
                # number may be handed out again by another open().
                os.close(fi.fh)
        return 0


def main(argv):
    if len(argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    backing, durable, mountpoint = (os.path.realpath(p) for p in argv[1:])
    for name, path in (("BACKING", backing), ("DURABLE", durable),
                       ("MOUNTPOINT", mountpoint)):
        if not os.path.isdir(path):
            print("powerloss_fs: %s %s is not a directory" % (name, path),
                  file=sys.stderr)
            return 2
    for name, path in (("BACKING", backing), ("DURABLE", durable)):
        if path == mountpoint or path.startswith(mountpoint + os.sep):
            print("powerloss_fs: %s must not be inside MOUNTPOINT" % name,
                  file=sys.stderr)
            return 2
    if backing == durable:
        print("powerloss_fs: BACKING and DURABLE must differ", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="powerloss_fs: %(name)s: %(message)s")
    # The kernel already applied the caller's umask to every mode it sends.
    os.umask(0)

    fs = PowerLossFS(backing, durable, mountpoint)
    try:
        fusepy.FUSE(
            fs, mountpoint,
            raw_fi=True,          # we need open/create flags and set fi.fh
            foreground=True,
            nothreads=False,
            fsname="powerloss", subtype="powerloss",
            # Unlink really unlinks (no .fuse_hidden files appearing in
            # directory listings); open descriptors keep working.
            hard_remove=True,
            use_ino=True,         # report BACKING's inode numbers
            big_writes=True,      # writes up to 128 KiB per request
            # No writeback_cache, no direct_io: writes reach us synchronously.
        )
    except RuntimeError as exc:
        print("powerloss_fs: FUSE failed: %s" % exc, file=sys.stderr)
        return 1
    if fs.divergences:
        print("powerloss_fs: %d mirror failures" % fs.divergences,
              file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
