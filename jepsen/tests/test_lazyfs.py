"""The power-loss disk (rkj/lazyfs.py): what a cut keeps and drops. ``LazyModelTest`` drives the
model directly on a temporary directory (no FUSE); ``MountedTest`` mounts it for real and uses
it through the kernel with ordinary file calls (needs /dev/fuse, fusermount3 and a Python with
mfusepy: jepsen/setup-lazyfs; it is skipped without them unless RKJ_REQUIRE_LAZYFS=1, as in
.ci/run, where it must run).

Run: python3 -m unittest discover -s jepsen/tests
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from rkj import cluster as cluster_mod, lazyfs  # noqa: E402


def read(path):
    with open(path, "rb") as f:
        return f.read()


class LazyModelTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rkj-lazy-")
        self.m = lazyfs.LazyModel(os.path.join(self.tmp, "b"), os.path.join(self.tmp, "s"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def live(self, p):
        return os.path.join(self.m.backing, p.lstrip("/"))

    def new_file(self, path, data, sync=False, sync_dir=False):
        fh = self.m.create(path, 0o644)
        self.m.write(path, data, 0, fh)
        if sync:
            self.m.fsync(path, fh)
        self.m.release(fh)
        if sync_dir:
            self.m.fsyncdir(os.path.dirname(path) or "/")

    def test_unsynced_data_is_dropped_and_synced_data_kept(self):
        self.new_file("/a", b"durable", sync=True, sync_dir=True)
        fh = self.m.open("/a", os.O_WRONLY)
        self.m.write("/a", b"+tail", 7, fh)
        self.m.write("/a", b"D", 0, fh)
        self.assertEqual(self.m.status()["unsynced_bytes"], 6)
        self.m.release(fh)
        self.assertEqual(read(self.live("/a")), b"Durable+tail")  # the page cache has it
        out = self.m.cut()
        self.assertEqual(out["dropped_bytes"], 6)
        self.assertEqual(read(self.live("/a")), b"durable")
        self.assertEqual(self.m.status()["unsynced_bytes"], 0)

    def test_a_synced_file_without_a_synced_name_vanishes(self):
        self.new_file("/named", b"y" * 10, sync=True, sync_dir=True)
        self.new_file("/only-data", b"x" * 100, sync=True)
        self.m.cut()
        self.assertEqual(sorted(os.listdir(self.m.backing)), ["named"])

    def test_a_synced_name_without_synced_data_is_empty(self):
        self.new_file("/empty", b"lost", sync=False, sync_dir=True)
        self.m.cut()
        self.assertEqual(read(self.live("/empty")), b"")

    def test_rename_is_durable_only_with_its_directory(self):
        self.new_file("/CURRENT", b"old", sync=True, sync_dir=True)
        self.new_file("/tmp", b"new", sync=True)
        self.m.rename("/tmp", "/CURRENT")
        self.m.cut()
        self.assertEqual(read(self.live("/CURRENT")), b"old")
        self.new_file("/tmp", b"new", sync=True)
        self.m.rename("/tmp", "/CURRENT")
        self.m.fsyncdir("/")
        self.m.cut()
        self.assertEqual(read(self.live("/CURRENT")), b"new")
        self.assertFalse(os.path.exists(self.live("/tmp")))

    def test_unlink_and_link_are_undone_without_a_directory_sync(self):
        self.new_file("/k.tmp", b"secret", sync=True, sync_dir=True)
        self.m.link("/k", "/k.tmp")
        self.m.unlink("/k.tmp")
        self.m.cut()
        self.assertEqual(sorted(os.listdir(self.m.backing)), ["k.tmp"])
        self.m.link("/k", "/k.tmp")
        self.m.unlink("/k.tmp")
        self.m.fsyncdir("/")
        self.m.cut()
        self.assertEqual(sorted(os.listdir(self.m.backing)), ["k"])
        self.assertEqual(read(self.live("/k")), b"secret")

    def test_a_new_directory_needs_its_parent_synced(self):
        self.m.mkdir("/d", 0o755)
        self.new_file("/d/f", b"abc", sync=True, sync_dir=True)  # syncs /d, not /
        self.m.cut()
        self.assertEqual(os.listdir(self.m.backing), [])
        self.m.mkdir("/d", 0o755)
        self.m.fsyncdir("/")
        self.new_file("/d/f", b"abc", sync=True, sync_dir=True)
        self.m.cut()
        self.assertEqual(read(self.live("/d/f")), b"abc")

    def test_a_renamed_directory_keeps_its_durable_content(self):
        self.m.mkdir("/d", 0o755)
        self.m.fsyncdir("/")
        self.new_file("/d/f", b"abc", sync=True, sync_dir=True)
        self.m.rename("/d", "/e")
        self.m.fsyncdir("/")
        self.m.cut()
        self.assertEqual(read(self.live("/e/f")), b"abc")

    def test_truncate_then_extend_does_not_resurrect_old_bytes(self):
        self.new_file("/f", b"AAAA", sync=True, sync_dir=True)
        fh = self.m.open("/f", os.O_RDWR)
        self.m.truncate("/f", 0, fh)
        self.m.truncate("/f", 4, fh)
        self.m.fsync("/f", fh)
        self.m.release(fh)
        self.m.cut()
        self.assertEqual(read(self.live("/f")), b"\0\0\0\0")

    def test_mode_survives_and_handles_die_with_the_cut(self):
        fh = self.m.create("/key", 0o600)
        self.m.write("/key", b"k", 0, fh)
        self.m.fsync("/key", fh)
        self.m.fsyncdir("/")
        out = self.m.cut()
        self.assertEqual(out["open_files"], 1)
        self.assertEqual(os.stat(self.live("/key")).st_mode & 0o777, 0o600)
        with self.assertRaises(OSError):
            self.m.write("/key", b"x", 0, fh)

    def test_hard_links_stay_one_file_across_cuts(self):
        self.new_file("/a", b"one", sync=True)
        self.m.link("/b", "/a")
        self.m.fsyncdir("/")
        self.m.cut()
        fh = self.m.open("/a", os.O_WRONLY)
        self.m.write("/a", b"two", 0, fh)
        self.m.release(fh)
        self.m.fsync("/b")  # the other name, the same file
        self.m.cut()
        self.assertEqual(read(self.live("/a")), b"two")
        self.assertEqual(read(self.live("/b")), b"two")
        self.assertEqual(os.stat(self.live("/a")).st_ino, os.stat(self.live("/b")).st_ino)

    def test_rename_onto_another_name_of_the_same_file_does_nothing(self):
        self.new_file("/a", b"x", sync=True)
        self.m.link("/b", "/a")
        self.m.rename("/a", "/b")
        self.assertTrue(os.path.exists(self.live("/a")))
        self.m.open("/a", os.O_RDONLY)  # still known to the model

    def test_unsynced_counts_only_what_a_cut_would_drop(self):
        self.m.mkdir("/d", 0o755)
        self.m.fsyncdir("/")
        self.new_file("/d/f", b"abc", sync=True, sync_dir=True)
        self.m.unlink("/d/f")
        self.m.rmdir("/d")
        self.m.fsyncdir("/")
        self.assertEqual(self.m.unsynced(), {"bytes": 0, "entries": 0})
        self.new_file("/g", b"12345")
        self.m.unlink("/g")  # unsynced bytes of a file that is gone are not dropped by a cut
        self.assertEqual(self.m.unsynced()["bytes"], 0)

    def test_a_cut_reports_the_writes_since_the_previous_one(self):
        self.new_file("/a", b"x", sync=True, sync_dir=True)
        self.assertEqual(self.m.cut()["writes_since_last_cut"], 1)
        self.assertEqual(self.m.cut()["writes_since_last_cut"], 0)

    def test_ranges_are_merged(self):
        self.assertEqual(lazyfs.merge_ranges([(5, 8), (0, 2), (1, 3), (8, 9), (4, 4)]),
                         [(0, 3), (5, 9)])


def lazyfs_available():
    try:
        cluster_mod.check_tools(lazyfs=True)
        return True
    except cluster_mod.HarnessError:
        return False


@unittest.skipUnless(os.geteuid() == 0 and (lazyfs_available()
                                            or os.environ.get("RKJ_REQUIRE_LAZYFS") == "1"),
                     "needs root, /dev/fuse, fusermount3 and mfusepy (jepsen/setup-lazyfs)")
class MountedTest(unittest.TestCase):
    def setUp(self):
        cluster_mod.check_tools(lazyfs=True)  # with RKJ_REQUIRE_LAZYFS=1: fail, not skip
        self.tmp = tempfile.mkdtemp(prefix="rkj-lazy-mnt-")
        self.mnt = os.path.join(self.tmp, "m")
        self.ctl = os.path.join(self.tmp, "ctl")
        self.proc = subprocess.Popen(
            [cluster_mod.LAZYFS_PYTHON, "-m", "rkj.lazyfs", os.path.join(self.tmp, "b"),
             os.path.join(self.tmp, "s"), self.mnt, self.ctl], cwd=cluster_mod.JEPSEN_DIR,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 15
        while self.mnt not in cluster_mod.lazyfs_mounts() or not os.path.exists(self.ctl):
            self.assertIsNone(self.proc.poll(), "lazyfs exited")
            self.assertLess(time.time(), deadline, "lazyfs did not mount")
            time.sleep(0.05)

    def tearDown(self):
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], capture_output=True)
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_through_the_kernel(self):
        p = lambda n: os.path.join(self.mnt, n)  # noqa: E731
        fd = os.open(p("synced"), os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"kept")
        os.fsync(fd)
        os.write(fd, b" and not kept")
        os.close(fd)
        d = os.open(self.mnt, os.O_RDONLY)
        os.fsync(d)
        os.close(d)
        with open(p("unsynced"), "wb") as f:
            f.write(b"gone")
        os.rename(p("synced"), p("renamed"))
        self.assertEqual(read(p("renamed")), b"kept and not kept")
        st = lazyfs.control(self.ctl, "status")
        self.assertGreaterEqual(st["writes"], 3)
        self.assertGreater(st["unsynced_bytes"], 0)
        out = lazyfs.control(self.ctl, "cut")
        self.assertTrue(out["ok"])
        self.assertEqual(out["generation"], 1)
        self.assertEqual(sorted(os.listdir(self.mnt)), ["synced"])
        self.assertEqual(read(p("synced")), b"kept")
        self.assertEqual(os.stat(p("synced")).st_mode & 0o777, 0o600)


if __name__ == "__main__":
    unittest.main()
