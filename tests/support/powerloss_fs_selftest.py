#!/usr/bin/env python3
"""Self-test for powerloss_fs.py.

Run as root on Linux with /dev/fuse and python3-fusepy installed:

    python3 tests/support/powerloss_fs_selftest.py

Mounts the file system in a temporary directory, checks the durability model
through the mount, measures small write+fdatasync pairs per second, and
checks that the daemon exits cleanly on SIGTERM and on an external umount.
Exits non-zero if any check fails.  The temporary directory and the mount
are removed in every case.
"""

import fcntl
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
FS_SCRIPT = os.path.join(HERE, "powerloss_fs.py")
READY_TIMEOUT = 30


class Mount:
    """One running powerloss_fs daemon over BACKING/DURABLE/MOUNTPOINT."""

    def __init__(self, base, name):
        self.root = os.path.join(base, name)
        self.backing = os.path.join(self.root, "backing")
        self.durable = os.path.join(self.root, "durable")
        self.mnt = os.path.join(self.root, "mnt")
        for path in (self.backing, self.durable, self.mnt):
            os.makedirs(path)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, FS_SCRIPT, self.backing, self.durable, self.mnt],
            stdout=subprocess.PIPE, text=True)
        lines = queue.Queue()

        def pump():
            for line in self.proc.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)  # EOF
        threading.Thread(target=pump, daemon=True).start()
        try:
            line = lines.get(timeout=READY_TIMEOUT)
        except queue.Empty:
            raise RuntimeError("daemon did not print 'ready' in time")
        if line != "ready":
            raise RuntimeError("daemon said %r instead of 'ready' (exit %s)"
                               % (line, self.proc.poll()))

    def m(self, rel):
        return os.path.join(self.mnt, rel)

    def b(self, rel):
        return os.path.join(self.backing, rel)

    def d(self, rel):
        return os.path.join(self.durable, rel)

    def stop(self):
        """SIGTERM the daemon; return its exit status (None if it hung)."""
        status = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                status = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.force_unmount()
        return status

    def force_unmount(self):
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], check=False)


# -- small helpers -------------------------------------------------------------

def read(path):
    with open(path, "rb") as f:
        return f.read()


def write_file(path, data, sync=None, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    """Write `data`; sync is None, "fsync" or "fdatasync"."""
    fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync == "fsync":
            os.fsync(fd)
        elif sync == "fdatasync":
            os.fdatasync(fd)
    finally:
        os.close(fd)


def expect_equal(what, got, want):
    if got == want:
        return
    if isinstance(got, bytes) and isinstance(want, bytes) and max(len(got), len(want)) > 64:
        diff = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y),
                    min(len(got), len(want)))
        raise AssertionError("%s: %d bytes vs %d wanted, first difference at offset %d"
                             % (what, len(got), len(want), diff))
    raise AssertionError("%s: got %r, want %r" % (what, got, want))


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


# -- the checks ----------------------------------------------------------------


def fsync_path(path):
    """Opens `path` read-only, fsyncs it and closes it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

def t01_unsynced_write_is_lost(fs):
    write_file(fs.m("t01"), b"hello world")
    expect_equal("live content", read(fs.m("t01")), b"hello world")
    expect_equal("BACKING content", read(fs.b("t01")), b"hello world")
    expect(os.path.isfile(fs.d("t01")), "created file missing in DURABLE")
    expect_equal("DURABLE content after close without fsync", read(fs.d("t01")), b"")


def t02_fsync_makes_content_durable(fs):
    write_file(fs.m("t02a"), b"synced with fsync", sync="fsync")
    expect_equal("DURABLE after fsync", read(fs.d("t02a")), b"synced with fsync")
    write_file(fs.m("t02b"), b"synced with fdatasync", sync="fdatasync")
    expect_equal("DURABLE after fdatasync", read(fs.d("t02b")), b"synced with fdatasync")


def t03_write_after_fsync_not_durable(fs):
    write_file(fs.m("t03"), b"0123456789", sync="fsync")
    fd = os.open(fs.m("t03"), os.O_RDWR)
    try:
        os.pwrite(fd, b"XYZ", 3)
        os.pwrite(fd, b"tail", 10)
        expect_equal("live", read(fs.m("t03")), b"012XYZ6789tail")
        expect_equal("DURABLE before second fsync", read(fs.d("t03")), b"0123456789")
        os.fsync(fd)
        expect_equal("DURABLE after second fsync", read(fs.d("t03")), b"012XYZ6789tail")
    finally:
        os.close(fd)


def t04_truncate_then_fsync(fs):
    data = bytes(random.getrandbits(8) for _ in range(1000))
    write_file(fs.m("t04"), data, sync="fsync")
    fd = os.open(fs.m("t04"), os.O_RDWR)
    try:
        os.ftruncate(fd, 100)
        expect_equal("DURABLE size before fsync", len(read(fs.d("t04"))), 1000)
        os.fsync(fd)
        expect_equal("DURABLE after ftruncate+fsync", read(fs.d("t04")), data[:100])
        # truncate by path (no file handle), then extend by truncate.
        os.truncate(fs.m("t04"), 50)
        os.truncate(fs.m("t04"), 300)
        expect_equal("DURABLE before fsync of path truncates", read(fs.d("t04")), data[:100])
        os.fsync(fd)
        expect_equal("DURABLE after shrink+extend", read(fs.d("t04")),
                     data[:50] + bytes(250))
        # Shrink below a write, then write past the old end, then sync.
        os.pwrite(fd, b"W" * 10, 20)
        os.ftruncate(fd, 10)
        os.pwrite(fd, b"Z", 40)
        os.fsync(fd)
        want = data[:10] + bytes(30) + b"Z"
        expect_equal("DURABLE after write/shrink/write", read(fs.d("t04")), want)
        expect_equal("BACKING agrees", read(fs.b("t04")), want)
    finally:
        os.close(fd)
    # O_TRUNC on open is a truncation too.
    write_file(fs.m("t04"), b"short")
    expect_equal("DURABLE after O_TRUNC without fsync", read(fs.d("t04")), want)
    fsync_path(fs.m("t04"))
    expect_equal("DURABLE after O_TRUNC + fsync", read(fs.d("t04")), b"short")


def t05_rename_without_fsync_loses_data(fs):
    write_file(fs.m("t05.db"), b"OLD CONTENT", sync="fsync")
    write_file(fs.m("t05.tmp"), b"NEW CONTENT")  # no fsync
    os.rename(fs.m("t05.tmp"), fs.m("t05.db"))
    expect_equal("live target", read(fs.m("t05.db")), b"NEW CONTENT")
    expect(not os.path.exists(fs.d("t05.tmp")), "tmp name still in DURABLE")
    expect_equal("DURABLE target after rename without fsync", read(fs.d("t05.db")), b"")
    # The dirty state moved with the file: a later fsync of the new name
    # still makes the content durable.
    fsync_path(fs.m("t05.db"))
    expect_equal("DURABLE target after late fsync", read(fs.d("t05.db")), b"NEW CONTENT")


def t06_fsync_then_rename_keeps_data(fs):
    write_file(fs.m("t06.db"), b"OLD", sync="fsync")
    write_file(fs.m("t06.tmp"), b"NEW CONTENT", sync="fsync")
    os.rename(fs.m("t06.tmp"), fs.m("t06.db"))
    expect_equal("DURABLE target", read(fs.d("t06.db")), b"NEW CONTENT")
    expect(not os.path.exists(fs.d("t06.tmp")), "tmp name still in DURABLE")


def t07_metadata_is_durable_at_once(fs):
    os.mkdir(fs.m("t07"))
    expect(os.path.isdir(fs.d("t07")), "mkdir not in DURABLE")
    write_file(fs.m("t07/f"), b"x")
    expect(os.path.isfile(fs.d("t07/f")), "create not in DURABLE")
    os.unlink(fs.m("t07/f"))
    expect(not os.path.lexists(fs.d("t07/f")), "unlink not in DURABLE")
    os.rmdir(fs.m("t07"))
    expect(not os.path.lexists(fs.d("t07")), "rmdir not in DURABLE")
    # chmod, symlink, hard link.
    write_file(fs.m("t07x"), b"")
    os.chmod(fs.m("t07x"), 0o640)
    expect_equal("DURABLE mode", os.stat(fs.d("t07x")).st_mode & 0o777, 0o640)
    os.symlink("t07x", fs.m("t07sym"))
    expect_equal("DURABLE symlink", os.readlink(fs.d("t07sym")), "t07x")
    os.link(fs.m("t07x"), fs.m("t07hard"))
    expect(os.path.samefile(fs.d("t07x"), fs.d("t07hard")), "hard link not in DURABLE")
    # Dirty state follows a file whose directory is renamed while it is open.
    os.mkdir(fs.m("t07a"))
    fd = os.open(fs.m("t07a/f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"moved while dirty")
        os.rename(fs.m("t07a"), fs.m("t07b"))
        expect(os.path.isfile(fs.d("t07b/f")), "directory rename not in DURABLE")
        expect_equal("DURABLE before fsync", read(fs.d("t07b/f")), b"")
        os.fsync(fd)
        expect_equal("DURABLE after fsync under new dir", read(fs.d("t07b/f")),
                     b"moved while dirty")
    finally:
        os.close(fd)


def t08_locks(fs):
    # Like the data directory's LOCK file: create, then flock(EX|NB).
    fd1 = os.open(fs.m("LOCK"), os.O_WRONLY | os.O_CREAT, 0o644)
    fd2 = os.open(fs.m("LOCK"), os.O_WRONLY)
    try:
        fcntl.flock(fd1, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            fcntl.flock(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("second flock on the same file did not conflict")
        except BlockingIOError:
            pass
        # POSIX record locks conflict between processes.
        fcntl.lockf(fd1, fcntl.LOCK_EX | fcntl.LOCK_NB)
        child = subprocess.run(
            [sys.executable, "-c",
             "import fcntl, os, sys\n"
             "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
             "try:\n"
             "    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "except OSError:\n"
             "    sys.exit(0)\n"
             "sys.exit(1)\n", fs.m("LOCK")])
        expect_equal("child blocked by fcntl lock (exit status)", child.returncode, 0)
    finally:
        os.close(fd1)
    try:
        fcntl.flock(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free now
    finally:
        os.close(fd2)


def t09_large_file_in_chunks(fs):
    data = random.randbytes(4 << 20)
    fd = os.open(fs.m("t09"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for off in range(0, len(data), 64 << 10):
            expect_equal("chunk write", os.write(fd, data[off:off + (64 << 10)]), 64 << 10)
        expect_equal("DURABLE before fsync", os.path.getsize(fs.d("t09")), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    expect_equal("DURABLE copy of 4 MiB file", read(fs.d("t09")), data)
    expect_equal("live 4 MiB file", read(fs.m("t09")), data)


def t10_holes(fs):
    pieces = [(0, b"a" * 10), ((1 << 20) + 7, b"b" * 100), (5 << 20, b"c" * 4097)]
    fd = os.open(fs.m("t10"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for off, chunk in pieces:
            os.pwrite(fd, chunk, off)
        os.fsync(fd)
        os.pwrite(fd, b"unsynced", 3 << 20)  # must not reach DURABLE
    finally:
        os.close(fd)
    want = bytearray((5 << 20) + 4097)
    for off, chunk in pieces:
        want[off:off + len(chunk)] = chunk
    expect_equal("DURABLE file with holes", read(fs.d("t10")), bytes(want))
    want[3 << 20:(3 << 20) + 8] = b"unsynced"
    expect_equal("live file with holes", read(fs.m("t10")), bytes(want))


def t11_o_append(fs):
    write_file(fs.m("t11"), b"start;", sync="fsync")
    fd = os.open(fs.m("t11"), os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(3):
            os.write(fd, b"rec%d;" % i)
        expect_equal("DURABLE before fsync", read(fs.d("t11")), b"start;")
        os.fdatasync(fd)
    finally:
        os.close(fd)
    expect_equal("DURABLE after appends", read(fs.d("t11")), b"start;rec0;rec1;rec2;")


def t12_unlinked_open_file(fs):
    fd = os.open(fs.m("t12"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"before unlink")
        os.unlink(fs.m("t12"))
        os.write(fd, b" after unlink")
        os.fsync(fd)
        expect_equal("read back", os.pread(fd, 100, 0), b"before unlink after unlink")
    finally:
        os.close(fd)
    expect(not os.path.lexists(fs.d("t12")), "unlinked file in DURABLE")
    hidden = [n for n in os.listdir(fs.mnt) if n.startswith(".fuse_hidden")]
    expect_equal("hidden files in mount", hidden, [])


def t13_o_dsync_writes_are_synced(fs):
    fd = os.open(fs.m("t13"), os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o644)
    try:
        os.write(fd, b"dsync data")
        expect_equal("DURABLE after O_DSYNC write", read(fs.d("t13")), b"dsync data")
    finally:
        os.close(fd)


def t14_parallel_writers(fs):
    errors = []

    def worker(n):
        try:
            name = fs.m("t14.%d" % n)
            fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o644)
            rnd = random.Random(n)
            try:
                for i in range(300):
                    os.pwrite(fd, rnd.randbytes(rnd.randint(1, 3000)),
                              rnd.randint(0, 200000))
                    if i % 37 == 0:
                        os.fdatasync(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expect(not errors, "worker failed: %r" % errors)
    for n in range(6):
        expect(read(fs.d("t14.%d" % n)) == read(fs.b("t14.%d" % n)),
               "DURABLE differs for parallel writer %d" % n)


TESTS = [t01_unsynced_write_is_lost, t02_fsync_makes_content_durable,
         t03_write_after_fsync_not_durable, t04_truncate_then_fsync,
         t05_rename_without_fsync_loses_data, t06_fsync_then_rename_keeps_data,
         t07_metadata_is_durable_at_once, t08_locks, t09_large_file_in_chunks,
         t10_holes, t11_o_append, t12_unlinked_open_file,
         t13_o_dsync_writes_are_synced, t14_parallel_writers]


def measure_throughput(fs, seconds=3.0):
    """Small write + fdatasync pairs per second through the mount."""
    record = b"r" * 100
    fd = os.open(fs.m("throughput"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    count = 0
    try:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            os.write(fd, record)
            os.fdatasync(fd)
            count += 1
        elapsed = time.monotonic() - start
    finally:
        os.close(fd)
    expect_equal("DURABLE size after throughput run",
                 os.path.getsize(fs.d("throughput")), 100 * count)
    return count / elapsed


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse missing")
        return 1
    base = tempfile.mkdtemp(prefix="powerloss-selftest-")
    mounts = []
    failures = 0

    def report(name, exc):
        nonlocal failures
        if exc is None:
            print("PASS %s" % name, flush=True)
        else:
            failures += 1
            print("FAIL %s: %s" % (name, exc), flush=True)
            if not isinstance(exc, AssertionError):
                traceback.print_exception(type(exc), exc, exc.__traceback__)

    try:
        fs = Mount(base, "main")
        mounts.append(fs)
        fs.start()
        for test in TESTS:
            try:
                test(fs)
                report(test.__name__, None)
            except Exception as exc:
                report(test.__name__, exc)
        try:
            rate = measure_throughput(fs)
            print("throughput: %.0f write(100 B)+fdatasync pairs/s" % rate, flush=True)
            report("throughput_run", None)
        except Exception as exc:
            report("throughput_run", exc)

        # SIGTERM: the daemon unmounts and exits 0.
        status = fs.stop()
        try:
            expect_equal("exit status after SIGTERM", status, 0)
            expect(not os.path.ismount(fs.mnt), "still mounted after SIGTERM")
            report("clean_exit_on_sigterm", None)
        except Exception as exc:
            report("clean_exit_on_sigterm", exc)

        # External umount: the daemon notices and exits 0.
        fs2 = Mount(base, "second")
        mounts.append(fs2)
        try:
            fs2.start()
            write_file(fs2.m("f"), b"x", sync="fsync")
            subprocess.run(["umount", fs2.mnt], check=True)
            status = fs2.proc.wait(timeout=15)
            expect_equal("exit status after umount", status, 0)
            expect_equal("DURABLE survives", read(fs2.d("f")), b"x")
            report("clean_exit_on_umount", None)
        except Exception as exc:
            report("clean_exit_on_umount", exc)
    except BaseException as exc:
        report("setup", exc)
    finally:
        for mount in mounts:
            mount.stop()
        if any(os.path.ismount(mount.mnt) for mount in mounts):
            print("WARNING: mount still present, leaving %s" % base)
            failures += 1
        else:
            shutil.rmtree(base, ignore_errors=True)

    print("%s: %d failure(s)" % ("FAILED" if failures else "OK", failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
