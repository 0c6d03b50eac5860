"""A filesystem that forgets what was not fsynced: the power nemeses' disk (in the spirit of
LazyFS, which Jepsen uses for the same purpose).

A kill -9 keeps the page cache: every write(2) a process made survives it, synced or not. A power
cut does not. This module serves a node's data directory through FUSE (mfusepy over libfuse3) as a
passthrough to a backing directory (the "page cache": what processes see), and keeps beside it a
model of what a disk would hold after a power cut:

* the durable content of each file (a shadow copy), updated only by fsync/fdatasync of that file,
  which copies the ranges written since the last one (and the size);
* the durable entries of each directory (name -> kind, file id, mode), updated only by an fsync of
  that directory. A create, rename, link, unlink, mkdir or rmdir is not durable until its
  directory is synced (POSIX; ext4 usually persists it sooner, other filesystems may not).

Files and directories have ids of their own (not inode numbers, which the backing filesystem
reuses), so a rename or a link keeps the file's durable content and an unlinked file's id is never
taken by another.

``cut`` (the power loss; the node must be dead) throws the page cache away: the backing directory
is rebuilt from the durable model, so every unsynced write, create, rename and unlink is undone,
then the model starts again with everything durable. It answers how much it dropped.

Not modelled: a rename across directories is durable in each directory separately (a real
filesystem commits it atomically); symlinks are refused. raftkms and RocksDB use neither.

Run as a process per node (``python -m rkj.lazyfs BACKING SHADOW MOUNT CONTROL``, from a Python
with mfusepy: see jepsen/README.md); the harness talks to it over the Unix socket CONTROL, one
JSON line per request: ``{"op": "status"}`` or ``{"op": "cut"}``. ``LazyModel`` does the
bookkeeping and has no FUSE in it, so jepsen/tests/test_lazyfs.py tests it on a plain directory.
"""

import errno
import json
import os
import shutil
import socket
import stat
import sys
import threading
import time

ROOT_ID = 0


def _err(code):
    return OSError(code, os.strerror(code))


def merge_ranges(ranges):
    """Sorted, non-overlapping (start, end) ranges covering ``ranges``."""
    out = []
    for s, e in sorted(r for r in ranges if r[1] > r[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


class LazyModel:
    """The page cache (``backing``) and the durable model (``shadow`` files + ``durable``)."""

    def __init__(self, backing, shadow):
        self.backing = os.path.abspath(backing)
        self.shadow = os.path.abspath(shadow)
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.shadow, exist_ok=True)
        self.lock = threading.RLock()
        self.next_id = ROOT_ID + 1
        self.ids = {}      # live path ("/", "/a/b") -> id (files and directories)
        self.kinds = {}    # id -> "f" | "d"
        self.durable = {}  # directory id -> {name: (kind, id, mode)} as a power cut leaves it
        self.dirty = {}    # file id -> [(start, end)] written since its last fsync
        self.handles = {}  # fh -> (fd, id)
        self.next_fh = 1
        self.generation = 0
        self.counts = {"writes": 0, "bytes_written": 0, "fsyncs": 0, "dir_fsyncs": 0, "cuts": 0}
        self.writes_since_cut = 0  # the harness checks that a node wrote to the disk it cuts
        self._adopt()

    # ------------------------------------------------------------------ paths and ids

    def real(self, path):
        return self.backing + path if path != "/" else self.backing

    def _shadow(self, fid):
        return os.path.join(self.shadow, "%d" % fid)

    def _new_id(self, kind):
        fid = self.next_id
        self.next_id += 1
        self.kinds[fid] = kind
        if kind == "d":
            self.durable[fid] = {}
        return fid

    def _id(self, path):
        fid = self.ids.get(path)
        if fid is None:
            raise _err(errno.ENOENT)
        return fid

    def _adopt(self):
        """Whatever the backing directory holds now is durable (a fresh mount, or after a cut).
        Names of one inode (hard links) get one id."""
        for name in os.listdir(self.shadow):
            os.unlink(os.path.join(self.shadow, name))
        self.ids = {"/": ROOT_ID}
        self.kinds = {ROOT_ID: "d"}
        self.durable = {ROOT_ID: {}}
        self.dirty = {}
        by_inode = {}
        for top, dirs, files in os.walk(self.backing):
            rel = "/" + os.path.relpath(top, self.backing) if top != self.backing else "/"
            did = self.ids[rel]
            for name in sorted(dirs) + sorted(files):
                p = (rel.rstrip("/") + "/" + name)
                st = os.lstat(os.path.join(top, name))
                if stat.S_ISDIR(st.st_mode):
                    fid = self._new_id("d")
                    self.durable[did][name] = ("d", fid, stat.S_IMODE(st.st_mode))
                elif stat.S_ISREG(st.st_mode):
                    fid = by_inode.get((st.st_dev, st.st_ino))
                    if fid is None:
                        fid = self._new_id("f")
                        by_inode[(st.st_dev, st.st_ino)] = fid
                        shutil.copyfile(os.path.join(top, name), self._shadow(fid))
                    self.durable[did][name] = ("f", fid, stat.S_IMODE(st.st_mode))
                else:
                    continue  # only files and directories are modelled
                self.ids[p] = fid

    # ------------------------------------------------------------------ operations

    def getattr(self, path, fh=None):
        with self.lock:
            if fh is not None and fh in self.handles:
                st = os.fstat(self.handles[fh][0])
            else:
                st = os.lstat(self.real(path))
        out = {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size",
                                          "st_ino")}
        out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return out

    def readdir(self, path):
        with self.lock:
            return [".", ".."] + os.listdir(self.real(path))

    def mkdir(self, path, mode):
        with self.lock:
            os.mkdir(self.real(path), mode)
            self.ids[path] = self._new_id("d")

    def rmdir(self, path):
        with self.lock:
            os.rmdir(self.real(path))
            self.ids.pop(path, None)

    def _handle(self, fd, fid):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = (fd, fid)
        return fh

    def create(self, path, mode, flags=os.O_RDWR):
        with self.lock:
            existed = path in self.ids
            # Always read-write: fsync copies the file's ranges from this descriptor.
            fd = os.open(self.real(path), os.O_RDWR | os.O_CREAT | (flags & os.O_EXCL), mode)
            if existed and flags & os.O_TRUNC:
                self._truncated(self.ids[path], os.fstat(fd).st_size, 0)
                os.ftruncate(fd, 0)
            if not existed:
                self.ids[path] = self._new_id("f")
            return self._handle(fd, self.ids[path])

    def open(self, path, flags):
        with self.lock:
            fid = self._id(path)
            keep = flags & ~(os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_TRUNC | os.O_ACCMODE)
            fd = os.open(self.real(path), keep | os.O_RDWR)
            if flags & os.O_TRUNC:
                self._truncated(fid, os.fstat(fd).st_size, 0)
                os.ftruncate(fd, 0)
            return self._handle(fd, fid)

    def _fd(self, fh):
        h = self.handles.get(fh)
        if h is None:
            raise _err(errno.EBADF)
        return h

    def read(self, path, size, offset, fh):
        with self.lock:
            fd, _ = self._fd(fh)
            return os.pread(fd, size, offset)

    def write(self, path, data, offset, fh):
        with self.lock:
            fd, fid = self._fd(fh)
            n = os.pwrite(fd, data, offset)
            self.dirty.setdefault(fid, []).append((offset, offset + n))
            self.counts["writes"] += 1
            self.writes_since_cut += 1
            self.counts["bytes_written"] += n
            return n

    def _truncated(self, fid, old, new):
        if old != new:
            self.dirty.setdefault(fid, []).append((min(old, new), max(old, new)))

    def truncate(self, path, length, fh=None):
        with self.lock:
            if fh is not None and fh in self.handles:
                fd, fid = self.handles[fh]
                self._truncated(fid, os.fstat(fd).st_size, length)
                os.ftruncate(fd, length)
            else:
                fid = self._id(path)
                self._truncated(fid, os.lstat(self.real(path)).st_size, length)
                os.truncate(self.real(path), length)

    def release(self, fh):
        with self.lock:
            h = self.handles.pop(fh, None)
            if h is not None:
                os.close(h[0])

    def fsync(self, path, fh=None):
        """Makes the file's written ranges and size durable."""
        with self.lock:
            if fh is not None and fh in self.handles:
                fd, fid = self.handles[fh]
                self._sync_file(fid, fd)
            else:
                fid = self._id(path)
                fd = os.open(self.real(path), os.O_RDONLY)
                try:
                    self._sync_file(fid, fd)
                finally:
                    os.close(fd)
            self.counts["fsyncs"] += 1

    def _sync_file(self, fid, fd):
        size = os.fstat(fd).st_size
        sfd = os.open(self._shadow(fid), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            for s, e in merge_ranges(self.dirty.pop(fid, [])):
                e = min(e, size)
                while s < e:
                    chunk = os.pread(fd, min(e - s, 1 << 20), s)
                    if not chunk:
                        break
                    os.pwrite(sfd, chunk, s)
                    s += len(chunk)
            os.ftruncate(sfd, size)
        finally:
            os.close(sfd)

    def fsyncdir(self, path):
        """Makes the directory's entries as they are now durable (not its children's content)."""
        with self.lock:
            did = self._id(path)
            entries = {}
            base = self.real(path)
            for name in os.listdir(base):
                p = path.rstrip("/") + "/" + name
                fid = self.ids.get(p)
                if fid is None:
                    continue
                st = os.lstat(os.path.join(base, name))
                entries[name] = (self.kinds[fid], fid, stat.S_IMODE(st.st_mode))
            self.durable[did] = entries
            self.counts["dir_fsyncs"] += 1

    def rename(self, old, new):
        with self.lock:
            try:
                a, b = os.lstat(self.real(old)), os.lstat(self.real(new))
                if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
                    return  # two names of one file: rename(2) does nothing
            except FileNotFoundError:
                pass
            os.rename(self.real(old), self.real(new))
            moved = {p: fid for p, fid in self.ids.items()
                     if p == old or p.startswith(old + "/")}
            for p in list(self.ids):
                if p == new or p.startswith(new + "/"):
                    del self.ids[p]
            for p, fid in moved.items():
                del self.ids[p]
                self.ids[new + p[len(old):]] = fid

    def unlink(self, path):
        with self.lock:
            os.unlink(self.real(path))
            self.ids.pop(path, None)

    def link(self, new, existing):
        with self.lock:
            os.link(self.real(existing), self.real(new))
            self.ids[new] = self._id(existing)

    # ------------------------------------------------------------------ power

    def _durable_dirs(self):
        """Directory ids a cut now would bring back (reachable from the root durably)."""
        out, todo = set(), [ROOT_ID]
        while todo:
            did = todo.pop()
            if did in out:
                continue
            out.add(did)
            todo += [fid for kind, fid, _ in self.durable.get(did, {}).values() if kind == "d"]
        return out

    def unsynced(self):
        """What a power cut now would drop: bytes written to live files and not fsynced, and
        entries of live or durably reachable directories that differ from their durable state."""
        with self.lock:
            live_ids = set(self.ids.values())
            by = 0
            for fid, ranges in self.dirty.items():
                if fid in live_ids:
                    by += sum(e - s for s, e in merge_ranges(ranges))
            live = {}
            for p, fid in self.ids.items():
                if p == "/":
                    continue
                parent, name = p.rsplit("/", 1)
                live.setdefault(self.ids.get(parent or "/"), {})[name] = fid
            entries = 0
            dirs = {d for d in live_ids if self.kinds.get(d) == "d"} | self._durable_dirs()
            for did in dirs:
                a = live.get(did, {})
                b = {n: v[1] for n, v in self.durable.get(did, {}).items()}
                entries += len(set(a.items()) ^ set(b.items()))
            return {"bytes": by, "entries": entries}

    def cut(self):
        """The power cut: closes every open file, rebuilds the backing directory from the durable
        model, and starts over with everything durable. Returns what was dropped."""
        with self.lock:
            dropped = self.unsynced()
            open_files = len(self.handles)
            for fd, _ in self.handles.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.handles.clear()
            for name in os.listdir(self.backing):
                p = os.path.join(self.backing, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)
            made = {}
            self._materialize(ROOT_ID, self.backing, made, set())
            self._adopt()
            writes = self.writes_since_cut
            self.writes_since_cut = 0
            self.generation += 1
            self.counts["cuts"] += 1
            return {"generation": self.generation, "writes_since_last_cut": writes,
                    "dropped_bytes": dropped["bytes"],
                    "dropped_entries": dropped["entries"], "open_files": open_files,
                    "files": sum(1 for k in self.kinds.values() if k == "f")}

    def _materialize(self, did, at, made, seen):
        if did in seen:
            return
        seen.add(did)
        for name, (kind, fid, mode) in sorted(self.durable.get(did, {}).items()):
            p = os.path.join(at, name)
            if kind == "d":
                os.mkdir(p, mode or 0o755)
                self._materialize(fid, p, made, seen)
            elif fid in made:
                os.link(made[fid], p)
            else:
                sp = self._shadow(fid)
                if os.path.exists(sp):
                    shutil.copyfile(sp, p)
                else:
                    open(p, "wb").close()  # created and named durably, data never synced
                os.chmod(p, mode)
                made[fid] = p

    def status(self):
        with self.lock:
            out = dict(self.counts)
            out.update({"generation": self.generation, "open_files": len(self.handles),
                        "writes_since_cut": self.writes_since_cut})
            u = self.unsynced()
            out.update({"unsynced_bytes": u["bytes"], "unsynced_entries": u["entries"]})
            return out


# ---------------------------------------------------------------------- FUSE and control


def serve_control(model, path):
    """One JSON request per line on the Unix socket ``path``; one JSON answer per line."""
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)

    def one(conn):
        with conn, conn.makefile("rwb") as f:
            for line in f:
                try:
                    req = json.loads(line)
                    if req.get("op") == "cut":
                        ans = {"ok": True, **model.cut()}
                    elif req.get("op") == "status":
                        ans = {"ok": True, **model.status()}
                    else:
                        ans = {"ok": False, "error": "unknown op %r" % req.get("op")}
                except Exception as e:  # the answer carries it; the filesystem goes on
                    ans = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
                f.write((json.dumps(ans) + "\n").encode())
                f.flush()

    def loop():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True, name="lazyfs-control").start()


def control(path, op, timeout=20.0):
    """Client side: sends ``{"op": op}`` to a running lazyfs, returns its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        with s.makefile("rwb") as f:
            f.write((json.dumps({"op": op}) + "\n").encode())
            f.flush()
            line = f.readline()
    if not line:
        raise OSError("lazyfs at %s closed the connection" % path)
    return json.loads(line)


def fuse_operations(model):
    import mfusepy  # only the FUSE process needs it

    class Ops(mfusepy.Operations):
        use_ns = True

        def getattr(self, path, fh=None):
            return model.getattr(path, fh)

        def readdir(self, path, fh):
            return model.readdir(path)

        def mkdir(self, path, mode):
            model.mkdir(path, mode)
            return 0

        def rmdir(self, path):
            model.rmdir(path)
            return 0

        def create(self, path, mode, flags=os.O_RDWR):
            return model.create(path, mode, flags)

        def open(self, path, flags):
            return model.open(path, flags)

        def read(self, path, size, offset, fh):
            return model.read(path, size, offset, fh)

        def write(self, path, data, offset, fh):
            return model.write(path, bytes(data), offset, fh)

        def truncate(self, path, length, fh=None):
            model.truncate(path, length, fh)
            return 0

        def flush(self, path, fh):
            return 0

        def release(self, path, fh):
            model.release(fh)
            return 0

        def fsync(self, path, datasync, fh):
            model.fsync(path, fh)
            return 0

        def fsyncdir(self, path, datasync, fh):
            model.fsyncdir(path)
            return 0

        def rename(self, old, new):
            model.rename(old, new)
            return 0

        def unlink(self, path):
            model.unlink(path)
            return 0

        def link(self, target, source):
            model.link(target, source)
            return 0

        def chmod(self, path, mode):
            with model.lock:
                os.chmod(model.real(path), mode)
            return 0

        def chown(self, path, uid, gid):
            with model.lock:
                os.chown(model.real(path), uid, gid)
            return 0

        def utimens(self, path, times=None):
            with model.lock:
                if times is None:
                    os.utime(model.real(path))
                else:
                    os.utime(model.real(path), ns=times)
            return 0

        def access(self, path, amode):
            with model.lock:
                if not os.access(model.real(path), amode):
                    raise _err(errno.EACCES)
            return 0

        def statfs(self, path):
            with model.lock:
                sv = os.statvfs(model.real(path))
            return {k: getattr(sv, k) for k in (
                "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                "f_flag", "f_frsize", "f_namemax")}

        def fallocate(self, path, mode, offset, size, fh):
            raise _err(errno.EOPNOTSUPP)  # callers fall back to plain writes

        def symlink(self, target, source):
            raise _err(errno.EPERM)  # not modelled

    return mfusepy, Ops()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4:
        sys.exit("usage: python -m rkj.lazyfs BACKING SHADOW MOUNT CONTROL")
    backing, shadow, mount, ctl = argv
    model = LazyModel(backing, shadow)
    mfusepy, ops = fuse_operations(model)
    os.makedirs(mount, exist_ok=True)
    serve_control(model, ctl)
    sys.stderr.write("lazyfs: %s on %s (control %s) at %s\n" % (backing, mount, ctl,
                                                                time.strftime("%H:%M:%S")))
    # Single-threaded FUSE loop; no kernel caching of data, attributes or names, so what a
    # restarted process reads after a cut is the rebuilt backing directory. hard_remove: an
    # unlink (or a rename over) an open file really removes its name (libfuse would otherwise
    # rename it to .fuse_hidden* until the last close, a name a directory sync would keep).
    mfusepy.FUSE(ops, mount, foreground=True, nothreads=True, direct_io=True, entry_timeout=0,
                 attr_timeout=0, negative_timeout=0, hard_remove=True, fsname="rkjlazyfs")


if __name__ == "__main__":
    main()
