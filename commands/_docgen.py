"""Man pages and bash completion for every command, generated from the click definitions.

The options, their arguments and help come from each command's click definition; what a
command is for (its NAME line and DESCRIPTION), the words its arguments take and how they
complete are written here by hand. The output is kept in the repository under ``share/`` and
installed by the package (setup.cfg ``data_files``); after changing a command's options,
regenerate it and review the diff::

    .venv/bin/python -m xcatd.commands._docgen share

(tests/commands/test_cli_front.py fails, naming this command, when the files are stale.)
Our own generator rather than click-man: the same walk over the commands also writes the
completion data, and the pages carry our hand-written descriptions and xCAT's sections.
"""
from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path

import click

from xcatd.db.database import TABLES
from xcatd.db.jobs import TERMINAL
from xcatd.db.objects import DEFINABLE

PACKAGE = "pyxcat"
MODULE_PREFIX = "xcatd.commands."
GENERATOR = "xcatd.commands._docgen"

# ---- what each command is for, in our words: (NAME line, DESCRIPTION) ------------------------
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "chdef": ("change object definitions",
              "Changes the attributes of existing objects (nodes, groups, osimages, networks, "
              "site, policy...). Values may be set, added to a list (-p) or removed from it "
              "(-m); -n renames an object; -z reads stanzas from standard input. Group "
              "attributes are inherited by the group's nodes unless a node sets its own."),
    "chtab": ("change rows of a database table",
              "Sets columns in the rows that match the keys, creating the row when none "
              "matches; with -d, deletes the matching rows. Assignments may append to a "
              "list (+=) as in xCAT."),
    "copycds": ("copy an installation medium into the install tree",
                "Copies an OS installation ISO (or mounted medium) under the install "
                "directory, records the distribution in the osdistro table and defines "
                "its install, netboot and statelite osimages. -i only identifies the "
                "medium."),
    "dumpxCATdb": ("dump every table to CSV files",
                   "Writes one <table>.csv per table into the directory given with -p, in "
                   "tabdump's format. The files hold passwords: they are written mode 0600. "
                   "The log tables are left out unless -a is given."),
    "genimage": ("build the root of a diskless image",
                 "Builds the image root of a netboot or statelite osimage from its package "
                 "lists (mmdebstrap for Debian, dnf --installroot for the RHEL family), runs "
                 "its postinstall scripts and places the kernel and initrd beside it. Run "
                 "packimage afterwards."),
    "gettab": ("read values from database tables",
               "Prints the values of table.column for the rows that match the keys; -H "
               "labels each value with its column."),
    "job": ("list, show, wait for and cancel jobs",
            "Every request the daemon runs is a job with a record and its output. job "
            "list shows recent jobs, job show replays one's output, job wait waits for it "
            "to end and exits with its code, job cancel asks a running job to stop. A job "
            "id may be shortened to a unique prefix."),
    "liteimg": ("apply the litefile rules to a statelite image",
                "Checks the litefile entries of a statelite osimage and writes them, with "
                "the image's own copy of each file, into the image root."),
    "lsdef": ("list object definitions",
              "Lists objects and their attributes: nodes by default (a noderange, -o names, "
              "or every node), or the types given with -t. -l shows every attribute, -s "
              "only names, -i chosen attributes, -w selects by attribute value, -z prints "
              "stanzas that mkdef -z reads back. Passwords are masked."),
    "lslite": ("list the statelite files of images or nodes",
               "Shows the litefile entries that apply to an osimage (-i) or to the nodes of "
               "a noderange."),
    "lsxcatd": ("show information about the daemon",
                "Shows the daemon's version (-v), whether this is a management node or a "
                "service node (-t), the database it uses (-d: engine and location, never the "
                "password), or all of these and the daemon's port (-a). With no option it "
                "prints its usage and exits 1, as xCAT's does."),
    "makedhcp": ("write the DHCP configuration and update the DHCP server",
                 "With -n writes and checks the whole DHCP server configuration (ISC dhcpd "
                 "or Kea). With a noderange or -a, adds or updates the nodes' reservations "
                 "on the running server; -d removes them, -q shows what the server holds."),
    "makedns": ("write the DNS configuration and update the name server",
                "With -n writes and checks named.conf and the zones for the cluster's "
                "networks. With a noderange, adds (or with -d removes) the nodes' records on "
                "the running named by signed dynamic updates."),
    "makehosts": ("write the nodes' entries into /etc/hosts",
                  "Adds or updates each node's line (and its extra interfaces') in the "
                  "management node's /etc/hosts; -n rebuilds the file, -d removes the "
                  "entries."),
    "makeknownhosts": ("write the nodes' entries into root's known_hosts",
                       "Replaces each node's entries in root's ~/.ssh/known_hosts on the "
                       "management node with one line per ssh host key the node was given "
                       "(the remoteshell postscript installs them; they are made the first "
                       "time and kept), naming the node, node.domain, its hosts.hostnames "
                       "and hosts.ip; -r or -d only removes them. Other lines are kept as "
                       "they are, the previous file is kept as known_hosts.backup, and the "
                       "node need not be up: ssh from the management node then knows the "
                       "nodes without asking."),
    "makenetworks": ("define networks from the management node's interfaces",
                     "Creates a networks row for each network the management node is "
                     "attached to; -d shows them without writing."),
    "mkdef": ("create object definitions",
              "Creates objects (nodes, groups, osimages, networks, policy rows...) with the "
              "attributes given; -f replaces an existing definition, -z reads stanzas from "
              "standard input, -d with -w defines a dynamic group by conditions."),
    "mknb": ("place the network boot loaders",
             "Copies the boot loaders that makedhcp hands out (iPXE, pxelinux, shim and the "
             "signed GRUB2) from their Debian packages into the TFTP root and checks them. "
             "xcatconfig runs it; run it again after upgrading those packages."),
    "nodeadd": ("add nodes",
                "Adds the nodes of a noderange to the nodelist table, with their groups and "
                "any table.column=value given."),
    "nodech": ("change node attributes in the tables",
               "Sets table.column values for the nodes of a noderange; ,= appends to a list, "
               "^= removes from it. -d deletes the nodes' rows in the tables named."),
    "nodeevents": ("show what nodes reported while they booted and ran their postscripts",
                   "Prints the newest events of each node of a noderange (10 by default, -n "
                   "N), oldest first: when, the phase (install, postscripts, updatenode...), "
                   "the script, its status (ok, failed, timeout...), exit code and duration, "
                   "and below a failed, timed-out or watchdog event the last lines of its "
                   "output. xcatd keeps site.nodeeventsmax events per node (200 by default). "
                   "Its watchdog fails a node that says nothing for site.nodestatustimeout "
                   "seconds (3600 by default; 0 turns it off) while it installs, boots or "
                   "runs its postscripts, with a watchdog event saying so."),
    "nodegrpch": ("change attributes of groups",
                  "Sets table.column values on the rows of the groups named, which their "
                  "member nodes inherit."),
    "nodels": ("list nodes and their attributes",
               "Lists the nodes of a noderange (every node without one) and, if asked, "
               "attributes of each: table.column names, short names such as groups or mgt, "
               "whole tables, or selections like mgt==ipmi. Passwords are masked."),
    "noderm": ("remove nodes",
               "Removes the nodes of a noderange from every table."),
    "nodeset": ("set what nodes do at their next network boot",
                "Prepares the boot files of each node for its next network boot: install or "
                "boot an osimage, boot from disk, a shell, an image, or a chain of these. "
                "stat shows the current setting."),
    "nodestat": ("show what is running on nodes",
                 "Probes every node of a noderange at once and prints, per node, the "
                 "applications answering on their ports (sshd, https...), else the "
                 "deployment state of a node that answers ping, else noping. A failed node "
                 "that answers says why: its last failing script and output line, from its "
                 "event log (see nodeevents). -u records the result in nodelist.status."),
    "packimage": ("pack a diskless image",
                  "Packs the image root of a netboot osimage (squashfs with zstd by default, "
                  "or cpio or tar) and writes its manifest with the checksums nodes verify."),
    "pping": ("ping nodes in parallel",
              "Pings every node of a noderange at once and prints n1: ping or n1: noping; "
              "-i pings the nodes' other interfaces instead."),
    "restorexCATdb": ("restore every table from CSV files",
                      "Reads the <table>.csv files dumpxCATdb wrote in the directory given "
                      "with -p and replaces the tables' contents with them."),
    "reventlog": ("read or clear the hardware event log",
                  "Prints the newest entries (a number, or all) of each node's hardware "
                  "event log (IPMI SEL), or clears it. Alone, it prints its usage."),
    "rinv": ("read hardware inventory",
             "Reads inventory from each node's management controller: model, serial, "
             "firmware, GUID, MACs, DIMMs and the rest, one line per item."),
    "rmdef": ("remove object definitions",
              "Removes the objects named (nodes by default); -a -f removes every "
              "definition."),
    "rmimage": ("remove a diskless image's files",
                "Removes the generated files of a netboot or statelite osimage; --xcatdef "
                "removes its definition too."),
    "rpower": ("control the power of nodes",
               "Turns nodes on or off, resets or cycles them, or reports their power state, "
               "through each node's management controller. Thousands of nodes are handled "
               "at once; one node that does not answer is one error line."),
    "rsetboot": ("set the next boot device",
                 "Sets the device nodes boot from next (network, disk, CD...) through their "
                 "management controllers; -p keeps it for every boot, -u asks for UEFI."),
    "rvitals": ("read sensors and power state",
                "Reads temperatures, voltages, fan speeds, power draw, LEDs and the power "
                "state from each node's management controller."),
    "tabch": ("change rows of a database table (xCAT's other name for chtab)",
              "Sets columns in the rows that match the keys, creating the row when none "
              "matches; with -d, deletes the matching rows. It is chtab under the name "
              "xCAT also gives it."),
    "tabdump": ("print a table in CSV form",
                "Prints a table in xCAT's CSV form (tabrestore reads it back), or the list "
                "of tables without an argument; -d describes tables or columns, -w selects "
                "rows, -f writes to a file. Passwords are masked."),
    "tabedit": ("edit a table in an editor",
                "Dumps a table to a temporary file, opens $EDITOR on it, and restores the "
                "table from the edited file when it changed."),
    "tabgrep": ("list the tables that name a node",
                "Prints the tables that have a row for the node."),
    "tabprune": ("remove old records from log tables",
                 "Removes records from auditlog, eventlog or the job tables: all of them, "
                 "the oldest N, a percentage, those below a record id, or those older than "
                 "a number of days; -V prints what it removes."),
    "tabrestore": ("replace a table with a CSV file",
                   "Replaces the contents of the table a CSV file is named after with the "
                   "file's rows (-a adds them instead). Masked passwords keep their stored "
                   "value."),
    "updatenode": ("update running nodes through their agents",
                   "Syncs the synclist's files (-F), installs the osimage's otherpkgs (-S), runs "
                   "postscripts (-P: the node's whole plan with UPDATENODE=1, or the scripts "
                   "listed) and renews the node's certificate and re-delivers its ssh keys "
                   "(-k) on running nodes. Each node's agent "
                   "keeps a mutual-TLS connection to xcatd and runs what it is sent, so no ssh "
                   "from the management node is needed. nodelist.updatestatus says how each "
                   "node's run ended; the exit code is non-zero if any node or script failed."),
    "xcatclientcert": ("issue a user's client certificate",
                       "Issues a client certificate for a user, signed by the management "
                       "node's CA, into ~user/.xcat. The certificate identifies the user to "
                       "xcatd; the policy table decides what the user may do."),
    "xcatconfig": ("initialise the management node",
                   "Creates the directories, the database, the site defaults, the default "
                   "policy, the CA and certificates under $XCATROOT, and places the boot "
                   "loaders. Safe to run again."),
    "snmove": ("move nodes to another service node",
               "Moves the nodes of a noderange (or, with -s, every node a service node serves) "
               "to another service node (-d, else each node's backup: the next in its "
               "servicenode pool), in one transaction: the destination first in the node's "
               "servicenode pool, the node's lease (nodeowner) to it with a new epoch, so the "
               "old service node can no longer act for it, and the xcatmaster, tftpserver, "
               "nfsserver and monserver that named the old service node; then the new service "
               "node writes the moved nodes' DHCP entries and boot files in their current "
               "state (-i: the tables alone)."),
    "xcatexport": ("write the whole management node into one archive",
                   "Writes everything of the management node but its base distribution into "
                   "one archive (-f, a .tar.zst) or directory (-p): every table (the logs "
                   "with -a), the CA and certificates, root's ssh keys and the nodes' host "
                   "keys, the site's postscripts and custom templates, every osimage's lists "
                   "and synclists with their includes, and with --with-images and --with-media "
                   "the built images and copycds trees. A manifest records each entry's sha256, "
                   "size and mode. Passwords and private keys are encrypted with a passphrase "
                   "(scrypt and AES-256-GCM) unless --secrets redact leaves them out or "
                   "--secrets plain keeps them in clear. The archive is mode 0600."),
    "xcatimport": ("restore an xcatexport archive on this management node",
                   "Makes this management node the one an xcatexport archive pictures. Every "
                   "entry's hash is checked before anything changes; the tables are written "
                   "in one transaction and the files renamed into place with it, so a "
                   "damaged archive, a wrong passphrase or an interrupted import changes "
                   "nothing. --remap old=new rewrites the old management node's names and "
                   "addresses; --dry-run shows the changes object by object. A node that "
                   "already has nodes needs --merge or --replace. Afterwards the server "
                   "certificate is reissued for the new names and hosts, DHCP, DNS and boot "
                   "files are regenerated; restart xcatd."),
    "xcatd": ("the pyxcat daemon",
              "Runs the daemon in the foreground: the command protocol and the REST API "
              "over HTTPS with client certificates, a unix socket for root, the nodes' "
              "HTTP site and, where needed, a TFTP server."),
    "xdcp": ("copy files to many nodes at once over ssh",
             "Copies files and directories (-R) of the management node to the nodes of a "
             "noderange at once over ssh (SFTP on one connection per node), with the "
             "management node's root key and known_hosts (makeknownhosts). A file whose "
             "size and time on the node are the source's is not sent again; files land "
             "whole (written beside, then renamed). -P pulls the nodes' files back as "
             "<file>._<node>; -F applies a synclist (APPEND, MERGE, EXECUTE, "
             "EXECUTEALWAYS) as updatenode -F does. Only root may run it; the exit code is 1 "
             "if any node failed."),
    "xdsh": ("run commands on many nodes at once over ssh",
             "Runs a command (or, with -e, a local script) on the nodes of a noderange at "
             "once over ssh, through xcatd, with the management node's root key; host keys "
             "are checked against its known_hosts (makeknownhosts). Each line is printed "
             "as node: line, a node's lines together when it is done (-s: as they arrive). "
             "-t bounds each node's whole run and kills the command on the node. A node "
             "that cannot be reached gets an error line; the exit code is 1 if any node "
             "failed. -K sets up the nodes' ssh keys; --xdshbak and --xcoll group identical "
             "outputs."),
    "xcoll": ("print each distinct output of many nodes once",
              "Reads node: line output (from xdsh, rinv...) on standard input, gathers each "
              "node's lines and prints every distinct output once, between rules of equal "
              "signs, headed by the nodes that gave it as a folded noderange (n[001-200]); "
              "-n lists the names instead, -c adds the node count, -i prints every node's "
              "output on its own. A line without a colon belongs to the node UNKNOWN. It "
              "needs no daemon: unlike xCAT's it does not abbreviate the names by group."),
    "xdshbak": ("format the output of xdsh by node",
                "Reads xdsh's node: line output on standard input, gathers each node's lines "
                "and prints them node by node in version order (n2 before n10), each under a "
                "HOST: header; -c prints every distinct output once under a HOSTS header "
                "naming its nodes as a folded noderange; -x prints the lines with their node "
                "prefix and no headers (-b without the prefix too). Lines without a node: "
                "prefix are left out. It prints a dot for every 1000 lines read unless -q. "
                "Wrong options exit 255, as xCAT's does."),
}

#: Commands grouped for SEE ALSO.
FAMILIES = (
    ("mkdef", "chdef", "lsdef", "rmdef"),
    ("nodeadd", "nodech", "nodels", "noderm", "nodegrpch", "nodestat", "pping",
     "nodeevents"),
    ("tabdump", "tabrestore", "tabedit", "tabgrep", "tabprune", "chtab", "tabch", "gettab",
     "dumpxCATdb", "restorexCATdb"),
    ("rpower", "rsetboot", "rinv", "rvitals", "reventlog"),
    ("copycds", "nodeset", "genimage", "packimage", "rmimage", "liteimg", "lslite", "mknb",
     "updatenode"),
    ("makehosts", "makeknownhosts", "makenetworks", "makedhcp", "makedns"),
    ("xcatd", "xcatconfig", "xcatclientcert", "lsxcatd", "job", "xcatexport", "xcatimport"),
    ("snmove",),
    ("xdsh", "xdcp", "xdshbak", "xcoll"),
)

# ---- how arguments complete ----------------------------------------------------------------
#: The words a command's word argument takes (its actions), as xCAT's man pages list them.
ACTIONS: dict[str, tuple[str, ...]] = {
    "rpower": ("on", "off", "softoff", "reset", "boot", "cycle", "stat", "state", "status",
               "nmi"),
    "rsetboot": ("net", "hd", "cd", "floppy", "setup", "def", "default", "stat"),
    "rinv": ("all", "model", "serial", "vpd", "firm", "mprom", "deviceid", "guid", "uuid",
             "mac", "dimm", "asset", "misc"),
    "rvitals": ("all", "temp", "voltage", "wattage", "fanspeed", "power", "leds"),
    "reventlog": ("all", "clear"),
    "nodeset": ("osimage", "osimage=", "boot", "shell", "standby", "runcmd=", "runimage=",
                "shutdown", "offline", "next", "stat"),
    "mknb": ("x86_64",),
    "tabprune": ("auditlog", "eventlog", "jobs"),
}

#: Argument name -> what it completes to; a command's entry overrides it.
ARG_KINDS = {"noderange": "nodes", "words": "nodes", "node": "nodes", "groups": "nodes",
             "action": "words", "device": "words", "what": "words", "state": "words",
             "arch": "words", "table": "tables", "imagename": "osimages",
             "filename": "files", "sources": "files"}
COMMAND_ARG_KINDS = {("tabprune", "table"): "words"}

#: Option -> the values it completes to: words, or a kind (nodes, osimages, tables, files,
#: dirs). Keyed by (command, option), or by option for every command that has it.
OPTION_VALUES: dict[tuple[str, str] | str, tuple[str, ...] | str] = {
    **{(c, "-t"): tuple(DEFINABLE) for c in ("mkdef", "chdef", "lsdef", "rmdef")},
    **{(c, "-o"): "nodes" for c in ("mkdef", "chdef", "lsdef", "rmdef")},
    ("packimage", "-m"): ("squashfs", "cpio", "tar"),
    ("packimage", "--method"): ("squashfs", "cpio", "tar"),
    ("packimage", "-c"): ("zstd", "xz", "gzip", "pigz"),
    ("packimage", "--compress"): ("zstd", "xz", "gzip", "pigz"),
    ("copycds", "-a"): ("x86_64", "ppc64le", "aarch64"),
    ("copycds", "--arch"): ("x86_64", "ppc64le", "aarch64"),
    ("job", "-s"): ("queued", "running", *TERMINAL),
    ("job", "--state"): ("queued", "running", *TERMINAL),
    ("lslite", "-i"): "osimages",
    ("tabdump", "-f"): "files",
    ("dumpxCATdb", "-p"): "dirs",
    ("restorexCATdb", "-p"): "dirs",
    ("xcatexport", "-p"): "dirs",
    ("xcatexport", "-f"): "files",
    ("xcatexport", "--passphrase-file"): "files",
    ("xcatimport", "-p"): "dirs",
    ("xcatimport", "-f"): "files",
    ("xcatimport", "--passphrase-file"): "files",
    ("xcatclientcert", "-d"): "dirs",
    ("xcatclientcert", "--dir"): "dirs",
}
KINDS = ("nodes", "osimages", "tables", "files", "dirs", "words", "none")


# ---- the commands ------------------------------------------------------------------------
def commands() -> dict[str, click.Command]:
    """Every console script of the package that is a pyxcat command, by name."""
    found = {}
    for ep in distribution(PACKAGE).entry_points:
        if ep.group == "console_scripts" and ep.value.startswith(MODULE_PREFIX):
            module, _, attr = ep.value.partition(":")
            found[ep.name] = getattr(importlib.import_module(module), attr)
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def _context(name: str, cmd: click.Command) -> click.Context:
    return click.Context(cmd, info_name=name, **{**cmd.context_settings,
                                                  "max_content_width": 100})


def options(name: str, cmd: click.Command) -> list[click.Option]:
    """The options ``name`` takes, its help option included."""
    return [p for p in cmd.get_params(_context(name, cmd)) if isinstance(p, click.Option)]


def spellings(opt: click.Option) -> list[str]:
    return [*opt.opts, *opt.secondary_opts]


def takes_value(opt: click.Option) -> bool:
    return not opt.is_flag and not opt.count


# ---- man pages ---------------------------------------------------------------------------
def roff(text: str) -> str:
    """Text safe in a roff paragraph: backslashes escaped, no line starting a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line
                     for line in text.splitlines())


def _help_roff(cmd: click.Command) -> list[str]:
    """The command's click help as roff paragraphs: those click keeps as they are (after a
    ``\\b`` line) unfilled, the others filled."""
    out = []
    for para in re.split(r"\n\s*\n", (cmd.help or "").strip()):
        lines = para.splitlines()
        if not lines:
            continue
        if lines[0].strip() == "\b":
            out += [".PP", ".nf", *(roff(line) for line in lines[1:]), ".fi"]
        else:
            out += [".PP", roff(" ".join(line.strip() for line in lines))]
    return out


def manpage(name: str, cmd: click.Command) -> str:
    summary, description = DESCRIPTIONS.get(name, ("", ""))
    if not summary:
        raise KeyError(f"no description of {name}: add one to DESCRIPTIONS in {GENERATOR}")
    ctx = _context(name, cmd)
    out = [f'.\\" Generated by python -m {GENERATOR} from the click definitions: do not edit.',
           f'.TH {name.upper()} 1 "" "{PACKAGE}" "{PACKAGE} commands"',
           ".SH NAME", f"{roff(name)} \\- {roff(summary)}",
           ".SH SYNOPSIS", f".B {roff(name)}",
           " ".join(roff(p) for p in cmd.collect_usage_pieces(ctx))]
    out += _help_roff(cmd)
    out += [".SH DESCRIPTION", roff(description)]
    if name in ACTIONS:
        out += [".PP", "Arguments it takes: " + roff(", ".join(ACTIONS[name])) + "."]
    out.append(".SH OPTIONS")
    for opt in options(name, cmd):
        record = opt.get_help_record(ctx)
        if record is None:  # hidden
            continue
        spelt, text = record
        out += [".TP", "\\fB" + roff(spelt) + "\\fR", roff(text or "")]
    out += [".SH EXIT STATUS",
            "0 when the command succeeded; otherwise the exit code xCAT's command gives "
            "(1 for most errors), after an error message on standard error.",
            ".SH SEE ALSO"]
    family = next((f for f in FAMILIES if name in f), ())
    related = [f"\\fB{roff(n)}\\fR(1)" for n in family if n != name]
    out.append(", ".join(related + ["\\fBxcatd\\fR(1)"] if name != "xcatd" else related)
               or "\\fBxcatd\\fR(1)")
    return "\n".join(out) + "\n"


# ---- bash completion ----------------------------------------------------------------------
def _arg_kinds(name: str, cmd: click.Command) -> list[str]:
    kinds = []
    for p in cmd.params:
        if not isinstance(p, click.Argument):
            continue
        kind = COMMAND_ARG_KINDS.get((name, p.name)) or ARG_KINDS.get(p.name or "", "none")
        if kind == "words" and isinstance(p.type, click.Choice):
            kind = "choice"
        if p.nargs == -1:
            if name in ("mkdef", "chdef", "lsdef", "rmdef"):  # a noderange, then attr=val
                kinds += [kind, "none+"]
                continue
            kind += "+"
        kinds.append(kind)
    return kinds


def _words(name: str, cmd: click.Command) -> tuple[str, ...]:
    for p in cmd.params:
        if isinstance(p, click.Argument) and isinstance(p.type, click.Choice):
            return tuple(str(c) for c in p.type.choices)
    return ACTIONS.get(name, ())


def _bash_words(words: tuple[str, ...] | list[str]) -> str:
    for w in words:
        if not re.fullmatch(r"[A-Za-z0-9_.,=+@%/:-]+", w):
            raise ValueError(f"{w!r} cannot be a completion word")
    return " ".join(words)


def completion_data(cmds: dict[str, click.Command]) -> Iterator[str]:
    """The bash lines that declare what each command completes."""
    yield "declare -gA _pyxcat_opts=() _pyxcat_valopts=() _pyxcat_args=() _pyxcat_words=() " \
          "_pyxcat_optvals=()"
    for name, cmd in cmds.items():
        opts = [o for p in options(name, cmd) for o in spellings(p) if o != "-?"]
        valopts = [o for p in options(name, cmd) if takes_value(p) for o in p.opts]
        yield f"_pyxcat_opts[{name}]='{_bash_words(opts)}'"
        if valopts:
            yield f"_pyxcat_valopts[{name}]='{_bash_words(valopts)}'"
        yield f"_pyxcat_args[{name}]='{_bash_words(_arg_kinds(name, cmd))}'"
        words = _words(name, cmd)
        if words:
            yield f"_pyxcat_words[{name}]='{_bash_words(words)}'"
        for opt in options(name, cmd):
            for spelt in opt.opts:
                values = OPTION_VALUES.get((name, spelt), OPTION_VALUES.get(spelt))
                if values is None and takes_value(opt):
                    if isinstance(opt.type, click.Choice):
                        values = tuple(str(c) for c in opt.type.choices)
                    elif isinstance(opt.type, click.Path):
                        values = "dirs" if not opt.type.file_okay else "files"
                if values is None:
                    continue
                text = values if isinstance(values, str) and values in KINDS \
                    else "=" + _bash_words(values)
                yield f"_pyxcat_optvals[{name} {spelt}]='{text}'"
    yield f"_pyxcat_tables='{_bash_words(sorted(TABLES))}'"
    yield f"_pyxcat_commands='{_bash_words(list(cmds))}'"


#: The hand-written functions of the completion, under share/.
COMPLETION_FUNCTIONS = "bash-completion/pyxcat.bash.in"


def completion_script(cmds: dict[str, click.Command], functions: str) -> str:
    """The whole bash completion library: the data, then the functions."""
    head = ["# pyxcat bash completion: options, actions, node, group and osimage names.",
            f"# Generated by python -m {GENERATOR} from the click definitions and",
            f"# share/{COMPLETION_FUNCTIONS}: do not edit. Source it from ~/.bashrc, or let",
            "# bash-completion load it through the per-command files beside it."]
    return "\n".join(head + list(completion_data(cmds))) + "\n" + functions


def completion_stub(name: str) -> str:
    return ("# pyxcat: bash-completion loads this file for the command of its name.\n"
            'declare -F _pyxcat >/dev/null || . "${BASH_SOURCE[0]%/*}/pyxcat"\n')


# ---- writing ------------------------------------------------------------------------------
def generated(share: Path, cmds: dict[str, click.Command] | None = None) -> dict[str, str]:
    """Every generated file, by path under ``share``."""
    cmds = commands() if cmds is None else cmds
    files = {f"man/man1/{name}.1": manpage(name, cmd) for name, cmd in cmds.items()}
    files["bash-completion/completions/pyxcat"] = completion_script(
        cmds, (share / COMPLETION_FUNCTIONS).read_text())
    for name in cmds:
        files[f"bash-completion/completions/{name}"] = completion_stub(name)
    return files


def write(share: Path) -> list[Path]:
    """Write the generated files under ``share``, removing pages of commands that are gone;
    returns the files that changed."""
    files = generated(share)
    changed = []
    for rel, text in files.items():
        path = share / rel
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    for folder in ("man/man1", "bash-completion/completions"):
        for path in (share / folder).iterdir():
            if f"{folder}/{path.name}" not in files:
                path.unlink()
                changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    share = Path(argv[0] if argv else "share")
    for path in write(share):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
