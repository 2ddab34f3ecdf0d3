"""Generated files: never written through a planted link, never interleaved."""
import os
import threading

import pytest

from xcatd.base.files import CheckFailed, write_atomic, write_checked
from xcatd.security.credentials import create_ca, issue_client_cert


def test_a_planted_link_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = tmp_path / "dir"
    target.mkdir()
    for pid in range(os.getpid() - 5, os.getpid() + 5):  # every name the old code used
        for suffix in ("tmp", "new"):
            os.symlink(victim, target / f".client-cred.pem.{pid}.{suffix}")
    from xcatd.base.paths import Paths
    paths = Paths(tmp_path / "root")
    create_ca(paths)
    files = issue_client_cert(paths, "nobody", target)
    assert victim.read_text() == "precious\n"
    assert files.cred.is_file() and not files.cred.is_symlink()
    assert oct(files.cred.stat().st_mode & 0o777) == "0o600"


def test_a_failed_check_of_one_writer_never_publishes_its_file(tmp_path):
    path = tmp_path / "conf"
    slow_ok = threading.Event()

    def good():
        write_checked(path, "GOOD\n", lambda tmp: slow_ok.wait(2))

    def bad():
        def reject(tmp):
            raise CheckFailed("no")
        with pytest.raises(CheckFailed):
            write_checked(path, "BROKEN\n", reject)

    t1, t2 = threading.Thread(target=good), threading.Thread(target=bad)
    t1.start()
    t2.start()
    slow_ok.set()
    t1.join(10)
    t2.join(10)
    assert path.read_text() == "GOOD\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".new")] == []


def test_concurrent_makehosts_keep_every_entry(mn_daemon):
    mn_daemon.ok("chtab", "key=domain", "site.value=x.example")
    mn_daemon.ok("nodeadd", "h[1-30]", "groups=all")
    mn_daemon.ok("chtab", "node=all", r"hosts.ip=|\D+(\d+)|10.9.0.($1+0)|")
    results = []

    def one(i):
        results.append(mn_daemon.run("makehosts", f"h{i}").rc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(1, 31)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    lines = (mn_daemon.root / "etc/hosts").read_text().splitlines()
    assert results == [0] * 30
    assert sorted(lines) == sorted(f"10.9.0.{i} h{i} h{i}.x.example" for i in range(1, 31))


def test_write_atomic_sets_mode_on_the_new_file(tmp_path):
    write_atomic(tmp_path / "f", "x", mode=0o600)
    assert oct((tmp_path / "f").stat().st_mode & 0o777) == "0o600"
