#!/usr/bin/env bash
# The pyxcat demo: a management node under a scratch XCATROOT on SQLite, a small cluster
# defined the way an xCAT admin would, and the commands that read it back.
set -euo pipefail
: "${XCATROOT:?set XCATROOT to a scratch directory}"
export XCATROOT XCATBYPASS=1
rm -rf "$XCATROOT"
mkdir -p "$XCATROOT"

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

run xcatconfig
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
printf '\nDemo complete: the management node lives under %s\n' "$XCATROOT"
