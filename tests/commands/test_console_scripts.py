"""The installed console scripts work end to end and propagate exit codes."""
import pytest


def test_nodeadd_then_nodels_via_entry_points(mn_sqlite):
    assert mn_sqlite.sh("nodeadd", "n1-n2,n10", "groups=all").rc == 0
    r = mn_sqlite.sh("nodels", "all", "groups")
    assert r.rc == 0
    assert r.out.splitlines() == ["n1: all", "n2: all", "n10: all"]


@pytest.mark.parametrize("argv, rc, needle", [
    (["nodels", "n99"], 1, "Invalid nodes and/or groups in noderange: n99"),
    (["tabdump", "nosuch"], 1, "nosuch"),
    (["tabrestore", "/nonexistent/nodelist.csv"], 3, "Unable to open"),
    (["nodeadd", "n5"], 1, "groups"),
    (["nodels", "--bogus-option"], 1, "bogus"),
])
def test_errors_exit_nonzero_with_message_on_stderr(mn_sqlite, argv, rc, needle):
    r = mn_sqlite.sh(*argv)
    assert r.rc == rc
    assert needle in r.err
    assert "Traceback" not in r.err


def test_tabdump_tabrestore_via_entry_points_with_stdin_file(mn_sqlite, tmp_path):
    mn_sqlite.sh("chtab", "node=n1", "nodehm.mgt=ipmi")
    out = mn_sqlite.sh("tabdump", "nodehm").out
    f = tmp_path / "nodehm.csv"
    f.write_text(out)
    mn_sqlite.sh("chtab", "-d", "node=n1", "nodehm")
    assert mn_sqlite.sh("tabrestore", str(f)).rc == 0
    assert mn_sqlite.sh("gettab", "node=n1", "nodehm.mgt").out == "ipmi\n"


def test_mkdef_z_reads_stdin_via_entry_point(mn_sqlite):
    r = mn_sqlite.sh("mkdef", "-z", input="n1:\n    objtype=node\n    groups=all\n")
    assert r.rc == 0
    assert r.out == "1 object definitions have been created or modified.\n"
    assert mn_sqlite.sh("lsdef", "-s").out == "n1  (node)\n"


def test_help_exits_zero(mn_sqlite):
    r = mn_sqlite.sh("tabprune", "-h")
    assert r.rc == 0
    assert "auditlog" in r.out
