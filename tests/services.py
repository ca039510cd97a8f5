"""Real servers for the cluster tests, from Debian's packages: a single-node SLURM (slurmctld,
slurmd, munge) and OpenSSH's server on loopback. Packages are installed where missing (as
root, with apt-get); SLURM is started once for the whole test session, by whichever test needs
it first, and stopped when the session ends (conftest.py); the SSH server lives for one test.
Left behind: the packages, the marked /etc/slurm/slurm.conf and SLURM's state under
/var/tmp/dfkd-test-slurm. Two test sessions at once share the cluster, and the first to end
stops it."""

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SLURM_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
SSH_PACKAGES = ("openssh-server", "openssh-client")
# pdfLaTeX with booktabs, and pdftoppm: the report tests typeset every LaTeX table.
LATEX_PACKAGES = ("texlive-latex-base", "texlive-latex-recommended", "poppler-utils")

# slurmd and the srun inside each job read this path, whatever SLURM_CONF says.
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# A single-node SLURM for dfkd's tests (tests/services.py); safe to delete."
SLURM_STATE = Path("/var/tmp/dfkd-test-slurm")
STARTED = SLURM_STATE / "started-by-the-tests"
PARTITION = "dfkdtest"


def _installed(package: str) -> bool:
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    ).stdout
    return status.endswith("install ok installed")


def why_not_installable(packages: tuple[str, ...]) -> str | None:
    """Why `packages` cannot be installed and their servers configured here (the only reasons
    to skip), or None."""
    if shutil.which("dpkg-query") is None or shutil.which("apt-get") is None:
        return f"needs Debian's {' '.join(packages)}, and this machine has no apt-get"
    if os.geteuid() != 0:
        return f"installs and configures Debian's {' '.join(packages)}, which needs root"
    return None


def install(packages: tuple[str, ...]) -> None:
    """apt-get install what is missing; a failure here fails the test (it could be installed)."""
    missing = [p for p in packages if not _installed(p)]
    if not missing:
        return
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, env=environment, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=environment, capture_output=True)
        result = subprocess.run(command, env=environment, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr}"


# SLURM ---------------------------------------------------------------------------------------


def _controller_answers() -> bool:
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return ping.returncode == 0 and " is UP" in ping.stdout


def _configuration() -> str:
    host = socket.gethostname().split(".")[0]
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    state = SLURM_STATE
    return f"""{MARKER}
ClusterName=dfkdtest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation={state}/state
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
# No accounting database: squeue reports finished jobs for MinJobAge seconds.
MinJobAge=600
NodeName={host} CPUs={os.cpu_count()} RealMemory={memory_mb // 2} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _wait(condition, what: str, seconds: float = 60.0, why=lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {why()}"
        time.sleep(0.5)


def _node_state() -> str:
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return sinfo.stdout.strip()


def _node_idle() -> bool:
    """The node takes jobs. A node that registered while slurmctld still held it down (a slow
    start on a loaded machine) is told to resume rather than waited for."""
    state = _node_state()
    if state.rstrip("*~#") in ("down", "drained"):
        host = socket.gethostname().split(".")[0]
        subprocess.run(
            ["scontrol", "update", f"NodeName={host}", "State=RESUME"], capture_output=True
        )
    return state == "idle"


def _why_the_node_is_not_idle() -> str:
    reason = subprocess.run(["sinfo", "-h", "-R"], capture_output=True, text=True).stdout.strip()
    log = SLURM_STATE / "slurmd.log"
    tail = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
    return f"state {_node_state()!r}, reason {reason!r}; slurmd.log ends:\n" + "\n".join(tail)


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """One process at a time (the test workers are processes)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def start_slurm() -> str | None:
    """Starts the single-node SLURM unless it runs already; returns None, or why the tests
    cannot use this machine's SLURM."""
    with _exclusive(SLURM_STATE.parent / "dfkd-test-slurm.lock"):
        if SLURM_CONF.exists() and MARKER not in SLURM_CONF.read_text():
            return f"{SLURM_CONF} is this machine's own SLURM set-up, which the test leaves alone"
        install(SLURM_PACKAGES)
        if _controller_answers():  # started by another test worker, or by hand
            return None
        for directory in ("state", "spool"):
            (SLURM_STATE / directory).mkdir(parents=True, exist_ok=True)
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(_configuration())
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
            run_directory = ["install", "-d", "-o", "munge", "-g", "munge", "/run/munge"]
            subprocess.run(run_directory, check=True)
            if not Path("/etc/munge/munge.key").exists():
                subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "-c"], check=True)
            subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
            (SLURM_STATE / "munged-started").touch()  # stopped through its pid file
        # -c: a fresh cluster, not the jobs a killed earlier session left allocated.
        subprocess.run(["slurmctld", "-c"], check=True)
        subprocess.run(["slurmd"], check=True)
        STARTED.touch()
        _wait(_controller_answers, "slurmctld")
        # Registration is slow while the other test worker trains on both cores.
        _wait(_node_idle, "the node to be idle", 180.0, _why_the_node_is_not_idle)
    return None


def stop_slurm_if_the_tests_started_it() -> None:
    if not STARTED.exists():
        return
    subprocess.run(["scontrol", "shutdown"], capture_output=True)
    _wait(lambda: not any(SLURM_STATE.glob("slurm*.pid")), "slurmctld and slurmd to stop")
    if (SLURM_STATE / "munged-started").exists():
        os.kill(int(Path("/run/munge/munged.pid").read_text()), signal.SIGTERM)
        (SLURM_STATE / "munged-started").unlink()
    STARTED.unlink()


# OpenSSH on loopback -------------------------------------------------------------------------


@dataclass(frozen=True)
class SSHServer:
    port: int
    user: str
    keyfile: Path  # the client's private key, authorised for `user`
    home: Path  # a HOME whose .ssh/known_hosts holds the server's host key


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def ssh_server(directory: Path) -> Iterator[SSHServer]:
    """sshd on 127.0.0.1 for this user, with a fresh host key and a fresh client key."""
    install(SSH_PACKAGES)
    directory.mkdir(parents=True)
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)],
            check=True,
        )
    port = _free_port()
    home = directory / "home"
    (home / ".ssh").mkdir(parents=True)
    host_key = (directory / "host_key.pub").read_text().split()
    (home / ".ssh/known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {directory / 'client_key.pub'}\nPidFile {directory / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation directory
    with (directory / "sshd.log").open("w") as log:
        server = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )

    def listening() -> bool:
        assert server.poll() is None, (directory / "sshd.log").read_text()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        _wait(listening, "sshd", seconds=20)
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        yield SSHServer(port, user, directory / "client_key", home)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    # `python3 tests/services.py`, as root: installs both servers' packages and TeX Live ahead
    # of the tests (.ci/run), which would otherwise install them themselves.
    install(SLURM_PACKAGES + SSH_PACKAGES + LATEX_PACKAGES)
