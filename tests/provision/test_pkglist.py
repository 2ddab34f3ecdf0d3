"""xCAT's package list format: names, comments, removals, passes, includes and their errors,
and linuximage.pkglist values naming several lists."""
import re

import pytest

from xcatd.provision.pkglist import (
    PkgListError,
    PkgPass,
    group_names,
    read_pkglist,
    read_pkglists,
)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def one_pass(tmp_path, text):
    passes = read_pkglist(write(tmp_path / "t.pkglist", text))
    assert len(passes) == 1, passes
    return passes[0]


@pytest.mark.parametrize("text,install,remove", [
    ("bash\n", ("bash",), ()),
    ("bash\ncoreutils\n", ("bash", "coreutils"), ()),
    ("bash,coreutils , vim\n", ("bash", "coreutils", "vim"), ()),
    ("bash coreutils\tvim\n", ("bash", "coreutils", "vim"), ()),
    ("  bash  \n\n\n  \t\nvim\n", ("bash", "vim"), ()),
    ("# a comment\nbash\n   # indented comment\n", ("bash",), ()),
    ("bash   # the shell\n", ("bash",), ()),
    ("bash\nbash\nvim,bash\n", ("bash", "vim"), ()),
    ("-nano\nbash\n", ("bash",), ("nano",)),
    ("--nano\n", (), ("nano",)),
    ("bash,-nano,-vim-tiny\n", ("bash",), ("nano", "vim-tiny")),
    ("@core\n@^minimal-environment\n-@dial-up\n",
     ("@core", "@^minimal-environment"), ("@dial-up",)),
    ("@Development Tools, bash\n", ("@Development Tools", "bash"), ()),
    ("kernel*\nlinux-image-6.1.0-9-amd64\nlibc6=2.36-9\nfoo/bookworm-backports\n",
     ("kernel*", "linux-image-6.1.0-9-amd64", "libc6=2.36-9", "foo/bookworm-backports"), ()),
    ("glibc.i686\nperl-1:5.32\n", ("glibc.i686", "perl-1:5.32"), ()),
    ("# nothing but comments\n", (), ()),
])
def test_names_comments_and_removals(tmp_path, text, install, remove):
    passes = read_pkglist(write(tmp_path / "t.pkglist", text))
    if not install and not remove:
        assert passes == []
    else:
        assert passes == [PkgPass(install=install, remove=remove)]


def test_new_install_list_starts_a_pass_and_removals_stay_in_theirs(tmp_path):
    path = write(tmp_path / "t.pkglist",
                 "bash\n-nano\n#NEW_INSTALL_LIST#\nvim\n-ed\n#NEW_INSTALL_LIST#\ncurl\n")
    assert read_pkglist(path) == [PkgPass(("bash",), ("nano",)), PkgPass(("vim",), ("ed",)),
                                  PkgPass(("curl",), ())]


def test_empty_passes_are_left_out(tmp_path):
    path = write(tmp_path / "t.pkglist",
                 "#NEW_INSTALL_LIST#\nbash\n#NEW_INSTALL_LIST#\n#NEW_INSTALL_LIST#\nvim\n"
                 "#NEW_INSTALL_LIST#\n")
    assert read_pkglist(path) == [PkgPass(("bash",), ()), PkgPass(("vim",), ())]


def test_env_settings_belong_to_their_pass(tmp_path):
    path = write(tmp_path / "t.pkglist",
                 "#ENV:DEBIAN_FRONTEND=noninteractive#\nbash\n#NEW_INSTALL_LIST#\nvim\n")
    first, second = read_pkglist(path)
    assert first == PkgPass(("bash",), (), ("DEBIAN_FRONTEND=noninteractive",))
    assert second == PkgPass(("vim",), ())


def test_an_include_is_read_in_its_place(tmp_path):
    write(tmp_path / "base.pkglist", "coreutils\n-nano\n")
    path = write(tmp_path / "t.pkglist", "bash\n#INCLUDE:base.pkglist#\nvim\n")
    assert read_pkglist(path) == [PkgPass(("bash", "coreutils", "vim"), ("nano",))]


def test_nested_includes_are_found_beside_the_file_that_includes_them(tmp_path):
    write(tmp_path / "lists/inner/leaf.pkglist", "leaf\n")
    write(tmp_path / "lists/inner/mid.pkglist", "mid\n#INCLUDE:leaf.pkglist#\n")
    path = write(tmp_path / "t.pkglist", "top\n#INCLUDE:lists/inner/mid.pkglist#\nlast\n")
    assert read_pkglist(path)[0].install == ("top", "mid", "leaf", "last")


def test_an_include_may_start_a_pass_that_the_includer_continues(tmp_path):
    write(tmp_path / "two.pkglist", "a\n#NEW_INSTALL_LIST#\nb\n")
    path = write(tmp_path / "t.pkglist", "first\n#INCLUDE:two.pkglist#\nafter\n")
    assert read_pkglist(path) == [PkgPass(("first", "a"), ()), PkgPass(("b", "after"), ())]


def test_an_include_not_beside_the_file_is_looked_for_in_search(tmp_path):
    shared = write(tmp_path / "shared/common.pkglist", "common\n").parent
    path = write(tmp_path / "site/t.pkglist", "#INCLUDE:common.pkglist#\n")
    assert read_pkglist(path, search=[tmp_path / "elsewhere", shared])[0].install == \
        ("common",)
    # the includer's own directory wins over search
    write(tmp_path / "site/common.pkglist", "local\n")
    assert read_pkglist(path, search=[shared])[0].install == ("local",)


def test_the_same_file_included_twice_is_no_cycle(tmp_path):
    write(tmp_path / "c.pkglist", "c\n")
    write(tmp_path / "a.pkglist", "a\n#INCLUDE:c.pkglist#\n")
    write(tmp_path / "b.pkglist", "b\n#INCLUDE:c.pkglist#\n")
    path = write(tmp_path / "t.pkglist", "#INCLUDE:a.pkglist#\n#INCLUDE:b.pkglist#\n")
    assert read_pkglist(path)[0].install == ("a", "c", "b")


def test_a_missing_include_names_the_file_and_the_line(tmp_path):
    path = write(tmp_path / "t.pkglist", "bash\n# note\n#INCLUDE:gone.pkglist#\n")
    with pytest.raises(PkgListError) as exc:
        read_pkglist(path)
    msg = str(exc.value)
    assert f"{path}, line 3" in msg and "gone.pkglist" in msg and "not found" in msg
    assert exc.value.line == 3 and exc.value.path == str(path)


def test_a_missing_include_deep_down_names_the_file_that_asks_for_it(tmp_path):
    mid = write(tmp_path / "mid.pkglist", "x\ny\n#INCLUDE:gone.pkglist#\n")
    path = write(tmp_path / "t.pkglist", "#INCLUDE:mid.pkglist#\n")
    where = re.escape(f"{mid}, line 3: ")
    with pytest.raises(PkgListError, match=rf"^{where}included file gone\.pkglist"):
        read_pkglist(path)


@pytest.mark.parametrize("files", [
    {"t.pkglist": "#INCLUDE:t.pkglist#\n"},
    {"t.pkglist": "a\n#INCLUDE:b.pkglist#\n", "b.pkglist": "#INCLUDE:c.pkglist#\n",
     "c.pkglist": "#INCLUDE:t.pkglist#\n"},
])
def test_an_include_cycle_is_an_error(tmp_path, files):
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(PkgListError, match="include cycle") as exc:
        read_pkglist(tmp_path / "t.pkglist")
    assert "t.pkglist -> " in str(exc.value)


@pytest.mark.parametrize("text,line,words", [
    ("bash\n#INCLUDE:foo.pkglist\n", 2, ["malformed include"]),
    ("#INCLUDE:a.pkglist# vim\n", 1, ["malformed include"]),
    ("#ENV:no value#\n", 1, ["malformed environment"]),
    ("bash\nfoo;rm\n", 2, ["invalid package name", "foo;rm"]),
    ("-\n", 1, ["invalid package name"]),
    ("---x\n", 1, ["invalid package name", "---x"]),
    ("@\n", 1, ["invalid package name"]),
    ("$(reboot)\n", 1, ["invalid package name"]),
])
def test_bad_lines_are_errors_naming_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path / "t.pkglist", text)
    with pytest.raises(PkgListError) as exc:
        read_pkglist(path)
    assert str(exc.value).startswith(f"{path}, line {line}: ")
    assert all(w in str(exc.value) for w in words), exc.value


def test_a_missing_list_is_named(tmp_path):
    with pytest.raises(PkgListError, match=r"nope\.pkglist: cannot read"):
        read_pkglist(tmp_path / "nope.pkglist")


def test_a_list_that_is_not_text_is_named(tmp_path):
    path = tmp_path / "t.pkglist"
    path.write_bytes(b"bash\n\xff\xfe\n")
    with pytest.raises(PkgListError, match=r"t\.pkglist: not UTF-8"):
        read_pkglist(path)


def test_pkglist_values_are_management_node_paths_merged_pass_by_pass(tmp_path):
    root = tmp_path / "mn"
    write(root / "install/custom/netboot/debian/common.pkglist", "common\n")
    write(root / "install/custom/netboot/debian/a.pkglist",
          "a1\n#INCLUDE:/install/custom/netboot/debian/common.pkglist#\n"
          "#NEW_INSTALL_LIST#\na2\n")
    write(root / "install/custom/netboot/debian/b.pkglist",
          "b1\n-nano\n#NEW_INSTALL_LIST#\nb2\n#NEW_INSTALL_LIST#\nb3\n")
    value = ("/install/custom/netboot/debian/a.pkglist, "
             "/install/custom/netboot/debian/b.pkglist")
    assert read_pkglists(value, root=root) == [
        PkgPass(("a1", "common", "b1"), ("nano",)), PkgPass(("a2", "b2"), ()),
        PkgPass(("b3",), ())]


def test_a_pkglist_value_naming_a_missing_file_says_which(tmp_path):
    write(tmp_path / "install/a.pkglist", "a\n")
    with pytest.raises(PkgListError, match=r"install/b\.pkglist: cannot read"):
        read_pkglists("/install/a.pkglist,/install/b.pkglist", root=tmp_path)
    with pytest.raises(PkgListError, match="full path"):
        read_pkglists("/install/a.pkglist,a.pkglist", root=tmp_path)


def test_group_names_finds_the_groups_genimage_refuses_on_debian(tmp_path):
    passes = read_pkglist(write(tmp_path / "t.pkglist",
                                "bash\n@core\n#NEW_INSTALL_LIST#\n-@^gnome-desktop\n"))
    assert group_names(passes) == ["@core", "@^gnome-desktop"]
    assert group_names(read_pkglist(write(tmp_path / "d.pkglist", "bash\n"))) == []


@pytest.mark.parametrize("relpath", ["templates/netboot/debian/compute.debian12.pkglist",
                                     "templates/netboot/rh/compute.rhels9.pkglist",
                                     "templates/netboot/rh/compute.rhels8.pkglist",
                                     "templates/netboot/ubuntu/compute.ubuntu.pkglist"])
def test_the_shipped_lists_read(relpath):
    from xcatd.provision.osfamily import shipped_dir
    path = shipped_dir("netboot").parent / relpath.removeprefix("templates/")
    passes = read_pkglist(path)
    assert passes and passes[0].install
    if "/rh/" not in relpath:
        assert group_names(passes) == []
