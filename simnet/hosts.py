"""Real daemons on separate emulated hosts: one Linux network namespace per
host, all on one bridge, with shaped access links.

Where ``simnet.simulate`` runs the node in one process in virtual time,
a :class:`HostBed` runs the real thing: one ``gossipfl run`` process per
host, each in its own network namespace with its own address, configured
with the project's own CLI (``swarm init``, ``keygen``, ``init-config``),
over links that the kernel shapes (``tc ... tbf``) and that can be cut.
It needs root and ``ip`` / ``tc`` from iproute2; ``netem`` is not used.

The layout, for a bed whose prefix is ``gfl-<pid>-<seq>``::

    gfl-<pid>-<seq>-sw     the switch: bridge gflbr0 and one port per host
                           (gflh<i>); egress here is host i's downlink
    gfl-<pid>-<seq>-h<i>   host i: lo, and eth0 (the other end of gflh<i>)
                           with 10.77.0.<i+1>/24; egress here is its uplink

Nothing is created in the namespace the harness runs in: the bridge and
every veth live and die with the bed's namespaces, so deleting those
leaves nothing behind, and the machine's own interfaces are never
touched.  A bed torn down by ``kill -9`` leaves namespaces whose prefix
names a dead process; the next bed removes them on start.

The daemons are ordinary processes started through ``ip netns exec``; their
state dirs (and so their control sockets) sit on the shared file system,
so ``gossipfl status --state-dir`` reads them from outside the namespace.

Pure helpers (the address plan, every command line, config edits, parsing
``ip netns list``) come first; :class:`HostBed` is the only part that runs
anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final

from gossipfl.node.demo import reap

NAME_PREFIX: Final = "gfl"
BRIDGE: Final = "gflbr0"
HOST_DEVICE: Final = "eth0"  # the host's end of its veth, inside its namespace
DEFAULT_SUBNET: Final = "10.77.0.0/24"
# Queueing a tbf allows before it drops: deep enough for TCP to fill a slow
# link, shallow enough that a 2 Mbit/s link does not hide seconds of delay.
TBF_LATENCY: Final = "200ms"
_MIN_BURST_BYTES: Final = 16 * 1024  # over a few MTUs, whatever the rate
PEAK_OVER_RATE: Final = 1.01  # tc wants a peak rate above the rate
PEAK_BUCKET_BYTES: Final = 2000  # one full frame (1514 bytes) and room
_NAMESPACE = re.compile(rf"^{NAME_PREFIX}-(\d+)-(\d+)-(sw|h\d+)$")
_CONFIG_FILE: Final = "node.toml"
_PR_SET_PDEATHSIG: Final = 1


class BedError(RuntimeError):
    """The bed could not be built or torn down, or a command it ran failed;
    the message names the command and what it printed."""


class DaemonDiedError(BedError):
    """A host's daemon exited while the bed waited on it; the message holds
    its exit code and the end of its log."""


class BedStopped(BaseException):
    """SIGTERM reached the process while a bed was up.  Like
    KeyboardInterrupt, no ``except Exception`` may swallow it: the bed
    tears down and the process exits."""


# -- the plan (pure) --------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """A host's access link in Mbit/s: ``up`` leaves the host, ``down``
    reaches it."""

    up_mbit: float
    down_mbit: float

    @classmethod
    def symmetric(cls, mbit: float) -> Link:
        return cls(mbit, mbit)


@dataclass(frozen=True)
class HostPlan:
    index: int
    netns: str
    switch_port: str  # the bridge's end of this host's veth, in the switch namespace
    address: ipaddress.IPv4Interface
    link: Link

    @property
    def ip(self) -> str:
        return str(self.address.ip)


@dataclass(frozen=True)
class BedPlan:
    prefix: str
    switch_netns: str
    bridge: str
    hosts: tuple[HostPlan, ...]

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.switch_netns, *(h.netns for h in self.hosts))


def bed_prefix(pid: int, seq: int) -> str:
    """``gfl-<pid>-<seq>``: the pid says whether a bed's owner still runs."""
    return f"{NAME_PREFIX}-{pid}-{seq}"


def plan_bed(prefix: str, links: Sequence[Link], subnet: str = DEFAULT_SUBNET) -> BedPlan:
    """Names and addresses for one host per link: host ``i`` gets the
    ``i+1``-th address of ``subnet``.  Raises ValueError when the links are
    not positive or do not fit the subnet."""
    network = ipaddress.IPv4Network(subnet)
    usable = list(itertools.islice(network.hosts(), len(links)))
    if len(usable) < len(links):
        raise ValueError(f"{subnet} has room for {len(usable)} hosts, not {len(links)}")
    for link in links:
        if not (link.up_mbit > 0 and link.down_mbit > 0):
            raise ValueError(f"link rates must be > 0 Mbit/s, got {link}")
    hosts = tuple(
        HostPlan(
            index=i,
            netns=f"{prefix}-h{i}",
            switch_port=f"gflh{i}",
            address=ipaddress.IPv4Interface(f"{address}/{network.prefixlen}"),
            link=link,
        )
        for i, (address, link) in enumerate(zip(usable, links, strict=True))
    )
    return BedPlan(prefix=prefix, switch_netns=f"{prefix}-sw", bridge=BRIDGE, hosts=hosts)


def tbf_command(netns: str, device: str, mbit: float) -> list[str]:
    """Shape ``device``'s egress in ``netns`` to ``mbit`` with a token
    bucket (kbit, so fractional rates work; ``kbit`` is 1000 bit/s in tc).

    The bucket's burst lets an idle link send that much at line rate: a
    100 kB transfer on a 10 Mbit/s link took 71 ms instead of 80, and
    small exchanges never showed the link's rate at all.  A peak rate just
    above the rate, over one packet, paces the burst too (bench/calibration.py).
    """
    rate_bytes = mbit * 1e6 / 8
    burst = max(_MIN_BURST_BYTES, int(rate_bytes * 0.01))  # 10 ms at full rate
    return [
        "tc",
        "-n",
        netns,
        "qdisc",
        "replace",
        "dev",
        device,
        "root",
        "tbf",
        "rate",
        f"{round(mbit * 1000)}kbit",
        "burst",
        str(burst),
        "latency",
        TBF_LATENCY,
        "peakrate",
        f"{round(mbit * 1000 * PEAK_OVER_RATE)}kbit",
        "mtu",
        str(PEAK_BUCKET_BYTES),
    ]


def setup_commands(plan: BedPlan) -> list[list[str]]:
    """Every command that builds the bed, in order: the switch namespace
    and its bridge, then per host its namespace, veth, address and shaping."""
    sw = plan.switch_netns
    commands = [
        ["ip", "netns", "add", sw],
        # Multicast snooping off: mDNS must reach every port, querier or not.
        ["ip", "-n", sw, "link", "add", plan.bridge, "type", "bridge", "mcast_snooping", "0"],
        ["ip", "-n", sw, "link", "set", plan.bridge, "up"],
    ]
    for host in plan.hosts:
        ns, port = host.netns, host.switch_port
        commands += [
            ["ip", "netns", "add", ns],
            ["ip", "-n", sw, "link", "add", port, "type", "veth", *_peer_in(ns)],
            ["ip", "-n", sw, "link", "set", port, "master", plan.bridge],
            ["ip", "-n", sw, "link", "set", port, "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "-n", ns, "addr", "add", str(host.address), "dev", HOST_DEVICE],
            ["ip", "-n", ns, "link", "set", HOST_DEVICE, "up"],
            tbf_command(ns, HOST_DEVICE, host.link.up_mbit),
            tbf_command(sw, port, host.link.down_mbit),
        ]
    return commands


def _peer_in(netns: str) -> list[str]:
    # The veth's other end is created straight in the host's namespace, so
    # its name (eth0) never meets the names of the namespace we run in.
    return ["peer", "name", HOST_DEVICE, "netns", netns]


def cut_command(plan: BedPlan, host: HostPlan, *, up: bool) -> list[str]:
    """Unplug (or plug back) a host's cable at the switch: its own
    interface keeps its address and sees the carrier go."""
    state = "up" if up else "down"
    return ["ip", "-n", plan.switch_netns, "link", "set", host.switch_port, state]


def delete_command(netns: str) -> list[str]:
    return ["ip", "netns", "delete", netns]


def pids_command(netns: str) -> list[str]:
    return ["ip", "netns", "pids", netns]


def netns_names(listing: str) -> list[str]:
    """Names in ``ip netns list`` output (``NAME`` or ``NAME (id: N)``)."""
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def stale_namespaces(names: Sequence[str], alive: Callable[[int], bool]) -> list[str]:
    """Bed namespaces whose creating process no longer runs."""
    stale = []
    for name in names:
        match = _NAMESPACE.match(name)
        if match and not alive(int(match[1])):
            stale.append(name)
    return stale


def cli_command(python: str, *args: str) -> list[str]:
    """The project's own command line, as the interpreter running us has it."""
    return [python, "-m", "gossipfl", *args]


def daemon_command(netns: str, python: str, config: Path) -> list[str]:
    """``gossipfl run`` inside ``netns``; ``ip netns exec`` execs it in
    place, so the process started is the daemon itself."""
    return ["ip", "netns", "exec", netns, *cli_command(python, "run", "--config", str(config))]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def set_toml_keys(text: str, table: str, values: Mapping[str, Any]) -> str:
    """``text`` (a config as ``gossipfl init-config`` writes it) with
    ``values`` set in ``[table]``, as an operator edits it: an existing
    ``key = ...`` line is replaced in place (its comment dropped), a new key
    goes at the end of the table, and a missing table is appended.  Only
    flat tables; raises ValueError on a value TOML cannot hold."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == f"[{table}]"), None)
    if start is None:
        lines += ["", f"[{table}]"]
        start = len(lines) - 1
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
        len(lines),
    )
    pending = dict(values)
    for i in range(start + 1, end):
        key = lines[i].split("=", 1)[0].strip()
        if "=" in lines[i] and key in pending:
            lines[i] = f"{key} = {_toml_value(pending.pop(key))}"
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # new keys go before the blank line that ends the table
    lines[end:end] = [f"{key} = {_toml_value(value)}" for key, value in pending.items()]
    out = "\n".join(lines) + "\n"
    try:
        tomllib.loads(out)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"setting {sorted(values)} in [{table}] broke the file: {exc}") from None
    return out


# -- running it -------------------------------------------------------------------------

Overrides = Callable[[int], Mapping[str, Mapping[str, Any]]]
_seq = itertools.count()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def missing_tools() -> str | None:
    """Why a bed cannot be built here, or ``None`` when it can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def _run(command: Sequence[str], *, check: bool = True, timeout: float = 60) -> str:
    result = subprocess.run(
        list(command), capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise BedError(
            f"`{' '.join(command)}` exited {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result.stdout


def list_namespaces() -> list[str]:
    return netns_names(_run(["ip", "netns", "list"]))


def remove_namespaces(names: Sequence[str]) -> list[str]:
    """Kill every process left in each namespace, then delete it; returns
    the ones that could not be deleted (with why), for the caller to report."""
    failed = []
    for name in names:
        for pid in _run(pids_command(name), check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        result = subprocess.run(
            delete_command(name), capture_output=True, text=True, check=False, timeout=60
        )
        if result.returncode != 0 and name in list_namespaces():
            failed.append(f"{name} ({result.stderr.strip()})")
    return failed


def _stop_with_parent() -> None:
    """In the child, before exec: SIGTERM when the thread that started us
    dies, however it dies (even ``kill -9``), so no daemon outlives its bed."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, so a second Ctrl-C
    cannot cut a teardown short; they are delivered (and raise) after."""
    deferred = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, deferred)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class HostBed:
    """``len(links)`` hosts on one bridge, one ``gossipfl run`` each.

    ``with HostBed([Link.symmetric(2), Link.symmetric(10)]) as bed:`` builds
    the namespaces, veths and shaping, and writes each host's config with
    the CLI (setting only the ``[swarm]`` paths, plus whatever ``overrides(i)``
    returns as ``{table: {key: value}}``); the daemons start only on
    :meth:`start`.  Leaving the block, normally, on an exception, on Ctrl-C
    or on SIGTERM, stops every daemon and deletes every namespace (and with
    them the bridge and veths); :attr:`edited` records every key the
    configs needed.  ``root`` holds ``swarm/`` and one ``host<i>/`` per host
    (keys, ``node.toml``, ``state/``, ``node.log``); a temporary root is
    removed on a clean exit and kept, for its logs, after a failure.
    """

    def __init__(
        self,
        links: Sequence[Link | float],
        *,
        root: Path | None = None,
        subnet: str = DEFAULT_SUBNET,
        overrides: Overrides | None = None,
        nice: int = 0,
        python: str = sys.executable,
    ) -> None:
        self.links = [x if isinstance(x, Link) else Link.symmetric(x) for x in links]
        self.plan = plan_bed(bed_prefix(os.getpid(), next(_seq)), self.links, subnet)
        self._own_root = root is None
        # A temporary root is named after the bed: its prefix is unique among
        # running processes, so one that exists is a dead bed's leftover.
        self.root = root if root is not None else Path(tempfile.gettempdir()) / self.plan.prefix
        self.overrides = overrides
        self.nice = nice
        self.python = python
        self.node_ids: list[str] = []
        self.edited: dict[str, set[str]] = {}
        self.cleaned: list[str] = []  # stale namespaces removed at start
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * len(self.links)
        self._previous_sigterm: Any = None

    # -- lifecycle --

    def __enter__(self) -> HostBed:
        reason = missing_tools()
        if reason is not None:
            raise BedError(f"cannot build a host bed: {reason}")
        self._catch_sigterm()
        try:
            self._clean_stale()
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True, exist_ok=True)
            self._build()
            self._write_configs()
        except BaseException:
            self.close(failed=True)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(failed=exc is not None)

    def close(self, *, failed: bool = False) -> None:
        """Stop every daemon, delete every namespace; idempotent.  Raises
        BedError naming what is left if that fails (after trying all)."""
        with _signals_deferred():
            self.stop_all(timeout=10)
            # Whatever else runs in them (a daemon started by hand) dies here.
            ours = [n for n in list_namespaces() if n.startswith(self.plan.prefix + "-")]
            left = remove_namespaces(ours)
            self._restore_sigterm()
            if self._own_root and not failed and not left:
                shutil.rmtree(self.root, ignore_errors=True)
            elif failed and self.root.exists():
                print(f"simnet.hosts: configs and logs kept in {self.root}", file=sys.stderr)
        if left:
            message = f"could not delete namespaces: {', '.join(left)}"
            if failed:  # do not hide the error that brought us here
                print(f"simnet.hosts: {message}", file=sys.stderr)
            else:
                raise BedError(message)

    def _catch_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # someone else already decided what SIGTERM does

        def stopped(signum: int, frame: FrameType | None) -> None:
            raise BedStopped(signal.Signals(signum).name)

        self._previous_sigterm = signal.signal(signal.SIGTERM, stopped)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def _clean_stale(self) -> None:
        stale = stale_namespaces(list_namespaces(), _pid_alive)
        left = remove_namespaces(stale)
        if left:
            raise BedError(
                f"namespaces left by an earlier bed whose process is gone could not be "
                f"deleted: {', '.join(left)}; delete them with `ip netns delete NAME`"
            )
        self.cleaned = stale
        if stale:
            print(
                f"simnet.hosts: removed leftovers of dead beds: {' '.join(stale)}", file=sys.stderr
            )

    def _build(self) -> None:
        existing = set(list_namespaces())
        clash = [n for n in self.plan.namespaces if n in existing]
        if clash:
            raise BedError(f"namespaces already exist: {', '.join(clash)}")
        for command in setup_commands(self.plan):
            _run(command)

    def _write_configs(self) -> None:
        _run(cli_command(self.python, "swarm", "init", str(self.root / "swarm")))
        for host in self.plan.hosts:
            node_dir = self.host_dir(host.index)
            out = _run(
                cli_command(
                    self.python,
                    "keygen",
                    "--swarm",
                    str(self.root / "swarm"),
                    "--out",
                    str(node_dir),
                )
            )
            self.node_ids.append(out.split()[-1])
            config = self.config_path(host.index)
            _run(cli_command(self.python, "init-config", str(config)))
            # What the operator guide asks for: the [swarm] paths.
            tables: dict[str, Mapping[str, Any]] = {
                "swarm": {
                    "ca_cert": node_dir / "ca.crt",
                    "node_cert": node_dir / "node.crt",
                    "node_key": node_dir / "node.key",
                }
            }
            for table, values in (self.overrides(host.index) if self.overrides else {}).items():
                tables[table] = {**tables.get(table, {}), **values}
            text = config.read_text()
            for table, values in tables.items():
                text = set_toml_keys(text, table, values)
                self.edited.setdefault(table, set()).update(values)
            config.write_text(text)

    # -- paths --

    def host_dir(self, i: int) -> Path:
        return self.root / f"host{i}"

    def config_path(self, i: int) -> Path:
        return self.host_dir(i) / _CONFIG_FILE

    def state_dir(self, i: int) -> Path:
        """The configured ``[node] state_dir``, as the daemon resolves it."""
        from gossipfl.node.config import load_config

        return load_config(self.config_path(i)).node.state_dir

    def log_path(self, i: int) -> Path:
        return self.host_dir(i) / "node.log"

    # -- daemons --

    def start(self, i: int | None = None) -> None:
        """Start host ``i``'s daemon (every host's when ``None``); its
        output is appended to :meth:`log_path`.  Raises BedError if it runs."""
        nice = self.nice

        def before_exec() -> None:
            _stop_with_parent()
            if nice:
                os.nice(nice)

        for index in range(len(self.links)) if i is None else [i]:
            if self.running(index):
                raise BedError(f"host{index}'s daemon is already running")
            host = self.plan.hosts[index]
            with open(self.log_path(index), "ab") as log:
                self._processes[index] = subprocess.Popen(
                    daemon_command(host.netns, self.python, self.config_path(index)),
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    cwd=self.host_dir(index),
                    # Its own process group: Ctrl-C reaches the bed, which stops
                    # the daemons itself, in order.
                    process_group=0,
                    preexec_fn=before_exec,
                )

    def running(self, i: int) -> bool:
        process = self._processes[i]
        return process is not None and process.poll() is None

    def pid(self, i: int) -> int | None:
        process = self._processes[i]
        return None if process is None else process.pid

    def stop(self, i: int, timeout: float = 30) -> int | None:
        """SIGTERM host ``i``'s daemon (it checkpoints and leaves) and wait;
        SIGKILL after ``timeout``.  Returns its exit code, None if never started."""
        self._terminate(i)
        return self._reap(i, timeout)

    def stop_all(self, timeout: float = 30) -> list[int | None]:
        """SIGTERM every daemon at once (none goes on alone while the others
        leave, training on its own data), then wait for each; their exit codes."""
        for i in range(len(self._processes)):
            self._terminate(i)
        return [self._reap(i, timeout) for i in range(len(self._processes))]

    def _terminate(self, i: int) -> None:
        # One SIGTERM only: a second one may land after the daemon's own
        # handler is gone (it has checkpointed and is exiting) and kill it.
        process = self._processes[i]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    def _reap(self, i: int, timeout: float) -> int | None:
        return reap(self._processes[i], timeout)

    def kill(self, i: int) -> int | None:
        """``kill -9`` host ``i``'s daemon: no checkpoint, no goodbye."""
        process = self._processes[i]
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
        return process.wait()

    def restart(self, i: int, *, hard: bool = False) -> None:
        """Stop (or with ``hard``, kill -9) host ``i``'s daemon and start it again."""
        if hard:
            self.kill(i)
        else:
            self.stop(i)
        self.start(i)

    # -- links --

    def cut(self, i: int) -> None:
        """Unplug host ``i`` from the switch."""
        _run(cut_command(self.plan, self.plan.hosts[i], up=False))

    def heal(self, i: int) -> None:
        _run(cut_command(self.plan, self.plan.hosts[i], up=True))

    # -- watching --

    def status(self, i: int) -> dict[str, Any] | None:
        """Host ``i``'s live status (what ``gossipfl status --json`` prints,
        read in process: polling costs no interpreter start), or None while
        no daemon answers."""
        from gossipfl.node.state import read_status

        try:
            return read_status(self.state_dir(i), timeout_s=5)
        except (OSError, ValueError):
            return None

    def status_cli(self, i: int) -> dict[str, Any]:
        """Host ``i``'s status through ``gossipfl status --state-dir ... --json``,
        run from outside the host's namespace.  Raises BedError if it fails."""
        out = _run(
            cli_command(self.python, "status", "--state-dir", str(self.state_dir(i)), "--json")
        )
        data: dict[str, Any] = json.loads(out)
        return data

    def log_tail(self, i: int, lines: int = 20) -> list[str]:
        try:
            return self.log_path(i).read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return []

    def check_alive(self) -> None:
        """Raise DaemonDiedError, with its log's end, for the first started daemon
        that has exited."""
        for i, process in enumerate(self._processes):
            if process is not None and process.poll() is not None:
                tail = "\n".join(self.log_tail(i))
                raise DaemonDiedError(
                    f"host{i}'s daemon exited with code {process.returncode}; "
                    f"the end of {self.log_path(i)}:\n{tail}"
                )

    def wait_for(
        self, what: str, condition: Callable[[], bool], timeout: float, poll_s: float = 1.0
    ) -> None:
        """Poll ``condition`` until it holds; raise DaemonDiedError if a started
        daemon exits first, AssertionError naming ``what`` after ``timeout``.
        Wall clock on purpose: this supervises real processes."""
        deadline = time.monotonic() + timeout
        while not condition():
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(poll_s)
