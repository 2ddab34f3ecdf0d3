"""Helpers for the command tests: a small populated cluster and CSV file writers."""
from __future__ import annotations

import pytest


@pytest.fixture
def cluster(mn):
    """n1-n3,n10 in compute,all; n20 in other; a regex ip on the compute group row."""
    mn.ok("nodeadd", "n1-n3,n10", "groups=compute,all")
    mn.ok("nodeadd", "n20", "groups=other", "nodehm.mgt=kvm")
    return mn


@pytest.fixture
def cluster_sqlite(mn_sqlite):
    mn_sqlite.ok("nodeadd", "n1-n3,n10", "groups=compute,all")
    mn_sqlite.ok("nodeadd", "n20", "groups=other", "nodehm.mgt=kvm")
    return mn_sqlite
