"""Gavel scaled out on one machine: one or more engines and several gateways, supervised.

    python run_cluster.py [--engines 1] [--gateways 2] [--port 8000]      (or: make cluster)

A development and demonstration launcher, and the supervisor that production leaves to systemd or
Kubernetes: it starts the embedded MongoDB and Redis once under `DATA_DIR` (unless `MONGODB_URL` /
`REDIS_URL` name real servers), then `run.py --role engine` for engines e1..eN (health ports
PORT+100...) and `run.py --role gateway` on ports PORT, PORT+1, ... (each child with its own
`DATA_DIR/<name>`), and restarts any child that exits, engines from their own journal and
snapshot. While an engine is down its sessions answer `UNAVAILABLE`; gateways keep serving the
rest. Ctrl-C (or SIGTERM) stops the gateways, then the engines (journal flushed, snapshot written),
then the embedded servers. Put any load balancer in front of the gateway ports; see
docs/scaling.md.

This is the launcher (processes on one machine); `persistence/cluster.py` is what those processes
speak to each other through Redis (registry, leases, the engine's command and journal streams).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from persistence.embedded import Services, die_with_parent_hook

ROOT = Path(__file__).resolve().parent
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


@dataclasses.dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "run.py", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A launcher killed with SIGKILL takes its children with it (SIGTERM: clean stops).
                preexec_fn=die_with_parent_hook(),
            )

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def children(args: argparse.Namespace, services: Services, data_dir: Path) -> list[Child]:
    env = dict(os.environ) | {"MONGODB_URL": services.mongo_url, "REDIS_URL": services.redis_url}
    made = []
    for n in range(1, args.engines + 1):
        name = f"e{n}"
        made.append(
            Child(
                name,
                ["--role", "engine", "--engine-id", name, "--port", str(args.port + 99 + n)],
                env | {"DATA_DIR": str(data_dir / name)},
                data_dir / "logs" / f"{name}.log",
            )
        )
    for n in range(1, args.gateways + 1):
        name = f"g{n}"
        seed = {} if n == 1 else {"SEED_DEMO": "0"}  # one gateway seeds the demo, once
        made.append(
            Child(
                name,
                ["--role", "gateway", "--port", str(args.port + n - 1)],
                env | {"DATA_DIR": str(data_dir / name)} | seed,
                data_dir / "logs" / f"{name}.log",
            )
        )
    return made


def supervise(kids: list[Child], stopping: list[bool], poll_s: float = 0.5) -> None:
    for child in kids:
        child.start()
        if child.name.startswith("e"):
            time.sleep(1.0)  # engines first: gateways route a new session to a live engine
    show_banner(kids)
    while not stopping:
        now = time.monotonic()
        for child in kids:
            code = child.exited()
            if code is None:
                continue
            if child.next_start == 0.0:
                delay = RESTART_BACKOFF_S[min(child.restarts, len(RESTART_BACKOFF_S) - 1)]
                child.next_start = now + delay
                print(f"{child.name} exited with {code}; restarting in {delay} s", flush=True)
            elif now >= child.next_start:
                child.restarts += 1
                child.next_start = 0.0
                child.start()
                print(f"{child.name} restarted (restart #{child.restarts})", flush=True)
        time.sleep(poll_s)


def show_banner(kids: list[Child], wait_s: float = 60.0) -> None:
    """Echo the first gateway's banner (URLs, the admin password it generated once, the demo)."""
    first = next(kid for kid in kids if kid.name == "g1")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and first.exited() is None:
        text = first.log_path.read_text(errors="replace") if first.log_path.exists() else ""
        if "Press Ctrl-C to stop." in text:
            start = text.rfind("Gavel gateway is running:")
            print(text[start:].split("Press Ctrl-C")[0].rstrip(), flush=True)
            return
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", type=int, default=1)
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "var/cluster")))
    args = parser.parse_args(argv)
    if args.engines < 1 or args.gateways < 1:
        parser.error("at least one engine and one gateway")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    stopping: list[bool] = []

    def stop(_signum: int, _frame: object) -> None:
        stopping.append(True)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with Services.from_env(args.data_dir / "services", os.environ) as services:
        kids = children(args, services, args.data_dir)
        print(
            "Gavel cluster: "
            + ", ".join(f"gateway http://127.0.0.1:{args.port + n}" for n in range(args.gateways))
            + f"; {args.engines} engine(s); logs in {args.data_dir / 'logs'}. Ctrl-C to stop.",
            flush=True,
        )
        try:
            supervise(kids, stopping)
        finally:
            for child in [kid for kid in kids if kid.name.startswith("g")]:
                child.stop()
            for child in [kid for kid in kids if kid.name.startswith("e")]:
                child.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
