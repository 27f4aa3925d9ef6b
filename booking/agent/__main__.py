"""`python -m booking.agent --server URL --key KEY [--interval 10] [--state-dir DIR] [--fake N] [--once]`.

The server and key may also come from TESTBED_AGENT_SERVER and TESTBED_AGENT_KEY (better than
a key on the command line, which other users of the node can see). Exit status with --once:
0 when everything queued was sent, 75 (EX_TEMPFAIL) when samples remain queued for next time.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from booking.agent.client import Agent, TelemetryClient
from booking.agent.sampler import FakeSampler, NvmlSampler, NvmlUnavailable, Sampler
from booking.agent.spool import Spool, SpoolBusy

EX_TEMPFAIL = 75
logger = logging.getLogger("booking.agent")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "testbed-agent"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m booking.agent",
        description="Read every accelerator on this node and send the samples to the testbed server.",
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("TESTBED_AGENT_SERVER"),
        help="Server base URL, e.g. https://testbed.example.kr (env TESTBED_AGENT_SERVER).",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("TESTBED_AGENT_KEY"),
        help="This node's key from `manage.py node_key <hostname>` (env TESTBED_AGENT_KEY).",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=float(os.environ.get("TESTBED_AGENT_INTERVAL", "10")),
        help="Seconds between readings (default 10).",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1000,
        help="Samples per request, at most 10,000 (default 1000).",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=os.environ.get("TESTBED_AGENT_STATE_DIR"),
        help=f"Where unsent samples are kept (default {default_state_dir()}).",
    )
    parser.add_argument(
        "--fake",
        type=int,
        metavar="N",
        default=None,
        help="Read N fake devices instead of NVML (tests, demos).",
    )
    parser.add_argument(
        "--fake-utilization",
        type=float,
        default=50.0,
        metavar="PCT",
        help="Utilisation the fake devices report (default 50).",
    )
    parser.add_argument(
        "--device-key",
        choices=["index", "uuid"],
        default="index",
        help="Name devices to the server by NVML index (default) or by UUID.",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="HTTP timeout in seconds (default 30)."
    )
    parser.add_argument(
        "--once", action="store_true", help="Read once, send what is queued, and exit."
    )
    parser.add_argument("--log-level", default=os.environ.get("TESTBED_AGENT_LOG_LEVEL", "INFO"))
    return parser


def make_sampler(args: argparse.Namespace) -> Sampler:
    if args.fake is not None:
        return FakeSampler(args.fake, utilization=args.fake_utilization, device_key=args.device_key)
    return NvmlSampler(device_key=args.device_key)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.server or not args.key:
        parser.error("give --server and --key (or TESTBED_AGENT_SERVER and TESTBED_AGENT_KEY)")
    try:
        client = TelemetryClient(args.server, args.key, timeout=args.timeout)
        sampler = make_sampler(args)
    except (ValueError, NvmlUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    try:
        spool = Spool(args.state_dir or default_state_dir())
    except SpoolBusy as exc:
        sampler.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        agent = Agent(
            sampler=sampler, spool=spool, client=client, interval=args.interval, batch=args.batch
        )
    except ValueError as exc:
        sampler.close()
        spool.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.once:
            result = agent.run_once()
            logger.info(
                "sent %d new sample(s) (%d already stored), %d rejected, %d queued%s",
                result.sent,
                result.duplicates,
                result.rejected,
                result.left,
                f"; last error: {result.error}" if result.error else "",
            )
            return 0 if result.left == 0 else EX_TEMPFAIL
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_a: stop.set())
        logger.info(
            "sending to %s every %.0f s; queue in %s", client.url, args.interval, spool.path
        )
        agent.run_forever(stop)
        return 0
    finally:
        agent.close()


if __name__ == "__main__":
    sys.exit(main())
