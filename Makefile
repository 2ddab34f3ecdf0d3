# pyxcat: `make demo` shows the toolkit working; `make test` installs what the tests need and
# runs them. Both work on a fresh Debian 12 machine as root.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# Debian packages the tests start for real: PostgreSQL, ISC dhcpd, Kea and a real DHCP client,
# BIND, OpenIPMI's ipmi_sim with ipmitool, and the provisioning lab: QEMU with iPXE, tftpd-hpa,
# radvd, busybox-static and cpio for the test initrd, xorriso for the test install media;
# OpenSSH's sshd for the parallel-shell nodes and pdsh as a benchmark peer.
TEST_DEBS = postgresql iproute2 isc-dhcp-server isc-dhcp-client kea-dhcp4-server bind9 bind9-utils \
            openipmi ipmitool qemu-system-x86 ipxe-qemu tftpd-hpa radvd busybox-static cpio xorriso \
            ipxe pxelinux syslinux-common grub-efi-amd64-signed shim-signed ovmf \
            mmdebstrap squashfs-tools zstd pigz rpm createrepo-c dnf fping \
            nfs-ganesha nfs-ganesha-vfs openssh-server pdsh
DEMO_ROOT ?= /tmp/pyxcat-demo

.PHONY: all demo test test-all debs debs-python venv lab-assets bench lint imports golden clean

all: test

$(BIN)/python:
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || $(MAKE) --no-print-directory debs-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

debs-python:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip; \
	else echo "python3-venv is missing: install it as root" >&2; exit 1; fi

venv: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'

# The test services start only under the tests (policy-rc.d 101: no package starts its
# service, so no sshd, dhcpd or named listens on the host).
debs:
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    rcd=; if [ ! -e /usr/sbin/policy-rc.d ]; then rcd=/usr/sbin/policy-rc.d; \
	      printf '#!/bin/sh\nexit 101\n' > $$rcd; chmod 755 $$rcd; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	    st=$$?; [ -z "$$rcd" ] || rm -f $$rcd; [ $$st = 0 ] || exit $$st; \
	  else echo "not root: cannot install $$missing (tests that need them will skip)" >&2; fi; \
	fi

# Four pytest runs side by side, so make test keeps both cores busy (the suite mostly waits on
# the services and daemons it starts): the diskless VM tests (mostly QEMU's emulated CPU),
# the command-line part (TESTS_A), the network-facing part (TESTS_B) and the rest; the
# others' output follows the rest's.
VMTESTS = tests/provision/test_diskless_lab.py
TESTS_A = tests/base tests/commands tests/daemon tests/db tests/test_descriptions.py \
	tests/test_packaging.py
TESTS_B = tests/fronts tests/hardware tests/lab tests/netboot tests/netconf tests/remote \
	tests/transfer/test_transfer_lab.py tests/servicenodes
test: debs venv lab-assets imports
	@mkdir -p .cache; \
	$(BIN)/pytest -q -m "not lab" -p no:cacheprovider $(VMTESTS) > .cache/vmtests.log 2>&1 & \
	vm=$$!; \
	$(BIN)/pytest -q -m "not lab" -p no:cacheprovider $(TESTS_A) > .cache/tests-a.log 2>&1 & \
	a=$$!; \
	$(BIN)/pytest -q -m "not lab" -p no:cacheprovider $(TESTS_B) > .cache/tests-b.log 2>&1 & \
	b=$$!; \
	$(BIN)/pytest -q -m "not lab" --deselect $(VMTESTS) \
	  $(addprefix --ignore=,$(TESTS_A) $(TESTS_B)) tests xcatd; \
	rest=$$?; \
	wait $$a; arc=$$?; \
	echo "---- $(TESTS_A), run beside the rest (exit $$arc) ----"; cat .cache/tests-a.log; \
	wait $$b; brc=$$?; \
	echo "---- $(TESTS_B), run beside the rest (exit $$brc) ----"; cat .cache/tests-b.log; \
	wait $$vm; vmrc=$$?; \
	echo "---- $(VMTESTS), run beside the rest (exit $$vmrc) ----"; cat .cache/vmtests.log; \
	test $$rest -eq 0 && test $$arc -eq 0 && test $$brc -eq 0 && test $$vmrc -eq 0

test-all: debs venv lab-assets imports
	$(BIN)/pytest -q

# The import contracts of pyproject.toml (layers, no cycles, no core->plugins, no lab in the
# product), checked on a regular (non-editable) install of the package, as it ships.
IMPORTCHECK = .cache/importcheck
imports: venv
	rm -rf $(IMPORTCHECK) && $(BIN)/pip install -q --no-deps --target $(IMPORTCHECK) . 2>/dev/null
	cd $(IMPORTCHECK) && PYTHONPATH=. $(CURDIR)/$(BIN)/lint-imports $(CURDIR)/pyproject.toml

# Rewrite the golden files of generated output after a deliberate change; review the diff.
golden: venv
	PYXCAT_UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/netconf/test_golden.py \
	  tests/provision/test_golden.py tests/netboot/test_golden.py

demo: debs venv lab-assets
	XCATROOT=$(DEMO_ROOT) PATH=$(CURDIR)/$(BIN):$$PATH bash share/demo/demo.sh

# The VM lab's kernel and initrd modules (Debian's linux-image-amd64) in .cache/lab; skips
# the download when they are there. Needs only the system Python, apt-get and dpkg.
lab-assets:
	$(PYTHON) xcatd/lab/assets.py

bench: venv
	$(BIN)/python bench/noderange.py
	$(BIN)/python bench/completion.py
	$(BIN)/python bench/db.py
	$(BIN)/python bench/daemon.py
	$(BIN)/python bench/netservices.py
	$(BIN)/python bench/power.py
	$(BIN)/python bench/servicenodes.py
	$(BIN)/python bench/nodeset.py
	$(BIN)/python bench/postscripts.py
	$(BIN)/python bench/idle.py
	$(BIN)/python bench/bounds.py
	$(BIN)/python bench/packimage.py
	$(BIN)/python bench/genimage.py
	$(BIN)/python bench/bootstorm.py
	$(BIN)/python bench/nodestat.py
	$(BIN)/python bench/nodeagent.py
	$(BIN)/python bench/agentscripts.py
	$(BIN)/python bench/xdsh.py
	$(BIN)/python bench/transfer.py
	$(BIN)/python bench/completion.py

lint: venv
	$(BIN)/pip install -q ruff
	$(BIN)/ruff check xcatd commands plugins tables tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache $(DEMO_ROOT)
