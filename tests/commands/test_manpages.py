"""Every command has a man page, generated from its click definition and installed by the
package; the pages and the completion script in share/ are what the generator writes."""
from __future__ import annotations

import configparser
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from xcatd.commands import _docgen

REPO = Path(__file__).resolve().parents[2]
SHARE = REPO / "share"
COMMANDS = _docgen.commands()
REGENERATE = ".venv/bin/python -m xcatd.commands._docgen share"


def page(name: str) -> str:
    path = SHARE / "man/man1" / f"{name}.1"
    assert path.is_file(), f"no man page for {name}: run {REGENERATE}"
    return path.read_text()


def sections(text: str) -> list[str]:
    return re.findall(r"^\.SH (.+)$", text, re.M)


def plain(text: str) -> str:
    """The page's words without roff's escapes."""
    return text.replace("\\-", "-").replace("\\e", "\\").replace("\\fB", "").replace("\\fR", "")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_page_with_xcats_sections(name):
    text = page(name)
    assert sections(text)[:4] == ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS"]
    assert re.search(rf"^\.TH {re.escape(name.upper())} 1 ", text, re.M)
    summary = _docgen.DESCRIPTIONS[name][0]
    assert f"{name} - {summary}" in plain(text)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_page_lists_each_option_of_its_command(name):
    options = plain(page(name).split(".SH OPTIONS", 1)[1].split(".SH ", 1)[0])
    spelt = [o for opt in _docgen.options(name, COMMANDS[name]) if not opt.hidden
             for o in _docgen.spellings(opt)]
    assert "--help" in spelt and "--version" in spelt
    missing = [o for o in spelt if not re.search(rf"(^|[\s,]){re.escape(o)}([\s,=]|$)",
                                                 options, re.M)]
    assert missing == [], f"{name}.1 lacks {missing}: run {REGENERATE}"


def test_every_command_has_a_hand_written_description():
    assert sorted(set(COMMANDS) - set(_docgen.DESCRIPTIONS)) == []
    assert all(len(text) > 40 for _, text in _docgen.DESCRIPTIONS.values())


def test_share_holds_exactly_what_the_generator_writes():
    """The pages and completion follow the commands' options: a change to a command's
    click definition needs the generator run again (and its diff reviewed)."""
    files = _docgen.generated(SHARE)
    stale = sorted(rel for rel, text in files.items()
                   if not (SHARE / rel).is_file() or (SHARE / rel).read_text() != text)
    extra = sorted(str(p.relative_to(SHARE))
                   for folder in ("man/man1", "bash-completion/completions")
                   for p in (SHARE / folder).iterdir()
                   if str(p.relative_to(SHARE)) not in files)
    if os.environ.get("PYXCAT_UPDATE_GOLDEN") == "1":
        _docgen.write(SHARE)
        return
    assert (stale, extra) == ([], []), f"share/ is out of date: run {REGENERATE}"


def test_the_generator_writes_and_prunes(tmp_path):
    share = tmp_path / "share"
    (share / "bash-completion").mkdir(parents=True)
    (share / _docgen.COMPLETION_FUNCTIONS).write_text("# functions\n")
    (share / "man/man1").mkdir(parents=True)
    (share / "man/man1/gone.1").write_text("old\n")
    changed = _docgen.write(share)
    assert share / "man/man1/gone.1" in changed
    assert not (share / "man/man1/gone.1").exists()
    assert (share / "man/man1/rpower.1").read_text() == page("rpower")
    assert _docgen.write(share) == []  # nothing left to change


def test_setup_cfg_installs_every_page_and_completion_file():
    """pip install . copies data_files under <prefix>/share: the globs must match every
    generated file (editable installs do not copy data files: source them from share/)."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    installed = {}
    for target, patterns in cfg["options.data_files"].items():
        for pattern in patterns.split():
            for f in glob.glob(str(REPO / pattern)):
                installed[Path(f).relative_to(REPO)] = target
    for rel in _docgen.generated(SHARE):
        src = Path("share") / rel
        assert installed.get(src) == str(src.parent), f"{src} is not installed"


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
@pytest.mark.parametrize("name", ["rpower", "lsdef", "copycds", "lsxcatd"])
def test_man_renders_the_page_without_warnings(name):
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-P", "cat", "-l",
                        str(SHARE / "man/man1" / f"{name}.1")], capture_output=True, text=True,
                       env={**os.environ, "MANWIDTH": "80"})
    assert r.returncode == 0
    assert r.stderr == ""
    assert "SYNOPSIS" in r.stdout and "OPTIONS" in r.stdout


def test_roff_escapes_what_roff_would_read():
    assert _docgen.roff("a-b \\D+") == "a\\-b \\eD+"
    assert _docgen.roff(".dot\n'quote") == "\\&.dot\n\\&'quote"
