#!/usr/bin/env bash
# The pyxcat demo: a management node under a scratch XCATROOT on SQLite, xcatd serving it,
# a small cluster defined the way an xCAT admin would, and the commands that read it back.
set -euo pipefail
: "${XCATROOT:?set XCATROOT to a scratch directory}"
export XCATROOT
unset XCATBYPASS XCATHOST
# The demo's client certificates live in a scratch HOME, not in the real ~/.xcat.
export HOME="$XCATROOT/home"
rm -rf "$XCATROOT"
mkdir -p "$XCATROOT" "$HOME"
PORT=${DEMO_PORT:-13001}

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }
XCATD_PID=
stop_xcatd() { [ -n "$XCATD_PID" ] && kill "$XCATD_PID" 2>/dev/null && wait "$XCATD_PID" 2>/dev/null; true; }
trap stop_xcatd EXIT

run xcatconfig
# The HTTP site (install and boot trees, node callbacks) on loopback for the demo.
XCATBYPASS=1 chtab key=httpport site.value="${DEMO_HTTPPORT:-13003}"
XCATBYPASS=1 chtab key=httpbind site.value=127.0.0.1
say "xcatd --listen 127.0.0.1 --port $PORT &    (HTTPS with client certificates, and a unix socket for root)"
setsid xcatd --listen 127.0.0.1 --port "$PORT" 2>"$XCATROOT/xcatd.log" &
XCATD_PID=$!
for _ in $(seq 50); do grep -q "ready on" "$XCATROOT/xcatd.log" 2>/dev/null && break; sleep 0.1; done
cat "$XCATROOT/xcatd.log"

# Two racks of compute nodes and two service nodes.
run nodeadd 'rack[1-2]n[01-08]' groups=compute,all nodehm.mgt=ipmi nodetype.arch=x86_64
run nodeadd 'sn[1-2]' groups=service,all nodehm.mgt=ipmi
run nodech 'rack1n[01-08]' groups,=rack1
run nodech 'rack2n[01-08]' groups,=rack2
# One regex per group gives every node its own addresses.
run chtab node=compute 'hosts.ip=|rack(\d+)n(\d+)|10.0.($1+0).($2+10)|' \
    'ipmi.bmc=|rack(\d+)n(\d+)|10.1.($1+0).($2+10)|' ipmi.username=ADMIN ipmi.password=s3cret
run chtab node=service 'hosts.ip=|sn(\d+)|10.0.0.($1+0)|'
run mkdef -t network -o mgtnet net=10.0.0.0 mask=255.255.0.0 gateway=10.0.0.254 mgtifname=eth0
run mkdef -t osimage -o rocky9-x86_64-install-compute imagetype=linux provmethod=install \
    osname=Linux osvers=rocky9.4 osarch=x86_64 profile=compute
run mkdef -t group -o ipminodes -d -w mgt==ipmi -w arch==x86_64

run nodels
run nodels 'rack1,-rack1n0[5-8]' hosts.ip ipmi.bmc
run nodels -b rack2n03 hosts.ip nodehm.mgt
run nodels ipminodes@rack2 groups
run lsdef rack1n01
run lsdef -t group -o ipminodes
run lsdef -t osimage -l
run tabdump ipmi
run gettab node=compute ipmi.username
run lsdef -t network -z
say "nodels n99   (a node that does not exist: error, exit 1)"
if nodels n99; then echo "unexpected success" >&2; exit 1; else echo "exit code $?"; fi
run dumpxCATdb -p "$XCATROOT"
ls -l "$XCATROOT"/ipmi.csv

# Jobs: every request is one, and an --async one can be read after its client has gone.
say "nodels --async compute groups      (prints the job id and returns)"
JOB=$(nodels --async compute groups)
echo "$JOB"
run job wait "$JOB"
run job list

# A second user: a client certificate, then the policy table decides.
run xcatclientcert -d "$XCATROOT/bob/.xcat" bob
say "HOME=$XCATROOT/bob XCATHOST=127.0.0.1:$PORT nodels    (bob has no policy rights yet)"
if HOME="$XCATROOT/bob" XCATHOST="127.0.0.1:$PORT" nodels; then
  echo "unexpected success" >&2; exit 1; else echo "exit code $?"; fi
run chtab priority=5 policy.name=bob policy.commands=nodels,lsdef policy.rule=allow
say "HOME=$XCATROOT/bob XCATHOST=127.0.0.1:$PORT nodels 'rack1n0[1-3]'"
HOME="$XCATROOT/bob" XCATHOST="127.0.0.1:$PORT" nodels 'rack1n0[1-3]'
run tabdump -w status==Denied auditlog

# The REST API: the same dispatch, policy, audit and locks.
say "GET https://127.0.0.1:$PORT/xcatws/nodes/rack2n01   (REST, with root's client certificate)"
python3 - "$PORT" <<'PY'
import http.client, json, os, ssl, sys
home = os.environ["HOME"]
ctx = ssl.create_default_context(cafile=f"{home}/.xcat/ca.pem")
ctx.load_cert_chain(f"{home}/.xcat/client-cred.pem")
conn = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx)
conn.request("GET", "/xcatws/nodes/rack2n01")
print(json.dumps(json.loads(conn.getresponse().read()), indent=2))
PY
# Network services: /etc/hosts, DHCP and DNS from the same tables, each file checked by its
# own program before it replaces the live one.
run chtab key=domain site.value=cluster.example
run chtab key=master site.value=10.0.0.1
run nodech compute 'mac.mac=|rack(\d+)n(\d+)|52:54:00:00:0($1):($2+10)|'
run makehosts
head -4 "$XCATROOT/etc/hosts"
run makedhcp -n
sed -n '/^host rack1n01 /,/^}/p' "$XCATROOT/etc/dhcp/dhcpd.conf"
DNSPORT=$((PORT + 1))
run chtab key=dnsport site.value=$DNSPORT
run chtab key=dnslisten site.value=127.0.0.1
run makedns -n
say "named -g -c \$XCATROOT/etc/named.conf   (BIND on 127.0.0.1:$DNSPORT)"
setsid named -g -u root -c "$XCATROOT/etc/named.conf" >"$XCATROOT/named.log" 2>&1 &
NAMED_PID=$!
trap 'kill $NAMED_PID 2>/dev/null; stop_xcatd' EXIT
python3 - "$DNSPORT" <<'PY'
import sys, time
import dns.resolver
r = dns.resolver.Resolver(configure=False); r.nameservers = ["127.0.0.1"]; r.port = int(sys.argv[1])
for _ in range(50):
    try:
        print("rack2n05.cluster.example ->", r.resolve("rack2n05.cluster.example", "A")[0],
              "   10.0.2.15 ->", r.resolve_address("10.0.2.15")[0]); break
    except Exception:
        time.sleep(0.1)
PY
run nodeadd rack3n01 groups=compute,all nodehm.mgt=ipmi hosts.ip=10.0.3.11
run makedns rack3n01
python3 - "$DNSPORT" <<'PY'
import sys
import dns.resolver
r = dns.resolver.Resolver(configure=False); r.nameservers = ["127.0.0.1"]; r.port = int(sys.argv[1])
print("rack3n01.cluster.example ->", r.resolve("rack3n01.cluster.example", "A")[0],
      "(added by an RFC 2136 update signed with TSIG, no restart)")
PY

# Hardware control: a fleet of simulated BMCs on loopback (pyghmi's BMC server class), one per
# compute node, one of them dead, reached through xcatd's IPMI engine.
# a block of free UDP ports, chosen by the kernel (xcatd.lab.ports)
BMCBASE=${DEMO_BMCPORT:-$(python3 -c 'import socket; from xcatd.lab.ports import free_port_block
print(free_port_block(81, socket.SOCK_DGRAM))')}
say "a simulated BMC per compute node on 127.0.0.1:$BMCBASE.. (rack1n08's BMC never answers)"
python3 - "$BMCBASE" <<'PY' &
import signal, sys, time
from xcatd.lab.bmcfleet import Fleet
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # so the fleet's shards stop too
with Fleet(int(sys.argv[1]), 80, dead=[28]):   # rack1n08 -> port +28
    print("BMC fleet up", flush=True)
    time.sleep(3600)
PY
FLEET_PID=$!
trap 'kill $NAMED_PID $FLEET_PID 2>/dev/null; stop_xcatd' EXIT
sleep 3
run chtab node=compute 'ipmi.bmc=127.0.0.1' "ipmi.bmcport=|rack(\d+)n(\d+)|($BMCBASE+\$1*20+\$2)|" \
  ipmi.username=admin ipmi.password=secret
run chtab key=ipmitimeout site.value=1
run chtab key=ipmiretries site.value=1
run rpower compute stat || true
run rpower 'rack2n0[1-4]' on
run rpower compute stat || true
run rsetboot rack2n01 net
run rsetboot rack2n01 stat

# Provisioning: install media, osimages, nodeset and the boot files it writes.
say "build a small Rocky 9.4 DVD image (xorriso around a fake tree: the tests boot a real kernel from one)"
python3 - "$XCATROOT/media" <<'PY'
import sys
from pathlib import Path
from xcatd.lab.fakemedia import build_iso, build_tree
work = Path(sys.argv[1])
tree = build_tree(work / "tree", "rocky9.4", "x86_64")
print(build_iso(tree, work / "Rocky-9.4-x86_64-dvd.iso", "Rocky-9-4-x86_64-dvd"))
PY
run copycds "$XCATROOT/media/Rocky-9.4-x86_64-dvd.iso"
run lsdef -t osimage
run chtab key=system passwd.username=root passwd.password=cluster
run chtab key=dhcpsetup site.value=n   # no dhcpd runs in the demo: nodeset leaves DHCP alone
run nodeset 'rack1n0[1-4]' osimage=rocky9.4-x86_64-install-compute
run nodeset rack1n04 boot
run nodeset 'rack1n0[1-4]' stat
say "cat tftpboot/xcat/xnba/nodes/rack1n01   (the node's one-time callback token masked here)"
sed 's/xcattoken=[^ ]*/xcattoken=********/' "$XCATROOT/tftpboot/xcat/xnba/nodes/rack1n01"
say "head install/autoinst/rack1n01   (the kickstart nodeset rendered; root password crypted)"
head -n 12 "$XCATROOT/install/autoinst/rack1n01" | sed 's/\$6\$[^ ]*/<SHA-512 crypt, masked here>/'
say "curl -r 0-99 http://127.0.0.1:${DEMO_HTTPPORT:-13003}/install/rocky9.4/x86_64/.treeinfo   (range request)"
python3 - "${DEMO_HTTPPORT:-13003}" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", "/install/rocky9.4/x86_64/.treeinfo", headers={"Range": "bytes=0-99"})
r = c.getresponse()
print(r.status, r.reason, r.getheader("Content-Range"))
print(r.read().decode())
PY
# Moving the management node: everything of this one into an archive, imported into a second
# management node under another root (a fresh xcatconfig), which then powers the same BMCs.
printf 'demo passphrase\n' > "$XCATROOT/passphrase"; chmod 600 "$XCATROOT/passphrase"
run xcatexport -f "$XCATROOT/mn.tar.zst" --passphrase-file "$XCATROOT/passphrase" --with-media
MASTER=$(XCATBYPASS=1 gettab key=master site.value)
MN2="$XCATROOT/mn2"
mkdir -p "$MN2/home"
say "XCATROOT=$MN2 xcatconfig"
XCATROOT="$MN2" HOME="$MN2/home" xcatconfig | tail -n 1
say "XCATROOT=$MN2 xcatimport -f mn.tar.zst --passphrase-file passphrase --remap $MASTER=127.0.0.2 --dry-run | head"
XCATROOT="$MN2" HOME="$MN2/home" xcatimport -f "$XCATROOT/mn.tar.zst" \
  --passphrase-file "$XCATROOT/passphrase" --remap "$MASTER=127.0.0.2" --dry-run \
  > "$XCATROOT/dry-run.txt" 2>&1
head -n 8 "$XCATROOT/dry-run.txt"
say "XCATROOT=$MN2 xcatimport -f mn.tar.zst --passphrase-file passphrase --remap $MASTER=127.0.0.2"
XCATROOT="$MN2" HOME="$MN2/home" xcatimport -f "$XCATROOT/mn.tar.zst" \
  --passphrase-file "$XCATROOT/passphrase" --remap "$MASTER=127.0.0.2" > "$XCATROOT/import.txt" 2>&1
cut -c1-160 "$XCATROOT/import.txt"
say "XCATROOT=$MN2 XCATBYPASS=1 rpower 'rack2n0[1-4]' stat   (the second management node, same BMCs)"
XCATROOT="$MN2" HOME="$MN2/home" XCATBYPASS=1 rpower 'rack2n0[1-4]' stat || true
python3 "$(dirname "$0")/pxeboot.py"   # a VM PXE-boots; skips (exit 0) where the lab cannot run
python3 "$(dirname "$0")/xdsh.py"      # xdsh/xdcp on real sshd nodes; skips where it cannot run
python3 "$(dirname "$0")/servicenodes.py"  # rpower through two service nodes; kill one; --retry

printf '\nDemo complete: the management node lives under %s (xcatd log: %s/xcatd.log)\n' \
  "$XCATROOT" "$XCATROOT"
