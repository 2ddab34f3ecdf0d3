"""What every command takes as xCAT's do: -v/--version, -h/--help/-?, Getopt's single-dash
long options (-help, -version); and lsxcatd."""
from __future__ import annotations

import contextlib
import doctest
import io
import re

import click
import pytest
from sqlalchemy.engine import make_url
from xcatd.commands import _cli, _docgen
from xcatd.plugins.lsxcatd import database_lines

from xcatd.base import version
from xcatd.base.request import XcatError

COMMANDS = _docgen.commands()
#: Commands whose -v means something else (xcatd: verbose), or asks the daemon (lsxcatd).
OWN_V = {"xcatd", "lsxcatd", "xdsh", "xdcp"}   # -v is theirs; -V and --version print it
VERSION_RE = re.compile(r"Version \S+ \(git commit (?:[0-9a-f]{40}|unknown), built .+\)")


def call(name: str, *args: str) -> tuple[int, str, str]:
    """Run command ``name`` in process, as its console script would; (rc, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    rc = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            COMMANDS[name].main(args=list(args), prog_name=name)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return rc, out.getvalue(), err.getvalue()


def test_every_console_script_is_a_pyxcat_command_we_know():
    assert {"rpower", "lsdef", "tabdump", "lsxcatd", "xcatd"} <= set(COMMANDS)


# ---- --version ---------------------------------------------------------------------------
def test_version_line_has_xcats_shape():
    assert version.version_line("2.16.5", "0d4888af", "Tue Jul 29 02:22:47 EDT 2014") == \
        "Version 2.16.5 (git commit 0d4888af, built Tue Jul 29 02:22:47 EDT 2014)"
    assert version.version_line(None, None, None) == \
        "Version unknown (git commit unknown, built unknown)"


def test_this_installation_names_its_version_and_commit():
    line = version.current()
    assert VERSION_RE.fullmatch(line), line


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - OWN_V))
@pytest.mark.parametrize("flag", ["-v", "--version", "-version"])
def test_every_command_prints_its_version_and_exits_0(name, flag):
    rc, out, err = call(name, flag)
    assert (rc, out, err) == (0, version.current() + "\n", "")


def test_xcatd_keeps_v_for_verbose_and_prints_the_version_with_double_dash():
    verbose = [p for p in COMMANDS["xcatd"].params if "-v" in getattr(p, "opts", [])]
    assert [p.name for p in verbose] == ["verbose"]
    assert call("xcatd", "--version") == (0, version.current() + "\n", "")
    assert call("xcatd", "-version") == (0, version.current() + "\n", "")


@pytest.mark.parametrize("name", ["xdsh", "xdcp"])
@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_xdsh_and_xdcp_keep_v_for_verify_and_print_the_version_with_V(name, flag):
    assert call(name, flag) == (0, version.current() + "\n", "")
    verify = [p for p in COMMANDS[name].params if "-v" in getattr(p, "opts", [])]
    assert [p.name for p in verify] == ["verify"]


def test_version_wins_over_missing_arguments():
    """rpower -v needs no noderange: the version is printed before anything is checked."""
    assert call("rpower", "-v") == (0, version.current() + "\n", "")
    assert call("rpower", "n1", "--version") == (0, version.current() + "\n", "")


def test_git_head_reads_a_branch_a_packed_ref_and_a_detached_head(tmp_path):
    git = tmp_path / ".git"
    (git / "refs/heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs/heads/main").write_text("a" * 40 + "\n")
    assert version.git_head(tmp_path) == "a" * 40
    (git / "refs/heads/main").unlink()
    (git / "packed-refs").write_text(f"# pack-refs\n{'b' * 40} refs/heads/main\n")
    assert version.git_head(tmp_path) == "b" * 40
    (git / "HEAD").write_text("c" * 40 + "\n")
    assert version.git_head(tmp_path) == "c" * 40
    assert version.git_head(tmp_path / "nowhere") is None


def test_git_head_follows_a_worktree_to_the_common_refs(tmp_path):
    main = tmp_path / "repo/.git"
    (main / "refs/heads").mkdir(parents=True)
    (main / "refs/heads/topic").write_text("d" * 40 + "\n")
    wt = main / "worktrees/w"
    wt.mkdir(parents=True)
    (wt / "HEAD").write_text("ref: refs/heads/topic\n")
    (wt / "commondir").write_text("../..\n")
    tree = tmp_path / "w"
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {wt}\n")
    assert version.git_head(tree) == "d" * 40


# ---- --help ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(COMMANDS))
@pytest.mark.parametrize("flag", ["-h", "--help", "-?", "-help"])
def test_every_command_prints_a_usage_for_help(name, flag):
    rc, out, err = call(name, flag)
    assert rc == 0, err
    assert out.startswith(f"Usage: {name} ")


def test_rsetboot_help_in_one_dash_is_help_not_four_options():
    """Getopt reads -help as --help; click alone would read -h -e -l -p."""
    rc, out, err = call("rsetboot", "-help")
    assert (rc, err) == (0, "")
    assert out.startswith("Usage: rsetboot ")


# ---- Getopt's single-dash long options -----------------------------------------------------
OPTS = [click.Option(["-w"]), click.Option(["-l", "--long"], is_flag=True),
        click.Option(["-i", "--interface"]), click.Option(["-V"], is_flag=True)]


@pytest.mark.parametrize("argv, expected", [
    (["-help"], ["--help"]),
    (["-version"], ["-version"]),  # no --version among OPTS: left to click to refuse
    (["-long", "n1"], ["--long", "n1"]),
    (["-interface=eth0"], ["--interface=eth0"]),
    (["-interface", "-long"], ["--interface", "-long"]),  # an option's value stays
    (["-w", "-help"], ["-w", "-help"]),
    (["-lV", "-V"], ["-lV", "-V"]),                        # bundled short options stay
    (["n1", "--", "-help"], ["n1", "--", "-help"]),        # after --: arguments
    (["-nosuch"], ["-nosuch"]),
])
def test_getopt_long_rewrites_only_long_option_names(argv, expected):
    assert _cli.getopt_long(argv, OPTS) == expected


def test_cli_examples_hold():
    results = doctest.testmod(_cli)
    assert results.attempted > 0 and results.failed == 0


def test_a_single_dash_long_option_reaches_the_command(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1", "groups=all")
    assert mn_sqlite.ok("lsdef", "-long", "n1").out == mn_sqlite.ok("lsdef", "-l", "n1").out


# ---- lsxcatd -----------------------------------------------------------------------------
def test_lsxcatd_alone_prints_its_usage_and_exits_1(mn):
    r = mn.run("lsxcatd")
    assert r.rc == 1
    assert r.out == ""
    assert r.err.splitlines() == ["Usage: lsxcatd [-v|--version]",
                                  "       lsxcatd [-h|--help]",
                                  "       lsxcatd [-d|--database]",
                                  "       lsxcatd [-t|--nodetype]",
                                  "       lsxcatd [-a|--all]"]


def test_lsxcatd_v_and_t_answer_like_xcat(mn):
    assert mn.ok("lsxcatd", "-v").lines == [version.current()]
    assert mn.ok("lsxcatd", "--version").lines == [version.current()]
    assert mn.ok("lsxcatd", "-t").lines == ["This is a Management Node"]
    assert mn.ok("lsxcatd", "--nodetype").lines == ["This is a Management Node"]


def test_lsxcatd_d_and_a_name_the_database_and_the_port_never_the_password(mn):
    url = make_url(mn.paths.db_url())
    db = mn.ok("lsxcatd", "-d").lines
    if url.get_backend_name() == "sqlite":
        assert db == ["dbengine=SQLite", f"dbloc={mn.root}/var/lib/xcat/xcat.sqlite"]
    else:
        assert db[1:3] == ["dbengine=Pg", f"dbname={url.database}"]
        assert f"dbhost={url.host}" in db
        assert db[0].startswith("cfgloc=postgresql")
    everything = mn.ok("lsxcatd", "-a")
    assert everything.lines == [version.current(), "This is a Management Node", *db,
                                "xcatdport=3001"]
    if url.password:
        assert str(url.password) not in everything.out
    assert mn.ok("lsxcatd", "-all").lines == everything.lines


def test_lsxcatd_a_reports_the_sites_port(mn_sqlite):
    mn_sqlite.ok("chtab", "key=xcatdport", "site.value=3101")
    assert mn_sqlite.ok("lsxcatd", "-a").lines[-1] == "xcatdport=3101"


@pytest.mark.parametrize("url, expected", [
    ("postgresql+psycopg://xcatadm:s3cret@10.0.0.1/xcatdb",
     ["cfgloc=postgresql+psycopg://xcatadm@10.0.0.1/xcatdb", "dbengine=Pg", "dbname=xcatdb",
      "dbhost=10.0.0.1", "dbadmin=xcatadm"]),
    ("postgresql://xcatadm@db:5433/xcatdb?password=s3cret&sslmode=require",
     ["cfgloc=postgresql://xcatadm@db:5433/xcatdb?sslmode=require", "dbengine=Pg",
      "dbname=xcatdb", "dbhost=db", "dbport=5433", "dbadmin=xcatadm"]),
    ("mysql+pymysql://root:s3cret@localhost/xcat",
     ["cfgloc=mysql+pymysql://root@localhost/xcat", "dbengine=mysql", "dbname=xcat",
      "dbhost=localhost", "dbadmin=root"]),
    ("sqlite:////srv/mn/var/lib/xcat/xcat.sqlite",
     ["dbengine=SQLite", "dbloc=/srv/mn/var/lib/xcat/xcat.sqlite"]),
])
def test_database_lines_drop_every_password(url, expected):
    lines = database_lines(url)
    assert lines == expected
    assert "s3cret" not in "\n".join(lines)


def test_a_database_url_that_does_not_parse_is_an_error_that_does_not_quote_it():
    with pytest.raises(XcatError) as err:
        database_lines("not a url with s3cret")
    assert str(err.value) == "Cannot parse the database URL in etc/xcat/cfgloc"
