"""The parallel shell's pieces that need no node: the command as sent, line splitting, the
one-line reasons, -o and -E parsing, where xdcp puts files. The behaviour against real
sshd nodes is tests/remote/test_xdsh_lab.py's."""
import errno
import subprocess

import pytest

from xcatd.remote import engine, files, nodes
from xcatd.remote.engine import Target, asyncssh
from xcatd.remote.envfile import env_file


def test_the_sent_command_names_its_process_group_first_and_quotes_the_environment():
    sent = engine.wrap("echo $A", {"A": "it's $HOME; rm -rf /"})
    p = subprocess.run(["sh", "-c", sent], capture_output=True, text=True, check=True)
    assert p.stdout == "it's $HOME; rm -rf /\n"
    mark, pgid = p.stderr.rstrip("\n").rsplit(" ", 1)
    assert mark == engine.MARK and pgid.isdigit()


def test_lines_are_split_whole_and_a_runaway_line_is_cut():
    lines, rest = engine.split_lines(b"a\r\nb\n\xff\xfe\nhalf", b"")
    assert lines == ["a", "b", "\ufffd\ufffd"] and rest == b"half"
    lines, rest = engine.split_lines(b"-line\n", rest)
    assert lines == ["half-line"] and rest == b""
    lines, rest = engine.split_lines(b"x" * (engine.MAX_LINE + 10), b"")
    assert lines == ["x" * engine.MAX_LINE] and rest == b""


@pytest.mark.parametrize("exc,words", [
    (TimeoutError(), "timed out"),
    (ConnectionRefusedError(errno.ECONNREFUSED, ""), "connection refused"),
    (OSError(errno.EHOSTUNREACH, "Connect call failed"), "no route to host"),
    (asyncssh.HostKeyNotVerifiable("Host key is not trusted"), "makeknownhosts n7"),
    (asyncssh.PermissionDenied("denied"), "xdsh -K"),
    (OSError(), "OSError"),
])
def test_every_failure_is_one_line_that_says_why(exc, words):
    text = engine.describe(exc, Target("n7", "10.0.0.7"))
    assert words in text and "\n" not in text and "10.0.0.7" in text


def test_a_password_never_shows_in_the_settings():
    assert "s3cret" not in repr(engine.Settings(password="s3cret"))


def test_o_takes_only_what_it_knows_and_names_what_it_does_not():
    assert nodes.parse_options(["-o StrictHostKeyChecking=no Port=2222"]) == \
        {"StrictHostKeyChecking": "no", "Port": "2222"}
    with pytest.raises(ValueError, match="ProxyCommand"):
        nodes.parse_options(["ProxyCommand=nc %h %p"])
    with pytest.raises(ValueError, match="Port=x"):
        nodes.parse_options(["Port=x"])


def test_E_reads_assignments_and_names_the_bad_line():
    assert env_file("# c\nexport A=1\nB='two words'\n\n") == {"A": "1", "B": "two words"}
    with pytest.raises(ValueError, match="line 2"):
        env_file("A=1\nnot an assignment\n", "env")


def test_xdcp_places_files_as_cp_does(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f").write_text("x")
    (tmp_path / "g").write_text("y")
    tree = files.local_tree(str(tmp_path / "d"), recursive=True)
    assert [f.rel for f in tree] == ["d/", "d/sub/", "d/sub/f"]
    pairs = [(f.path, f.rel) for f in tree]
    assert files.plan_push(pairs, "/opt", dst_is_dir=True)[-1][1] == "/opt/d/sub/f"
    assert files.plan_push(pairs, "/opt/new", dst_is_dir=False)[-1][1] == "/opt/new/sub/f"
    two = pairs + [(str(tmp_path / "g"), "g")]
    assert files.plan_push(two, "/opt/x", dst_is_dir=False)[-1][1] == "/opt/x/g"
    with pytest.raises(ValueError, match="-R"):
        files.local_tree(str(tmp_path / "d"), recursive=False)
    with pytest.raises(ValueError, match="No such file"):
        files.local_tree(str(tmp_path / "missing"), recursive=False)


def test_sudo_gets_the_environment_as_arguments_since_it_resets_its_own():
    sent = engine.wrap("echo $NODE $A", {"NODE": "n1", "A": "x y"}, sudo=True)
    assert "exec sudo -n env NODE=n1 'A=x y' sh -c 'echo $NODE $A'" in sent


def test_the_process_group_is_found_after_a_login_shell_s_own_noise():
    import asyncio

    async def feed():
        got = []
        session = engine._Session("n1", got.append)
        session.data_received(b"stty: not a tty\n" + engine.MARK.encode() + b" 4242\nout\n",
                              asyncssh.EXTENDED_DATA_STDERR)
        return session.pgid, [e.text for e in got]

    pgid, lines = asyncio.run(feed())
    assert pgid == 4242 and lines == ["stty: not a tty", "out"]


def test_two_sources_of_one_name_are_refused_not_overwritten():
    with pytest.raises(ValueError, match="two sources are named f"):
        files.plan_push([("/a/f", "f"), ("/b/f", "f")], "/dst", dst_is_dir=True)


def test_ssh_logs_in_with_the_root_key_the_nodes_were_given(tmp_path):
    from xcatd.base.paths import Paths
    from xcatd.security import nodekeys
    paths = Paths(tmp_path)
    made = nodekeys.root_private_key(paths)              # none yet: an ed25519 pair is made
    assert made.name == "id_ed25519" and made.with_suffix(".pub").is_file()
    made.unlink()                                        # an admin's own RSA pair only
    made.with_suffix(".pub").unlink()
    ssh = paths.under("/root/.ssh")
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-N", "", "-f", str(ssh / "id_rsa")],
                   check=True)
    assert nodekeys.root_private_key(paths) == ssh / "id_rsa"
    assert nodes.root_key(paths).get_algorithm() == "ssh-rsa"
