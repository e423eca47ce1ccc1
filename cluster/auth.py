"""Ray's token authentication as rltf's clients meet it.

Ray (2.59 and later) turns token authentication on for a cluster whose head finds a token when
it starts: `ray get-auth-token --generate` writes one to ~/.ray/auth_token, and a local
`ray.init()` makes one there too. From then on the GCS and the dashboard's REST API (job
submission, the actor list) refuse clients without that token; the Prometheus metrics port
does not ask for it. A client looks for the token where Ray does, in this order: the variable
RAY_AUTH_TOKEN, the file named by RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token; and Ray's clients
send it only when RAY_AUTH_MODE=token (except `ray.init()` without an address on the head).

`check_cluster_access(address)` runs before `rltf train` joins a cluster and before
`rltf scale`: it asks the GCS once (in a subprocess, so Ray's own log lines stay out of the
way) and turns a refusal into one line that says what is wrong and how to fix it.
`auth_headers()` gives the HTTP header for the dashboard's REST API.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

HEAD_HINT = "`ray get-auth-token` on the head prints it"


class ClusterAccessError(RuntimeError):
    """The cluster cannot be reached or refuses this client; the message is one line."""


@dataclass(frozen=True)
class TokenSource:
    where: str  # where the token came from ("" when none was found)
    token: str | None
    problem: str | None = None  # a source that is set but unusable


def token_source(env: Mapping[str, str] | None = None, home: str | Path | None = None
                 ) -> TokenSource:
    """The token this process would send, found the way Ray finds it (pure: env and home)."""
    env = os.environ if env is None else env
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return TokenSource("RAY_AUTH_TOKEN", env["RAY_AUTH_TOKEN"].strip())
    path = env.get("RAY_AUTH_TOKEN_PATH")
    if path:
        text = _read(Path(path).expanduser())
        if not text:
            return TokenSource(f"RAY_AUTH_TOKEN_PATH={path}", None,
                               f"RAY_AUTH_TOKEN_PATH={path} does not exist or is empty: point "
                               "it at the file holding the cluster's token, or unset it")
        return TokenSource(f"RAY_AUTH_TOKEN_PATH={path}", text)
    default = Path(home if home is not None else env.get("HOME", str(Path.home()))) \
        / ".ray" / "auth_token"
    text = _read(default)
    return TokenSource(str(default), text) if text else TokenSource("", None)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def sends_token(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("RAY_AUTH_MODE", "").lower() == "token"


def explain_refusal(address: str, env: Mapping[str, str] | None = None,
                    home: str | Path | None = None) -> str:
    """One line for a cluster that refused this client's token (or its lack of one)."""
    env = os.environ if env is None else env
    src = token_source(env, home)
    if src.problem:
        return src.problem
    if not sends_token(env):
        have = (f" (there is one in {src.where}, but Ray sends it only with "
                "RAY_AUTH_MODE=token)") if src.token else ""
        return (f"the Ray cluster at {address} requires its authentication token and this "
                f"client sends none{have}: export RAY_AUTH_MODE=token and put the cluster's "
                f"token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN "
                f"({HEAD_HINT})")
    if not src.token:
        return ("RAY_AUTH_MODE=token but no token was found (RAY_AUTH_TOKEN, "
                "RAY_AUTH_TOKEN_PATH and ~/.ray/auth_token are all empty): put the cluster's "
                f"token in one of them ({HEAD_HINT})")
    return (f"the Ray cluster at {address} refused the token from {src.where}: it is not "
            f"this cluster's token; use the head's ({HEAD_HINT})")


def local_problem(env: Mapping[str, str] | None = None) -> str | None:
    """A token setting that would make Ray itself abort (RAY_AUTH_TOKEN_PATH naming a missing
    file), or RAY_AUTH_MODE=token with no token at all; None when there is nothing wrong."""
    env = os.environ if env is None else env
    src = token_source(env)
    if src.problem:
        return src.problem
    if sends_token(env) and not src.token:
        return explain_refusal("", env)
    return None


def auth_headers(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Authorization header for the dashboard's REST API, when this client sends a token
    (RAY_AUTH_MODE=token), else {}."""
    env = os.environ if env is None else env
    src = token_source(env)
    return {"Authorization": f"Bearer {src.token}"} if sends_token(env) and src.token else {}


def resolve_address(address: str | None) -> str | None:
    """host:port of the cluster that `ray.init(address)` would join; None for a new local
    instance. `auto` reads RAY_ADDRESS, then the latest cluster started on this machine."""
    if address is None:
        return None
    if address.startswith("ray://"):
        return address
    from ray._private.services import canonicalize_bootstrap_address

    try:
        resolved = canonicalize_bootstrap_address(address)
    except (ValueError, ConnectionError) as err:
        raise ClusterAccessError(f"cluster address {address!r} is not usable ({err}); give "
                                 "the head's host:port (GCS port, 6379 by default)") from None
    if resolved is None:
        raise ClusterAccessError(f"cluster.address={address} but no running Ray cluster was "
                                 "found (RAY_ADDRESS is unset): start one with `ray start "
                                 "--head`, or give its host:port")
    return resolved


def check_cluster_access(address: str, timeout_s: float = 60.0) -> None:
    """Raise ClusterAccessError (one line) unless the GCS at host:port answers this client."""
    problem = local_problem()
    if problem:
        raise ClusterAccessError(problem)
    if address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except (OSError, ValueError):
        raise ClusterAccessError(f"nothing answers at {address}: check the head's address and "
                                 "GCS port (6379 by default) and that the cluster is up") from None
    probe = ("import sys\nfrom ray._raylet import GcsClient\n"
             "try:\n    GcsClient(address=sys.argv[1])\n"
             "except Exception as e:\n    print(type(e).__name__, e)\n    sys.exit(3)\n")
    try:
        out = subprocess.run([sys.executable, "-c", probe, address], capture_output=True,
                             text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ClusterAccessError(f"the Ray cluster at {address} did not answer within "
                                 f"{timeout_s:.0f}s; check that the address is the head's GCS "
                                 "port") from None
    said = out.stdout + out.stderr
    if out.returncode == 0:
        return
    if "Authentication" in said or "Unauthenticated" in said or "InvalidAuthToken" in said:
        raise ClusterAccessError(explain_refusal(address))
    last = [x for x in said.strip().splitlines() if x.strip()][-1:] or ["no output"]
    raise ClusterAccessError(f"could not connect to the Ray cluster at {address}: "
                             f"{last[0][:300]}")
