"""``inventiv``: the operator command line.

    inventiv up                      start the whole stack (embedded NATS and Postgres unless
                                     NATS_URL / DATABASE_URL are set)
    inventiv api|orchestrator|projector|finops
                                     run one service against the servers in NATS_URL / DATABASE_URL
    inventiv nats apply              create or update streams and consumers from nats/*.json
    inventiv db migrate [--no-seed]  apply SQL migrations and seed the catalog
    inventiv projector rebuild       replay EVENTS into fresh tables and swap them in
"""

from __future__ import annotations

import argparse
import importlib
import sys


def _service(module: str):
    def run(args: argparse.Namespace) -> int:
        importlib.import_module(module).main()
        return 0

    return run


def _call(module: str, func: str):
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), func)(args) or 0

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inventiv", description="Inventiv control plane")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the whole stack on this machine")
    up.set_defaults(func=_call("services.stack.up", "run_up"))

    for name in ("api", "orchestrator", "finops"):
        p = sub.add_parser(name, help=f"run the {name} service")
        p.set_defaults(func=_service(f"services.{name}.main"))

    projector = sub.add_parser("projector", help="run the projector, or rebuild its tables")
    projector_sub = projector.add_subparsers(dest="action")
    projector.set_defaults(func=_service("services.projector.main"))
    rebuild = projector_sub.add_parser("rebuild", help="replay EVENTS into fresh tables and swap them in")
    rebuild.add_argument("--no-swap", action="store_true", help="build and compare, keep the live tables")
    rebuild.set_defaults(func=_call("services.projector.rebuild", "run_rebuild_cli"))

    nats_cmd = sub.add_parser("nats", help="NATS JetStream configuration")
    nats_sub = nats_cmd.add_subparsers(dest="action", required=True)
    apply = nats_sub.add_parser("apply", help="create or update streams and consumers from nats/*.json")
    apply.set_defaults(func=_call("services.stack.admin", "run_nats_apply"))

    db = sub.add_parser("db", help="Postgres schema")
    db_sub = db.add_subparsers(dest="action", required=True)
    mig = db_sub.add_parser("migrate", help="apply SQL migrations")
    mig.add_argument("--no-seed", action="store_true", help="do not seed the catalog")
    mig.set_defaults(func=_call("services.stack.admin", "run_db_migrate"))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
