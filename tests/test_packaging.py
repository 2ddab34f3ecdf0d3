"""The package as installed: every command handler is reachable through its entry point,
every console script has its module, and the hardware drivers are registered."""
from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points

from xcatd import handler


def test_every_handler_has_an_entry_point_and_every_entry_point_a_handler():
    named = {ep.name: ep.value for ep in entry_points(group=handler.COMMAND_GROUP)}
    registered = {name: spec.handler.__module__ for name, spec in handler.registry().items()}
    assert named == registered


def test_a_command_loads_only_its_own_plugin():
    """A command run in process imports its handler's module, not every plugin's."""
    code = ("import sys; from xcatd import handler; handler.spec('nodels'); "
            "print(sorted(m for m in sys.modules if m.startswith('xcatd.plugins.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['xcatd.plugins.nodes']"


def test_every_console_script_has_its_main():
    for ep in entry_points(group="console_scripts"):
        if ep.value.startswith("xcatd.commands."):
            module, _, attr = ep.value.partition(":")
            assert callable(getattr(importlib.import_module(module), attr)), ep.name


def test_unknown_commands_are_none():
    assert handler.spec("no-such-command") is None


def test_the_examples_in_the_mapped_packages_docstrings_hold():
    """tables/ and plugins/ live outside xcatd/ in the repository, so pytest's doctest
    collection (testpaths) would import them under other names: run their examples here."""
    import doctest
    import pkgutil

    import xcatd.plugins
    import xcatd.tables
    modules = [xcatd.tables] + [importlib.import_module(f"xcatd.plugins.{m.name}")
                                for m in pkgutil.iter_modules(xcatd.plugins.__path__)]
    results = [doctest.testmod(m) for m in modules]
    assert sum(r.attempted for r in results) > 0
    assert [r.failed for r in results] == [0] * len(results)


def test_every_built_in_command_declares_its_arguments():
    """Arguments are checked before a handler runs (a wrong type is an error naming it):
    only third-party commands may leave them undeclared."""
    undeclared = sorted(name for name, spec in handler.registry().items()
                        if spec.handler.__module__.startswith("xcatd.plugins.")
                        and spec.args is None)
    assert undeclared == []
