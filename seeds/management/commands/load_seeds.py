"""`manage.py load_seeds [--demo] [--data-dir PATH]`: load the facility catalogue (and demo data)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from seeds.loader import (
    DEMO_REFUSED,
    SeedError,
    catalogue_summary,
    demo_summary,
    load_catalogue,
    load_demo,
)


class Command(BaseCommand):
    help = (
        "Load the facility catalogue from seeds/data (centres, the 77 equipment types and their "
        "units, accelerator pools, nodes and devices). Safe to run again: rows are matched on "
        "their codes and host names, and only what differs is updated. Nothing is written if a "
        "file is wrong. --demo adds demo organisations and accounts (only with DEBUG on)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--demo",
            action="store_true",
            help="Also create demo organisations, accounts with a known password, qualifications and quota grants.",
        )
        parser.add_argument(
            "--data-dir",
            metavar="PATH",
            default=None,
            help="Read the catalogue from this directory instead of seeds/data.",
        )

    def handle(self, *args, **options):
        if options["demo"] and not settings.DEBUG:
            raise CommandError(DEMO_REFUSED)
        try:
            # One transaction for both, so a failing demo load leaves no half-loaded catalogue.
            with transaction.atomic():
                catalogue = load_catalogue(data_dir=options["data_dir"])
                demo = load_demo() if options["demo"] else None
        except SeedError as exc:
            raise CommandError(str(exc)) from exc
        # Printed after commit: the summary describes what is really stored.
        self.stdout.write(catalogue_summary(catalogue))
        if demo is not None:
            self.stdout.write(demo_summary(demo))
