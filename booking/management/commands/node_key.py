"""`manage.py node_key <hostname> [--revoke]`: make (or revoke) the key a node's agent sends telemetry with."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from booking.services.telemetry import node_key_create, node_key_revoke
from equipment.models import Node


class Command(BaseCommand):
    help = (
        "Make a new agent key for a node and print it once (only its hash is stored; the previous key "
        "stops working). Give it to the node's agent: python -m booking.agent --key KEY --server URL. "
        "--revoke removes the node's key instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("hostname", help="The node's host name, as in the inventory.")
        parser.add_argument(
            "--revoke",
            action="store_true",
            help="Remove the key: the agent is refused from now on.",
        )

    def handle(self, *args, **options):
        hostname = options["hostname"]
        node = Node.objects.filter(hostname=hostname).first()
        if node is None:
            known = ", ".join(
                Node.objects.order_by("hostname").values_list("hostname", flat=True)[:10]
            )
            raise CommandError(
                f"No node is called {hostname!r}. Known nodes include: {known or '(none)'}."
            )
        if options["revoke"]:
            node_key_revoke(node=node)
            self.stderr.write(f"The agent key of {hostname} is revoked.")
            return
        key = node_key_create(node=node)
        self.stderr.write(
            f"New agent key for {hostname} (shown once; the previous key no longer works):"
        )
        self.stdout.write(key)
