"""Set up a management node under XCATROOT: directories, the master key that seals secrets
at rest, database, site defaults, policy, and tftpd-hpa's configuration (written, never
(re)started: see xcatd.fronts.tftp).

Idempotent: running it again creates what is missing and keeps every value an admin set
(``force`` resets the site defaults).
"""
from __future__ import annotations

import importlib.resources
import os
import pwd
import socket
from pathlib import Path

from sqlalchemy.engine import make_url

from xcatd.base.files import write_atomic
from xcatd.base.paths import Paths
from xcatd.db.cluster import Cluster
from xcatd.db.database import Database, seal_clear_values, sealed_values_exist, split_list
from xcatd.db.sealed import ensure_master_key
from xcatd.netboot.bootfiles import place
from xcatd.netconf.tftpd import configure_tftpd_hpa
from xcatd.security.credentials import (
    client_dir,
    client_files,
    create_ca,
    create_server_cert,
    ensure_relay_cert,
    issue_client_cert,
)

DIRS = {"/etc/xcat": 0o755, "/var/lib/xcat": 0o700, "/var/log/xcat": 0o750,
        "/var/run/xcat": 0o755,
        "/install": 0o755, "/install/postscripts": 0o755, "/tftpboot": 0o755}

DEFAULT_POLICY = [  # (priority, name, commands, rule)
    ("1", "root", None, "allow"),
    ("2.3", None, "lsxcatd", "allow"),
    ("3", None, "nextdestiny", "allow"),
    ("4", None, "getdestiny", "allow"),
    ("4.4", None, "getpostscript", "allow"),
    ("4.5", None, "getcredentials", "allow"),
    ("4.6", None, "syncfiles", "allow"),
    # nodes fetching their boot scripts and reporting (the node API; each proves itself)
    ("4.7", None, "bootscript,callback", "allow"),
    ("4.8", None, "liteplan", "allow"),  # a statelite initrd fetching its plan
    # a node enrolling with its boot token, then its agent's requests (each proves itself)
    ("4.9", None, "enrol,updatenodestat", "allow"),
]


#: Shipped files every node's postscripts may use, copied into <install>/postscripts
SHIPPED_POSTSCRIPTS = ("xcatlib.sh", "syslog", "remoteshell", "syncfiles", "otherpkgs",
                       "hostname", "confignetwork", "setupntp",
                       # the node agent, which install post steps fetch (xcatagent-setup)
                       "xcatagent", "xcatsync.py", "xcatagent.service", "xcatagent-setup")


def ship_postscripts(paths: Paths) -> list[str]:
    """Put the shipped postscript files into /install/postscripts (again after an upgrade
    changed them); returns what it wrote."""
    done = []
    for name in SHIPPED_POSTSCRIPTS:
        text = (importlib.resources.files("xcatd.postscripts") / name).read_text()
        dest = paths.under("/install/postscripts") / name
        try:
            if dest.read_text() == text:
                continue
        except OSError:
            pass
        write_atomic(dest, text, mode=0o755)
        done.append(f"Wrote {dest}")
    return done


def _master_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "NORESOLUTION"


def _domain() -> str:
    fqdn = socket.getfqdn()
    return fqdn.split(".", 1)[1] if "." in fqdn else "cluster"


def site_defaults() -> dict[str, str]:
    master = _master_address()
    return {
        "master": master, "nameservers": master, "domain": _domain(),
        "xcatdport": "3001", "xcatiport": "3002", "httpport": "80",
        "installdir": "/install", "tftpdir": "/tftpboot", "xcatconfdir": "/etc/xcat",
        "SNsyncfiledir": "/var/xcat/syncfiles", "nodesyncfiledir": "/var/xcat/node/syncfiles",
        "ipmimaxp": "64", "ipmiretries": "3", "ipmitimeout": "2", "maxssh": "512",
        "consoleondemand": "no", "powerinterval": "0", "syspowerinterval": "0",
        "sharedtftp": "1", "sshbetweennodes": "ALLGROUPS", "dnshandler": "ddns",
        "dhcplease": "43200", "auditnosyslog": "0", "cleanupxcatpost": "no",
        "dhcpbackend": "dhcpd", "timezone": _timezone(),
    }


def _timezone() -> str:
    try:
        return Path("/etc/timezone").read_text().strip() or "UTC"
    except OSError:
        return "UTC"


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def initialize(paths: Paths, *, db_url: str | None = None, force: bool = False,
               client_home: str | None = None) -> list[str]:
    """Create or complete the management node; returns what it did, one line each."""
    done: list[str] = []
    for d, mode in DIRS.items():
        p = paths.under(d)
        if not p.is_dir():
            p.mkdir(parents=True, exist_ok=True)
            os.chmod(p, mode)
            done.append(f"Created {p}")
        elif d == "/var/lib/xcat":
            os.chmod(p, mode)  # the database directory is private even if it existed
    if db_url or not paths.cfgloc.exists():
        url = db_url or paths.default_db_url
        fd = os.open(paths.cfgloc, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:  # may hold a database password: owner only
            fh.write(url + "\n")
        os.chmod(paths.cfgloc, 0o600)
        done.append(f"Wrote {paths.cfgloc}")
    if ensure_master_key(paths, lambda: sealed_values_exist(paths)):  # before it is opened
        done.append("Created the master key for secrets at rest")
    if create_ca(paths):
        done.append("Created the certificate authority")
    if create_server_cert(paths):
        done.append("Created the xcatd server certificate")
    if ensure_relay_cert(paths):  # the client certificate for relaying to service nodes
        done.append("Created the relay certificate for service nodes")
    user = _current_user()
    before = _mtime(client_files(client_home).cred)
    files = issue_client_cert(paths, user, client_dir(client_home))
    if files.cred.stat().st_mtime_ns != before:
        done.append(f"Issued {user}'s client certificate in {files.cred.parent}")
    db = Database.open(paths)
    db.create_all()
    _private_sqlite(db)
    db.check_ready()  # (columns added since: the secret columns are read next)
    sealed = seal_clear_values(db)  # a database from before secrets were sealed
    if sealed:
        done.append(f"Encrypted {sealed} secret values")
    with db.begin() as conn:
        have = {r["key"]: r for r in db.rows("site", conn, include_disabled=True)}
        defaults = site_defaults()
        updates = {(k,): {"value": v} for k, v in defaults.items() if force or k not in have}
        if updates:
            db.set_rows(conn, "site", updates)
            done.append(f"Set {len(updates)} site defaults")
        policy = db.rows("policy", conn, include_disabled=True)
        if not policy:
            db.set_rows(conn, "policy", {(prio,): {"name": name, "commands": cmds, "rule": rule}
                                         for prio, name, cmds, rule in DEFAULT_POLICY})
            done.append("Created the default policy")
        else:  # rows for commands added since, where the admin has none of their own
            named = {c for r in policy for c in split_list(r.get("commands"))}
            have = {r["priority"] for r in policy}
            new = {(prio,): {"name": name, "commands": cmds, "rule": rule}
                   for prio, name, cmds, rule in DEFAULT_POLICY
                   if cmds and prio not in have and not set(split_list(cmds)) & named}
            if new:
                db.set_rows(conn, "policy", new)
                done.append(f"Added {len(new)} default policy rows")
        ps = {r["node"] for r in db.rows("postscripts", conn, include_disabled=True)}
        if "xcatdefaults" not in ps:
            db.set_rows(conn, "postscripts", {("xcatdefaults",): {
                "postscripts": "syslog,remoteshell,syncfiles",
                "postbootscripts": "otherpkgs"}})
            done.append("Created the xcatdefaults postscripts row")
    done += ship_postscripts(paths)
    done += configure_tftpd_hpa(Cluster(paths, db))
    done.append(f"Management node ready under {paths.root} ({_safe_url(db.url)})")
    return done


def place_loaders(paths: Paths, arch: str = "x86_64") -> tuple[list[str], list[str]]:
    """mknb's work for xcatconfig: the boot loaders makedhcp hands out, placed in the TFTP
    root; (what was done, errors naming each missing package or bad file)."""
    db = Database.open(paths)
    tftpdir = db.site().tftpdir(paths)
    done, errors = [], []
    placed = 0
    for p in place(tftpdir, arch):
        if p.error:
            errors.append(f"{p.file.name}: {p.error}")
        placed += p.changed
    if placed:
        done.append(f"Placed {placed} boot loader files in {tftpdir} (mknb {arch})")
    return done, errors


def _private_sqlite(db: Database) -> None:
    """An SQLite database holds every password: owner-only, with its WAL files."""
    if db.engine.url.get_backend_name() != "sqlite" or not db.engine.url.database:
        return
    for suffix in ("", "-wal", "-shm"):
        f = Path(db.engine.url.database + suffix)
        if f.exists():
            os.chmod(f, 0o600)


def _safe_url(url: str) -> str:
    """The URL with any password replaced, for printing."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
