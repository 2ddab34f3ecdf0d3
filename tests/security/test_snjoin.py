"""A service node joins the management node with a one-time token: it checks the CA against
the token's fingerprint, gets its own certificate (service-node role) and a database role
that reads everything (secrets sealed) and writes only its status columns. The management
node's CA key, server key and master key never reach it."""
from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy.engine import make_url

from xcatd.base.paths import Paths
from xcatd.daemon.initialize import initialize
from xcatd.daemon.pipeline import Pipeline
from xcatd.db.database import Database, DBError
from xcatd.db.pgroles import NEEDS_POSTGRES, check_join_ready, scoped_role
from xcatd.db.sealed import PREFIX, Sealer, key_path
from xcatd.fronts.https import PIPELINE_KEY, POOL_KEY
from xcatd.fronts.server import server_ssl_context
from xcatd.fronts.snapi import add_snjoin_routes
from xcatd.lab.incli import run_command
from xcatd.security import snjoin
from xcatd.security.credentials import (
    MASTER_OU,
    SN_OU,
    CSRError,
    ca_files,
    ensure_relay_cert,
    issue_servicenode_cert,
    relay_files,
    server_files,
    server_names,
)
from xcatd.security.snjoin import JoinError, TokenError, load_identity, new_token, redeem

SECRET = "r00tpw"


# ---- fixtures -------------------------------------------------------------------------------
def _mn(tmp_path, url):
    paths = Paths(tmp_path / "mn")
    paths.root.mkdir()
    initialize(paths, db_url=url)
    db = Database.open(paths)
    with db.begin() as conn:
        db.set_rows(conn, "passwd", {("system", "root"): {"password": SECRET}})
        db.set_rows(conn, "nodelist", {("n1",): {"groups": "compute,all"}})
        db.set_rows(conn, "ipmi", {("n1",): {"bmc": "10.0.0.1", "password": "bmcpw"}})
    return paths


@pytest.fixture
def mn_sqlite_root(tmp_path):
    paths = _mn(tmp_path, None)
    yield paths
    Database.open(paths).dispose()


@pytest.fixture
def mn_pg(tmp_path, pg_server):
    """A management node root on PostgreSQL (the database API only)."""
    paths = _mn(tmp_path, pg_server.new_database())
    yield paths
    Database.open(paths).dispose()


class JoinServer:
    """The join routes of ``paths``'s xcatd on 127.0.0.1 over TLS, in a thread."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.pipeline = Pipeline.local(paths)
        self.pool = ThreadPoolExecutor(2)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app[PIPELINE_KEY] = self.pipeline
        app[POOL_KEY] = self.pool
        add_snjoin_routes(app)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0,
                           ssl_context=server_ssl_context(self.paths))
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> JoinServer:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()
        self.pool.shutdown()
        self.pipeline.close()

    @property
    def master(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def join_server(mn_pg):
    server = JoinServer(mn_pg).start()
    yield server
    server.stop()


@pytest.fixture
def sn_root(tmp_path):
    paths = Paths(tmp_path / "sn")
    paths.root.mkdir()
    return paths


def csr_for(name: str = "sn1", key=None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whatever")]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _secret(token: str) -> str:
    return token.rpartition(".")[0]


# ---- tokens ---------------------------------------------------------------------------------
def test_a_token_is_used_once(mn_sqlite_root):
    token = new_token(mn_sqlite_root, "sn1")
    redeem(mn_sqlite_root, "sn1", _secret(token))
    with pytest.raises(TokenError, match="Unknown join token"):
        redeem(mn_sqlite_root, "sn1", _secret(token))


def test_an_expired_token_is_refused_and_removed(mn_sqlite_root, monkeypatch):
    token = new_token(mn_sqlite_root, "sn1", ttl=60)
    later = time.time() + 61
    monkeypatch.setattr(snjoin.time, "time", lambda: later)
    with pytest.raises(TokenError, match="expired"):
        redeem(mn_sqlite_root, "sn1", _secret(token))
    assert json.loads(snjoin.tokens_path(mn_sqlite_root).read_text()) == {"tokens": []}


def test_a_token_for_another_name_is_refused_and_stays_for_its_own(mn_sqlite_root):
    token = new_token(mn_sqlite_root, "sn1")
    with pytest.raises(TokenError, match="not for service node 'sn2'"):
        redeem(mn_sqlite_root, "sn2", _secret(token))
    redeem(mn_sqlite_root, "sn1", _secret(token))


def test_the_token_file_keeps_a_hash_only_mode_0600(mn_sqlite_root):
    token = new_token(mn_sqlite_root, "sn1")
    path = snjoin.tokens_path(mn_sqlite_root)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _secret(token) not in path.read_text()
    ca = ca_files(mn_sqlite_root)[1].read_bytes()
    assert token.rpartition(".")[2] == snjoin.ca_fingerprint(ca)


def test_a_new_token_for_a_name_revokes_the_older(mn_sqlite_root):
    first = new_token(mn_sqlite_root, "sn1")
    second = new_token(mn_sqlite_root, "sn1")
    with pytest.raises(TokenError, match="Unknown"):
        redeem(mn_sqlite_root, "sn1", _secret(first))
    redeem(mn_sqlite_root, "sn1", _secret(second))


@pytest.mark.parametrize("name", ["sn 1", "sn1;drop", "", "x" * 57, "sn/1"])
def test_a_bad_service_node_name_is_refused(mn_sqlite_root, name):
    with pytest.raises(JoinError, match="Invalid service node name"):
        new_token(mn_sqlite_root, name)


# ---- certificates ---------------------------------------------------------------------------
def test_the_service_node_certificate_has_its_role_both_uses_and_the_ca_signature(
        mn_sqlite_root):
    pem = issue_servicenode_cert(mn_sqlite_root, "sn1", csr_for(), ["10.0.0.5", "sn1.cluster"])
    cert = x509.load_pem_x509_certificate(pem)
    ca = x509.load_pem_x509_certificate(ca_files(mn_sqlite_root)[1].read_bytes())
    cert.verify_directly_issued_by(ca)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [
        "sn1"]
    assert [a.value for a in cert.subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME)] == [SN_OU] == ["xcat-servicenode"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in alt.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert alt.get_values_for_type(x509.DNSName) == ["sn1", "sn1.cluster"]
    assert b"PRIVATE KEY" not in pem


def test_a_weak_or_forged_signing_request_is_refused(mn_sqlite_root):
    with pytest.raises(CSRError, match="curve"):
        issue_servicenode_cert(mn_sqlite_root, "sn1",
                               csr_for(key=ec.generate_private_key(ec.SECP192R1())), [])
    with pytest.raises(CSRError, match="not a PEM"):
        issue_servicenode_cert(mn_sqlite_root, "sn1", b"junk", [])


def test_every_management_node_has_a_relay_certificate(mn_sqlite_root):
    files = relay_files(mn_sqlite_root)
    assert files.cred.is_file() and stat.S_IMODE(files.cred.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(files.cred.read_bytes())
    assert [a.value for a in cert.subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME)] == [MASTER_OU]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ensure_relay_cert(mn_sqlite_root) is False  # made once
    files.cred.unlink()
    assert ensure_relay_cert(mn_sqlite_root) is True and files.cred.is_file()


# ---- the database ---------------------------------------------------------------------------
def test_sqlite_refuses_service_nodes_saying_how_to_move(mn_sqlite_root, monkeypatch):
    db = Database.open(mn_sqlite_root)
    for call in (check_join_ready, lambda d: scoped_role(d, "sn1")):
        with pytest.raises(DBError) as exc:
            call(db)
        assert str(exc.value) == NEEDS_POSTGRES
    assert NEEDS_POSTGRES.startswith("Service nodes need the management node's database on "
                                     "PostgreSQL (etc/xcat/cfgloc names SQLite)")
    monkeypatch.setenv("XCATROOT", str(mn_sqlite_root.root))
    r = run_command("xcatconfig", "--sntoken", "sn1")
    assert r.rc == 1 and r.out == "" and NEEDS_POSTGRES in r.err


@pytest.mark.postgres
def test_a_clear_secret_refuses_the_join(mn_pg):
    db = Database.open(mn_pg)
    with db.engine.begin() as conn:  # a value from before sealing, written past the sealer
        conn.execute(sa.text("UPDATE ipmi SET password = 'clearpw'"))
    with pytest.raises(DBError, match=r"stored clear in ipmi\.password: run xcatd once, or "
                                      "xcatconfig, to encrypt them"):
        check_join_ready(db)


def _as_role(pg_server, paths: Paths, role: str):
    import psycopg
    dbname = make_url(Database.open(paths).url).database
    return psycopg.connect(host="127.0.0.1", port=pg_server.port, user=role, dbname=dbname,
                           autocommit=True)


@pytest.mark.postgres
@pytest.mark.parametrize("statement", [
    "UPDATE policy SET rule = 'allow'",
    "INSERT INTO policy (priority, name, rule) VALUES ('0.1', 'sn1', 'allow')",
    "DELETE FROM policy",
    "UPDATE passwd SET password = 'mine'",
    "UPDATE ipmi SET password = 'mine'",
    "UPDATE site SET value = 'x' WHERE key = 'master'",
    "UPDATE nodelist SET groups = 'all'",
    "UPDATE chain SET chain = 'shell'",
    "INSERT INTO nodeowner (node, servicenode) VALUES ('n1', 'sn1')",
    "CREATE TABLE mine (a text)",
])
def test_the_role_cannot_change_policy_passwords_or_anything_else(mn_pg, pg_server, statement):
    import psycopg
    role, _password = scoped_role(Database.open(mn_pg), "sn1")
    with _as_role(pg_server, mn_pg, role) as conn, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


@pytest.mark.postgres
def test_the_role_reads_sealed_secrets_only_and_writes_its_status(mn_pg, pg_server):
    db = Database.open(mn_pg)
    with db.begin() as c:  # n1 is sn1's (its lease)
        db.set_rows(c, "nodeowner", {("n1",): {"servicenode": "sn1", "epoch": 1}})
    role, password = scoped_role(Database.open(mn_pg), "sn1")
    assert role == "xcatsn_sn1" and len(password) >= 32
    with _as_role(pg_server, mn_pg, role) as conn:
        assert conn.execute("SELECT rule FROM policy WHERE name = 'root'").fetchall() == [
            ("allow",)]
        stored = [v for (v,) in conn.execute("SELECT password FROM passwd "
                                             "UNION ALL SELECT password FROM ipmi")]
        assert len(stored) == 2 and all(v.startswith(PREFIX) for v in stored)
        assert SECRET not in "".join(stored) and "bmcpw" not in "".join(stored)
        for sealer in (Sealer(None), Sealer(os.urandom(32))):  # no key, or another one
            with pytest.raises(DBError, match="cannot decrypt"):
                sealer.unseal("passwd", "password", stored[0])
        conn.execute("INSERT INTO snstatus (node, address, port, heartbeat) "
                     "VALUES ('sn1', '10.0.0.5', '3001', 'now')")
        conn.execute("UPDATE snstatus SET heartbeat = 'later' WHERE node = 'sn1'")
        conn.execute("UPDATE nodelist SET status = 'booted', statustime = 'now' "
                     "WHERE node = 'n1'")
        conn.execute("INSERT INTO nodeevents (node, phase, status) VALUES ('n1', 'boot', 'ok')")
        conn.execute("INSERT INTO bootstate (node, installboots) VALUES ('n1', '1')")
        conn.execute("DELETE FROM bootstate WHERE node = 'n1'")
    db = Database.open(mn_pg)
    assert db.rows("nodelist")[0]["status"] == "booted"
    assert db.rows("snstatus")[0]["heartbeat"] == "later"


@pytest.mark.postgres
def test_making_the_role_again_changes_its_password_and_keeps_its_scope(mn_pg, pg_server):
    import psycopg
    db = Database.open(mn_pg)
    role, first = scoped_role(db, "sn1")
    again, second = scoped_role(db, "sn1")
    assert again == role and second != first
    with _as_role(pg_server, mn_pg, role) as conn:
        conn.execute("UPDATE nodelist SET status = 'x'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE policy SET rule = 'allow'")


# ---- the join, end to end -------------------------------------------------------------------
@pytest.mark.postgres
def test_a_service_node_joins_with_its_token(join_server, sn_root, monkeypatch):
    mn = join_server.paths
    token = new_token(mn, "sn1")
    monkeypatch.setenv("XCATROOT", str(sn_root.root))
    r = run_command("xcatconfig", "--servicenode", "--name", "sn1", "--master",
                    join_server.master, "--token", token, "--address", "127.0.0.2",
                    "--address", "sn1.cluster")
    assert r.rc == 0, r.err
    dburl = make_url(sn_root.cfgloc.read_text().strip())
    assert dburl.username == "xcatsn_sn1" and dburl.password
    for text in (r.out, r.err):  # neither secret is printed
        assert dburl.password not in text and _secret(token) not in text
    assert "Joined the management node" in r.out
    # what the service node holds: the CA certificate, its own key, its database URL
    assert ca_files(sn_root)[1].read_bytes() == ca_files(mn)[1].read_bytes()
    assert not ca_files(sn_root)[0].exists() and not key_path(sn_root).exists()
    cred = server_files(sn_root).cred
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert stat.S_IMODE(sn_root.cfgloc.stat().st_mode) == 0o600
    for secret_file in (ca_files(mn)[0], server_files(mn).cred, key_path(mn),
                        relay_files(mn).cred):
        theirs = secret_file.read_bytes()
        key_block = theirs[:theirs.index(b"-----END PRIVATE KEY-----")] if (
            b"PRIVATE KEY" in theirs) else theirs.strip()
        for f in sn_root.root.rglob("*"):
            if f.is_file():
                assert key_block not in f.read_bytes(), f"{f} holds {secret_file.name}"
    cert = x509.load_pem_x509_certificate(cred.read_bytes())
    assert [a.value for a in cert.subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME)] == [SN_OU]
    assert load_identity(sn_root) == snjoin.SnIdentity("sn1", join_server.master,
                                                       "127.0.0.2", 3001)
    # the service node's database: the management node's, through its role
    sn_db = Database(sn_root.cfgloc.read_text().strip())
    try:
        assert {r["name"] for r in sn_db.rows("policy") if r["name"]} == {"root"}
        with pytest.raises(DBError, match="cannot decrypt"):
            sn_db.rows("passwd")
    finally:
        sn_db.dispose()
    # the audit log says who joined, and no secret
    rows = Database.open(mn).rows("auditlog")
    joined = [r for r in rows if r["command"] == "snjoin"]
    assert len(joined) == 1 and joined[0]["comments"].startswith("service node sn1 joined")
    assert _secret(token) not in json.dumps(rows) and dburl.password not in json.dumps(rows)
    # the token is spent: a second join is refused, and leaves the service node as it was
    before = {f: (sn_root.root / f).read_bytes() for f in files_under(sn_root.root)}
    with pytest.raises(TokenError, match="Unknown join token"):
        snjoin.join(sn_root, "sn1", join_server.master, token, ["127.0.0.1"])
    assert {f: (sn_root.root / f).read_bytes() for f in files_under(sn_root.root)} == before


@pytest.mark.postgres
def test_a_ca_that_is_not_the_tokens_is_refused_and_nothing_is_written(join_server, sn_root):
    token = new_token(join_server.paths, "sn1")
    forged = _secret(token) + "." + "0" * 64
    with pytest.raises(JoinError, match=r"not the token's 0{64}: .*nothing was written"):
        snjoin.join(sn_root, "sn1", join_server.master, forged, ["127.0.0.1"])
    assert files_under(sn_root.root) == []
    redeem(join_server.paths, "sn1", _secret(token), consume=False)  # still unused


@pytest.mark.postgres
def test_a_bad_signing_request_is_a_400_and_keeps_the_token(join_server):
    import http.client
    import ssl
    token = new_token(join_server.paths, "sn1")
    ctx = ssl.create_default_context(cafile=str(ca_files(join_server.paths)[1]))
    conn = http.client.HTTPSConnection("127.0.0.1", join_server.port, context=ctx)
    conn.request("POST", "/v1/snjoin", json.dumps({"token": _secret(token), "name": "sn1",
                                                   "csr": "junk", "names": []}))
    resp = conn.getresponse()
    assert resp.status == 400
    assert json.loads(resp.read())["error"].startswith("Invalid signing request")
    conn.request("POST", "/v1/snjoin", json.dumps({"token": "nope", "name": "sn1",
                                                   "csr": csr_for().decode()}))
    resp = conn.getresponse()
    assert resp.status == 403 and "Unknown join token" in json.loads(resp.read())["error"]
    conn.close()
    redeem(join_server.paths, "sn1", _secret(token), consume=False)


def test_load_identity_absent_is_none_and_damaged_is_a_clear_error(sn_root):
    assert load_identity(sn_root) is None
    snjoin.identity_path(sn_root).parent.mkdir(parents=True)
    snjoin.identity_path(sn_root).write_text("{not json")
    with pytest.raises(ValueError, match=r"servicenode\.json is damaged"):
        load_identity(sn_root)


def test_a_management_node_root_does_not_join(mn_sqlite_root):
    with pytest.raises(JoinError, match="this root is a management node"):
        snjoin.join(mn_sqlite_root, "sn1", "127.0.0.1:1", "a." + "0" * 64)


@pytest.mark.postgres
def test_a_service_node_joins_through_a_running_xcatd(mn_pg, sn_root, monkeypatch):
    """The join paths of xcatd itself, which asks no client certificate for them."""
    from xcatd.lab.daemon import DaemonThread
    thread = DaemonThread(mn_pg, unix=False)
    port = thread.start().port
    try:
        token = new_token(mn_pg, "sn1")
        lines = snjoin.join(sn_root, "sn1", f"127.0.0.1:{port}", token, ["127.0.0.2"])
    finally:
        thread.stop()
    assert lines[-1] == f"Joined the management node 127.0.0.1:{port} as service node sn1"
    assert make_url(sn_root.cfgloc.read_text().strip()).username == "xcatsn_sn1"
    assert load_identity(sn_root).name == "sn1"


@pytest.mark.postgres
def test_sntoken_prints_the_token_alone(mn_pg, monkeypatch):
    monkeypatch.setenv("XCATROOT", str(mn_pg.root))
    r = run_command("xcatconfig", "--sntoken", "sn1", "--ttl", "600")
    assert r.rc == 0 and r.err == ""
    [token] = r.lines
    secret, fingerprint = snjoin.parse_token(token)
    assert fingerprint == snjoin.ca_fingerprint(ca_files(mn_pg)[1].read_bytes())
    redeem(mn_pg, "sn1", secret)
    bad = run_command("xcatconfig", "--sntoken", "sn 1")
    assert bad.rc == 1 and bad.out == "" and "Invalid service node name 'sn 1'" in bad.err
    stray = run_command("xcatconfig", "--token", "x")
    assert stray.rc == 1 and "--token: only with --servicenode" in stray.err
    # a service node says where the management node reaches it (its heartbeat records it)
    unplaced = run_command("xcatconfig", "--servicenode", "--name", "sn1", "--master",
                           "127.0.0.1:3001", "--token", token)
    assert unplaced.rc == 1 and "xcatconfig --servicenode needs --address" in unplaced.err


@pytest.mark.postgres
def test_a_service_node_cannot_have_the_management_nodes_names(join_server, sn_root,
                                                               monkeypatch):
    """A token holder asking for a certificate valid for the management node's own names
    (it could pose as the management node to admins and nodes) is refused, and the token
    stays usable."""
    mn = join_server.paths
    token = new_token(mn, "sn1")
    monkeypatch.setenv("XCATROOT", str(sn_root.root))
    for stolen in ("127.0.0.1", "localhost", server_names(mn)[0], "0:0:0:0:0:0:0:1"):
        r = run_command("xcatconfig", "--servicenode", "--name", "sn1", "--master",
                        join_server.master, "--token", token, "--address", "127.0.0.2",
                        "--address", stolen)
        assert r.rc == 1 and f"cannot name {stolen}: the management node" in r.err, r.err
        assert not sn_root.cfgloc.exists()
    r = run_command("xcatconfig", "--servicenode", "--name", "sn1", "--master",
                    join_server.master, "--token", token, "--address", "127.0.0.2")
    assert r.rc == 0, r.err


@pytest.mark.postgres
def test_the_role_writes_only_the_rows_of_its_own_nodes_and_its_own_heartbeat(
        mn_pg, pg_server):
    """Row-level security: sn1 may write n1 (its lease), never n2 (sn2's) nor m1 (the
    management node's), nor sn2's heartbeat, nor records of requests that are not its nodes'."""
    import psycopg
    db = Database.open(mn_pg)
    with db.begin() as c:
        db.set_rows(c, "nodelist", {(n,): {"groups": "compute"} for n in ("n2", "m1")})
        db.set_rows(c, "nodeowner", {("n1",): {"servicenode": "sn1", "epoch": 1},
                                     ("n2",): {"servicenode": "sn2", "epoch": 1}})
        db.set_rows(c, "chain", {(n,): {"currstate": "boot"} for n in ("n1", "n2", "m1")})
        db.set_rows(c, "snstatus", {("sn2",): {"address": "10.0.0.6", "heartbeat": "x"}})
    role, _ = scoped_role(db, "sn1")
    denied = psycopg.errors.InsufficientPrivilege
    with _as_role(pg_server, mn_pg, role) as conn:
        conn.execute("UPDATE chain SET currstate = 'install', currchain = 'runimage=x'")
        conn.execute("UPDATE snstatus SET address = '192.0.2.9'")
        conn.execute("UPDATE nodelist SET status = 'booted'")
        for stmt in ("INSERT INTO bootstate (node, tokenhash) VALUES ('m1', 'forged')",
                     "INSERT INTO bootstate (node, tokenhash) VALUES ('n2', 'forged')",
                     "INSERT INTO snstatus (node, address) VALUES ('sn3', '192.0.2.9')",
                     "INSERT INTO nodeevents (node, phase) VALUES ('m1', 'boot')",
                     "INSERT INTO auditlog (userid, clienttype, command) "
                     "VALUES ('root', 'cli', 'chdef')",
                     "INSERT INTO jobs (jobid, \"user\", clienttype) VALUES ('j', 'root', 'cli')"):
            with pytest.raises(denied, match="row-level security"):
                conn.execute(stmt)
        conn.execute("INSERT INTO bootstate (node, tokenhash) VALUES ('n1', 'mine')")
        conn.execute("INSERT INTO auditlog (userid, clienttype, command) "
                     "VALUES ('n1', 'node', 'bootscript')")
    chain = {r["node"]: (r["currstate"], r["currchain"]) for r in db.rows("chain")}
    assert chain == {"n1": ("install", "runimage=x"), "n2": ("boot", None),
                     "m1": ("boot", None)}
    assert {r["node"]: r.get("status") for r in db.rows("nodelist")} == {
        "n1": "booted", "n2": None, "m1": None}
    assert [r["address"] for r in db.rows("snstatus")] == ["10.0.0.6"]
    assert [r["node"] for r in db.rows("bootstate")] == ["n1"]


@pytest.mark.postgres
def test_the_role_does_not_see_the_site_keys_that_hold_secrets(mn_pg, pg_server):
    db = Database.open(mn_pg)
    with db.begin() as c:
        db.set_rows(c, "site", {(k,): {"value": v} for k, v in (
            ("ldappassword", "ldap-secret"), ("apitoken", "tok-secret"),
            ("genpasswords", "1"), ("master", "10.0.0.1"))})
    role, _ = scoped_role(db, "sn1")
    with _as_role(pg_server, mn_pg, role) as conn:
        seen = dict(conn.execute("SELECT key, value FROM site").fetchall())
    assert seen["master"] == "10.0.0.1" and seen["genpasswords"] == "1"
    assert "ldappassword" not in seen and "apitoken" not in seen
    assert db.site().get("ldappassword") == "ldap-secret"  # the management node sees it
    # nor through a job's recorded output (tabdump site by an admin) or its audit row
    with db.begin() as c:
        db.set_rows(c, "jobs", {("j1",): {"user": "root", "clienttype": "cli",
                                         "command": "tabdump"}})
        db.set_rows(c, "jobresults", {("j1", 1): {"data": '"apitoken","tok-secret"'}})
        db.insert_row(c, "auditlog", {"userid": "root", "clienttype": "cli",
                                      "command": "tabdump", "args": "site"})
    with _as_role(pg_server, mn_pg, role) as conn:
        for table in ("jobs", "jobresults", "auditlog"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
