"""Living beside Postfix: a Debian-made queue keeps Postfix's owners and modes, and neither
server starts while the other runs on the same queue (issue 9, item 6)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from postier.queue import dirs
from tests.integration.conftest import Instance, postier

pytestmark = pytest.mark.integration

POSTFIX = "/usr/sbin/postfix"
DEBIAN_SPOOL = Path("/var/spool/postfix")
MASTER_CF_DIST = Path("/usr/share/postfix/master.cf.dist")

if os.geteuid() != 0 or not os.access(POSTFIX, os.X_OK) or not MASTER_CF_DIST.exists():
    pytest.skip("needs root and Debian's postfix package", allow_module_level=True)


def postfix(config_dir: Path, verb: str) -> subprocess.CompletedProcess[str]:
    """``postfix -c DIR VERB`` on a terminal (Postfix writes its warnings to stderr only
    when stderr is a terminal), so what it says comes back in stdout."""
    return subprocess.run(
        ["script", "-qec", f"{POSTFIX} -c {config_dir} {verb}", "/dev/null"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )


def postfix_config(base: Path, queue_dir: Path) -> Path:
    """A throwaway Postfix configuration on ``queue_dir``: no inet service, no chroot."""
    etc, data = base / "pfetc", base / "pfdata"
    etc.mkdir()
    data.mkdir()
    owner = pwd.getpwnam("postfix")
    os.chown(data, owner.pw_uid, owner.pw_gid)
    (etc / "main.cf").write_text(
        f"queue_directory = {queue_dir}\ndata_directory = {data}\n"
        f"maillog_file = {base}/pfmaillog\nmaillog_file_prefixes = {base}\n"
        "compatibility_level = 3.6\ninet_interfaces = loopback-only\nmydestination =\n"
        "alias_maps =\nalias_database =\n"
    )
    lines = []
    for line in MASTER_CF_DIST.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 8 and not line[0].isspace() and not line.startswith("#"):
            if fields[1] == "inet":
                line = "#" + line
            else:
                fields[4] = "n"
                line = " ".join(fields)
        lines.append(line)
    lines.append("postlog unix-dgram n - n - 1 postlogd")
    (etc / "master.cf").write_text("\n".join(lines) + "\n")
    return etc


def layout(queue_dir: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for name in dirs.PERMS:
        if not (queue_dir / name).exists():  # Debian's has no hold/ until Postfix needs it
            continue
        st = os.stat(queue_dir / name)
        out[name] = (st.st_uid, st.st_gid, st.st_mode & 0o7777)
    return out


@pytest.fixture
def debian_queue(make_instance: Callable[..., Instance]) -> Iterator[tuple[Instance, Path]]:
    if not (DEBIAN_SPOOL / "public").is_dir():
        pytest.skip("no Debian-created /var/spool/postfix")
    inst = make_instance("")
    shutil.rmtree(inst.queue_dir)
    subprocess.run(["cp", "-a", str(DEBIAN_SPOOL), str(inst.queue_dir)], check=True)
    for sub in ("pid/master.pid",):
        (inst.queue_dir / sub).unlink(missing_ok=True)
    pf = postfix_config(inst.base, inst.queue_dir)
    yield inst, pf
    if (inst.queue_dir / "pid" / "master.pid").exists():
        postfix(pf, "stop")


def test_start_and_stop_on_a_debian_queue_keep_postfix_check_clean(
        debian_queue: tuple[Instance, Path]) -> None:
    inst, pf = debian_queue
    before = layout(inst.queue_dir)
    assert before["public"][2] == 0o2710 and before["maildrop"][2] == 0o1730
    started = inst.start()
    assert started.returncode == 0, started.stderr
    inst.stop()
    after = layout(inst.queue_dir)
    assert {name: after[name] for name in before} == before
    owner = pwd.getpwnam("postfix").pw_uid
    assert all(after[name][0] == owner and after[name][2] == 0o700 for name in after
               if name not in before)  # made as Postfix makes them
    check = postfix(pf, "check")
    assert check.returncode == 0, check.stdout
    assert check.stdout.strip() == ""


def test_set_permissions_repairs_a_loosened_queue(debian_queue: tuple[Instance, Path]) -> None:
    inst, pf = debian_queue
    before = layout(inst.queue_dir)
    os.chmod(inst.queue_dir / "public", 0o755)
    os.chown(inst.queue_dir / "public", -1, pwd.getpwnam("postfix").pw_gid)
    done = postier("-c", str(inst.config_dir), "set-permissions", check=False)
    assert done.returncode == 0, done.stderr
    assert re.search(r"public: mode 0755 -> 2710", done.stderr)
    after = layout(inst.queue_dir)
    assert {name: after[name] for name in before} == before
    check = postfix(pf, "check")
    assert check.stdout.strip() == "" and check.returncode == 0


def test_neither_starts_while_the_other_runs(debian_queue: tuple[Instance, Path]) -> None:
    inst, pf = debian_queue
    pf_started = postfix(pf, "start")
    assert pf_started.returncode == 0, pf_started.stdout
    try:
        refused = inst.start()
        assert refused.returncode == 1
        assert "running" in refused.stderr, refused.stderr
        assert not inst.pids()
        fg = postier("-c", str(inst.config_dir), "start-fg", check=False, timeout=30)
        assert fg.returncode == 1
        assert "a Postfix master" in fg.stderr, fg.stderr
        assert postier(
            "-c", str(inst.config_dir), "set-permissions", check=False).returncode == 1
    finally:
        assert postfix(pf, "stop").returncode == 0
    started = inst.start()
    assert started.returncode == 0, started.stderr
    try:
        reverse = postfix(pf, "start")
        assert reverse.returncode != 0
        assert "already running" in reverse.stdout, reverse.stdout
    finally:
        inst.stop()
