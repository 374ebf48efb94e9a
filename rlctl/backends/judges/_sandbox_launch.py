"""Sandbox launcher: applies the OS-level limits, then execs the harness.

Runs as its own single-threaded process (never imports rlctl), because limits set from a
`preexec_fn` in a multithreaded judge can deadlock. Every isolation step that the OS or our
privileges refuse is skipped and reported in `isolation.json`, never fatal: on a laptop the
rlimits and the harness hooks still hold.

argv[1]: JSON config {dir, cpu_s, memory_mb, fsize_mb, nproc, uid, env, pythons}.
"""

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc, src, target, fstype, flags):
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    return libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), None) == 0


def _mount_points():
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


def isolate_filesystem(libc, workdir):
    """A private mount namespace where every mount is read-only except the program's own
    directory (bind-mounted onto itself first, so it stays writable)."""
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    if not _mount(libc, None, "/", None, MS_REC | MS_PRIVATE):
        return False
    if not _mount(libc, workdir, workdir, None, MS_BIND):
        return False
    ok = True
    for point in _mount_points():
        if point == workdir or point.startswith(("/proc", "/sys")):
            continue
        ok &= _mount(libc, None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    return ok


def main():
    cfg = json.loads(sys.argv[1])
    workdir = cfg["dir"]
    os.setsid()  # own session and process group: the judge kills the whole group
    libc = _libc()
    done = {"net": libc.unshare(CLONE_NEWNET) == 0}
    done["fs_readonly"] = isolate_filesystem(libc, workdir)
    limits = {
        resource.RLIMIT_CPU: (cfg["cpu_s"], cfg["cpu_s"] + 1),
        resource.RLIMIT_AS: (cfg["memory_mb"] << 20,) * 2,
        resource.RLIMIT_FSIZE: (cfg["fsize_mb"] << 20,) * 2,
        resource.RLIMIT_NPROC: (cfg["nproc"],) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, value in limits.items():
        resource.setrlimit(which, value)
    done["uid"] = os.getuid()
    if os.getuid() == 0 and cfg.get("uid"):
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
        done["uid"] = cfg["uid"]
    os.chdir(workdir)
    errors = []
    for python in cfg["pythons"]:
        done["python"] = python
        with open("isolation.json", "w") as f:
            json.dump(done, f)
        try:
            os.execve(python, [python, "-I", "-B", "_harness.py"], cfg["env"])
        except OSError as e:  # e.g. the venv's python is under a home the sandbox uid cannot read
            errors.append(f"{python}: {e.strerror}")
    sys.stderr.write("sandbox: no usable python: " + "; ".join(errors) + "\n")
    os._exit(127)


if __name__ == "__main__":
    main()
