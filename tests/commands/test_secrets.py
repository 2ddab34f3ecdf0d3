"""Passwords are masked everywhere unless --show-secrets; a masked value written back keeps
the stored secret."""
import pytest

MASK = "********"


@pytest.fixture
def secrets(mn):
    mn.ok("mkdef", "n1", "groups=all", "mgt=ipmi", "bmc=10.1.0.1", "bmcpassword=s3cret")
    mn.ok("chtab", "key=system", "passwd.username=root", "passwd.password=rootpw")
    return mn


@pytest.mark.parametrize("cmd, args, masked, clear", [
    ("tabdump", ["passwd"], '"system","root","********",,,,', '"system","root","rootpw",,,,'),
    ("tabdump", ["ipmi"], '"n1","10.1.0.1",,,,,"********",,', '"n1","10.1.0.1",,,,,"s3cret",,'),
    ("gettab", ["key=system", "passwd.password"], MASK, "rootpw"),
    ("gettab", ["-H", "key=system", "passwd.password"], f"passwd.password: {MASK}",
     "passwd.password: rootpw"),
    ("nodels", ["n1", "ipmi.password"], f"n1: {MASK}", "n1: s3cret"),
    ("nodels", ["n1", "ipmi"], f"n1: ipmi.password: {MASK}", "n1: ipmi.password: s3cret"),
    ("nodels", ["n1", "bmcpassword"], f"n1: {MASK}", "n1: s3cret"),
    ("lsdef", ["n1"], f"    bmcpassword={MASK}", "    bmcpassword=s3cret"),
    ("lsdef", ["-z", "n1"], f"    bmcpassword={MASK}", "    bmcpassword=s3cret"),
    ("lsdef", ["n1", "-i", "bmcpassword", "-c"], f"n1: bmcpassword={MASK}",
     "n1: bmcpassword=s3cret"),
])
def test_secret_masked_unless_show_secrets(secrets, cmd, args, masked, clear):
    out = secrets.ok(cmd, *args).lines
    assert masked in out
    assert "s3cret" not in "\n".join(out) and "rootpw" not in "\n".join(out)
    assert clear in secrets.ok(cmd, "--show-secrets", *args).lines


def test_empty_secret_is_not_masked(mn_sqlite):
    mn_sqlite.ok("chtab", "key=ipmi", "passwd.username=ADMIN")
    assert mn_sqlite.ok("tabdump", "passwd").lines[1:] == ['"ipmi","ADMIN",,,,,']


def test_tabdump_w_on_secret_masks_output(secrets):
    lines = secrets.ok("tabdump", "-w", "key==system", "passwd").lines
    assert lines[1:] == ['"system","root","********",,,,']


def test_tabrestore_of_masked_dump_keeps_stored_secret(secrets, tmp_path):
    dump = secrets.ok("tabdump", "passwd").out
    assert "rootpw" not in dump
    f = tmp_path / "passwd.csv"
    f.write_text(dump + '"ipmi","ADMIN","newpw",,,,\n')
    secrets.ok("tabrestore", str(f))
    assert sorted(secrets.ok("tabdump", "--show-secrets", "passwd").lines[1:]) == [
        '"ipmi","ADMIN","newpw",,,,', '"system","root","rootpw",,,,']


def test_tabrestore_masked_ipmi_dump_keeps_bmc_password(secrets, tmp_path):
    dump = secrets.ok("tabdump", "ipmi").out.replace('"10.1.0.1"', '"10.9.9.9"')
    f = tmp_path / "ipmi.csv"
    f.write_text(dump)
    secrets.ok("tabrestore", str(f))
    assert secrets.ok("nodels", "--show-secrets", "n1", "bmc", "bmcpassword").lines == [
        "n1: bmc: 10.9.9.9", "n1: bmcpassword: s3cret"]


def test_tabrestore_masked_secret_without_stored_value_is_error(secrets, tmp_path):
    f = tmp_path / "passwd.csv"
    f.write_text(secrets.ok("tabdump", "passwd").out + '"ipmi","ADMIN","********",,,,\n')
    before = secrets.ok("tabdump", "--show-secrets", "passwd").out
    r = secrets.run("tabrestore", str(f))
    assert r.rc == 1
    assert "masked" in r.err
    assert secrets.ok("tabdump", "--show-secrets", "passwd").out == before


def test_chdef_z_of_masked_stanza_keeps_stored_password(secrets):
    stanza = secrets.ok("lsdef", "-z", "n1").out.replace("bmc=10.1.0.1", "bmc=10.1.0.2")
    secrets.ok("chdef", "-z", input=stanza)
    assert secrets.ok("nodels", "--show-secrets", "n1", "bmc", "bmcpassword").lines == [
        "n1: bmc: 10.1.0.2", "n1: bmcpassword: s3cret"]


def test_show_secrets_output_matches_dumpxcatdb(secrets, tmp_path):
    secrets.ok("dumpxCATdb", "-p", str(tmp_path))
    assert (tmp_path / "passwd.csv").read_text() == \
        secrets.ok("tabdump", "--show-secrets", "passwd").out
