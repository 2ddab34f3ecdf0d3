"""The shipped netboot profiles: the Debian 12 compute postinstall script on a fake image
root (as genimage runs it: on the management node, argv and IMG_* as xCAT passes them), and
the exclusion lists."""
import os
import subprocess

import pytest

from xcatd.provision.osfamily import shipped_dir

DEBIAN = shipped_dir("netboot") / "debian"
POSTINSTALL = DEBIAN / "compute.debian12.postinstall"


def fake_image(root):
    for d in ("etc/ssh", "etc/systemd/system", "usr/lib/systemd/system", "var/lib/dbus",
              "var/cache/apt/archives"):
        (root / d).mkdir(parents=True)
    (root / "etc/hostname").write_text("buildhost\n")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "var/lib/dbus/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "etc/resolv.conf").write_text("nameserver 192.0.2.53\n")
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret\n")
    (root / "etc/ssh/ssh_host_ed25519_key.pub").write_text("public\n")
    (root / "etc/ssh/sshd_config").write_text("# config\n")
    (root / "usr/lib/systemd/system/ssh.service").write_text("[Service]\n")
    (root / "var/cache/apt/archives/bash_5.2_amd64.deb").write_bytes(b"deb")
    return root


def run(*argv, env=None):
    full = {"PATH": os.environ["PATH"], **(env or {})}
    return subprocess.run([str(POSTINSTALL), *map(str, argv)], env=full,
                          capture_output=True, text=True, timeout=60)


def test_the_postinstall_script_is_executable_posix_sh():
    assert os.access(POSTINSTALL, os.X_OK)
    assert POSTINSTALL.read_text().startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n", str(POSTINSTALL)], check=True)


def test_postinstall_takes_the_build_hosts_identity_out_of_the_image(tmp_path):
    root = fake_image(tmp_path / "rootimg")
    r = run(root, "debian12", "x86_64", "compute",
            env={"IMG_NAME": "debian12-x86_64-netboot-compute", "IMG_ARCH": "x86_64",
                 "IMG_OSVER": "debian12", "IMG_PROFILE": "compute",
                 "IMG_ROOTIMGDIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    for f in ("etc/hostname", "etc/machine-id", "etc/resolv.conf"):
        assert (root / f).read_text() == "", f
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert (root / "etc/ssh/sshd_config").read_text() == "# config\n"
    dropin = (root / "etc/systemd/system/ssh.service.d/xcat-hostkeys.conf").read_text()
    assert dropin.index("ssh-keygen -A") < dropin.index("sshd -t")
    assert os.readlink(root / "etc/systemd/system/apt-daily.timer") == "/dev/null"
    assert not list((root / "var/cache/apt/archives").glob("*.deb"))
    # run twice (genimage again on the same tree): same result
    assert run(root, "debian12", "x86_64", "compute").returncode == 0


@pytest.mark.parametrize("arg", ["", "/", "/nonexistent/rootimg", "relative/none"])
def test_postinstall_refuses_what_is_not_an_image_root(tmp_path, arg):
    r = run(arg, "debian12", "x86_64", "compute")
    assert r.returncode == 2 and "is not an image root" in r.stderr


def test_postinstall_refuses_the_management_nodes_own_root_by_another_name(tmp_path):
    (tmp_path / "slash").symlink_to("/")
    r = run(tmp_path / "slash", "debian12", "x86_64", "compute")
    assert r.returncode == 2 and "is not an image root" in r.stderr


@pytest.mark.parametrize("path", sorted(shipped_dir("netboot").glob("*/*.exlist")),
                         ids=lambda p: p.name)
def test_exlists_drop_documentation_and_keep_what_a_node_runs_on(path):
    lines = [ln.strip() for ln in path.read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert all(ln.startswith(("./", "+./")) for ln in lines), lines
    assert {"./usr/share/man*", "./usr/share/doc*"} <= set(lines)
    for needed in ("./lib", "./usr/lib/modules", "./etc", "./usr/bin", "./usr/lib/systemd"):
        assert not any(needed.startswith(ln.rstrip("*")) for ln in lines
                       if not ln.startswith("+")), (needed, path)
