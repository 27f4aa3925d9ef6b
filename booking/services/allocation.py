"""Deciding pending bookings: the locking rule of ARCHITECTURE.md in one durable transaction.

An allocation task decides the booking it was queued for and, in the same transaction, up to
TESTBED_ALLOCATION_BATCH - 1 other pending bookings that no other worker holds (SKIP LOCKED),
oldest first, so that under load one transaction and one read of each resource serve many
bookings; the tasks of the bookings decided along the way find them decided and do nothing.
1. lock the booking rows; then the rows whose availability shrinks (equipment types, then
   pools, by primary key), with a lock timeout; then the organisations' quota grants by pk;
2. read what holds the units or devices once per resource, choose with the pure allocator
   booking by booking (each sees the ones placed before it), insert allocation rows, move the
   bookings out of `pending`;
3. audit; decisions are published and emails queued on commit, never while locks are held.
A booking that `replaces` another (a move, booking/services/moves.py) is decided the same way,
except that the old booking is locked right after the batch's rows (step 1), its units or devices
and its quota hold count as free for its replacement, and when the replacement is placed the old
booking is cancelled free in this same transaction; rejected, the old booking is untouched.
PostgreSQL's exclusion constraints are the backstop: if they fire (only possible with locking
turned off), the decisions are simply made again and see the winner's rows.

One bad booking never stalls the others. If deciding one booking of a batch raises (bad data, a
bug, date overflow), the whole transaction is rolled back and the batch decided again with that
booking rejected as `internal_error` (audited, logged with its traceback, operators alerted by
email on commit); nothing it wrote survives and no later booking sees a hold of it. If the batch
fails outside any one booking's decision, the task decides its own booking alone, and rejects it
when even that fails. A booking is never left `pending` to poison every later batch: the sweeper
finds nothing to re-queue, and transient failures are bounded by MAX_ALLOCATION_ATTEMPTS.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from booking.allocator import add_clipped
from booking.choices import BookingStatus
from booking.models import Allocation, Booking
from booking.services.moves import Move, move_complete, move_obstacle, moves_lock
from booking.services.outcomes import Outcome, audit, on_commit_tell
from booking.services.placement import BatchResource, alternatives_for, load_batch
from booking.services.quotas import QuotaBook, QuotaExceeded, quota_release
from booking.services.resources import buffer_of
from booking.services.wakeup import flag_drop, flag_renew, flag_take, in_shard
from equipment.models import AcceleratorPool, EquipmentType
from testbed.db import set_lock_timeout

logger = logging.getLogger(__name__)

# Tasks of one booking that may fail on something other than a lock timeout (the database went
# away, a statement was cancelled) before the booking is rejected instead of tried again forever.
MAX_ALLOCATION_ATTEMPTS = 5
# Bookings of one batch whose decision may raise before the task stops batching and decides
# only its own booking (each failure costs one more pass over the batch).
MAX_FAILED_PER_TASK = 8
INTERNAL_ERROR = "internal_error"
INTERNAL_ERROR_DETAIL = (
    "This booking could not be decided because of an error on our side; the facility's "
    "operators have been alerted. Please book again, or contact the operator if it happens again."
)


class AllocationBusy(Exception):
    """The resource's lock could not be taken in time: the task retries, the user never sees it."""


class _DecisionFailed(Exception):
    """Deciding this booking of a batch raised (the cause is chained): roll back, decide again."""

    def __init__(self, booking_id: int) -> None:
        super().__init__(f"deciding booking {booking_id} raised")
        self.booking_id = booking_id


def _summary(exc: BaseException | None) -> str:
    """What went wrong, in one line for the audit entry and the operators' alert."""
    return f"{type(exc).__name__}: {exc}"[:300] if exc is not None else "unknown error"


def _locking_enabled() -> bool:
    return getattr(settings, "TESTBED_ALLOCATION_LOCKING", True)


def _pending(shard: int | None) -> QuerySet[Booking]:
    """Pending bookings a decider may take uninvited (of one shard): never those of contested
    rounds, which wait for their round."""
    pending = Booking.objects.filter(status=BookingStatus.PENDING, round__isnull=True)
    return in_shard(pending, shard) if shard is not None else pending


def _claim(
    booking_id: int | None, limit: int, shard: int | None = None
) -> tuple[str | None, list[Booking]]:
    """Lock the booking asked for (if any), then other pending ones nobody else holds, up to `limit`.

    Returns the asked-for booking's status (None if it does not exist or none was asked for) and
    the batch, oldest first (empty when the asked-for booking is decided already, or the shard
    has nothing pending that is free). The asked-for row is waited for (under the lock timeout);
    the others are taken with SKIP LOCKED, so concurrent workers split the queue instead of
    queueing behind one another. A shard's batch is claimed and read in one statement.
    """
    if booking_id is None:
        batch = (
            _pending(shard)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("user", "organization")
            .order_by("pk")[:limit]
        )
        return None, list(batch)
    status = (
        Booking.objects.select_for_update()
        .filter(pk=booking_id)
        .order_by()
        .values_list("status", flat=True)
        .first()
    )
    if status != BookingStatus.PENDING:
        return status, []  # the common case for a task whose booking a batch decided already
    ids = [booking_id]
    if limit > 1:
        ids += (
            _pending(shard)
            .select_for_update(skip_locked=True)
            .exclude(pk=booking_id)
            .order_by("pk")
            .values_list("pk", flat=True)[: limit - 1]
        )
    # Locked above: read them whole now, with their users (for the decision emails).
    rows = Booking.objects.select_related("user", "organization").filter(pk__in=ids)
    return status, list(rows.order_by("pk"))


def _resources(bookings: list[Booking]) -> dict[tuple[str, int], BatchResource]:
    """The batch's equipment types and pools, locked in one global order: types, then pools, by pk."""
    lock = _locking_enabled()
    found: dict[tuple[str, int], BatchResource] = {}
    for kind, model, attr in (
        ("type", EquipmentType, "equipment_type_id"),
        ("pool", AcceleratorPool, "pool_id"),
    ):
        ids = sorted({getattr(b, attr) for b in bookings if getattr(b, attr)})
        if not ids:
            continue
        rows = model.objects.select_related("center").filter(pk__in=ids).order_by("pk")
        if lock:
            rows = rows.select_for_update(of=("self",))
        for obj in rows:
            found[(kind, obj.pk)] = BatchResource(obj=obj, bookings=[])
    for b in bookings:
        entry = found[_key(b)]
        entry.bookings.append(b)
        if isinstance(entry.obj, EquipmentType):
            b.equipment_type = entry.obj
        else:
            b.pool = entry.obj
    return found


def _key(booking: Booking) -> tuple[str, int]:
    if booking.equipment_type_id:
        return ("type", booking.equipment_type_id)
    return ("pool", booking.pool_id or 0)


def _decide_one(
    booking: Booking,
    entry: BatchResource,
    *,
    quotas: QuotaBook,
    now: dt.datetime,
    pending_rows: list[Allocation],
    move: Move | None = None,
) -> tuple[Outcome, bool]:
    """Decide one booking of the batch; returns the outcome and whether a soft grant went over.

    A rejection is written at once; a placement only extends `pending_rows` and the resource's
    in-memory holds, as the last step, after everything that can fail (so a booking that
    raises leaves no hold behind for the later ones).
    """
    resource = entry.obj
    rejection: tuple[str, str] | None = None
    placed = None
    clash = [w for w in entry.windows if w[0] < booking.end and w[1] > booking.start]
    freeing = move.freed if move is not None else []
    obstacle = (
        move_obstacle(move, now=now, requires_approval=resource.requires_approval)
        if move is not None
        else None
    )
    if booking.start <= now:
        # Decided only after its start (workers were down or backlogged): confirming it now would
        # bill a no-show for time nobody could use. It expires, as the expiry sweep would do.
        rejection = (
            "expired",
            f"This request could not be allocated before its start "
            f"({timezone.localtime(booking.start):%Y-%m-%d %H:%M}): it expired and nothing is "
            "charged. Book another window.",
        )
    elif obstacle is not None:
        rejection = obstacle  # the booking it moves changed meanwhile: nothing is moved
    elif clash:
        w_start, w_end, reason = clash[0]
        rejection = (
            "maintenance",
            f"{resource.code} is under maintenance from "
            f"{timezone.localtime(w_start):%Y-%m-%d %H:%M} to "
            f"{timezone.localtime(w_end):%Y-%m-%d %H:%M} ({reason}): choose another time.",
        )
    else:
        placed = entry.place(booking, freeing=freeing)
        if placed is None:
            what = "unit" if isinstance(resource, EquipmentType) else "device"
            rejection = (
                "unavailable",
                f"Not enough free {what}s of {resource.code} for ×{booking.quantity} over "
                "this window: pick one of the alternatives, or another time.",
            )
    over_quota = False
    if rejection is None and quotas.has_grants(booking.organization_id):
        try:
            # A move is judged as if the old booking's hold were released (it is, on success).
            credit = {"credit": move.credit} if move is not None else {}
            over_quota = quotas.reserve(booking=booking, resource=resource, now=now, **credit)
        except QuotaExceeded as exc:
            rejection = ("quota_exceeded", exc.message)

    if rejection is not None:
        code, detail = rejection
        alternatives: list[dict] = []
        if code in {"unavailable", "maintenance"}:
            _flush(pending_rows)  # alternatives read the rows this batch placed so far
            alternatives = alternatives_for(resource, booking, now=now, freeing=freeing)
        _write_rejection(booking, code=code, detail=detail, alternatives=alternatives, now=now)
        outcome = Outcome(booking, BookingStatus.REJECTED, rejection=rejection)
        outcome.alternatives = alternatives
        return outcome, False
    assert placed is not None
    targets, node_of = placed
    end = add_clipped(booking.end, buffer_of(resource))
    rows = [
        Allocation(booking_id=booking.pk, unit_id=t, start=booking.start, end=end, created_at=now)
        if node_of is None
        else Allocation(
            booking_id=booking.pk,
            device_id=t,
            node_id=node_of[t],
            start=booking.start,
            end=end,
            created_at=now,
        )
        for t in targets
    ]
    new_status: str = (
        BookingStatus.AWAITING_APPROVAL if resource.requires_approval else BookingStatus.CONFIRMED
    )
    if move is not None:
        # Before this booking's rows are written: they may overlap the old booking's own.
        move_complete(move, new=booking, now=now)
        quotas.credit(move.credit)
        entry.release(freeing)
    entry.hold(targets, booking.start, end)
    pending_rows.extend(rows)
    outcome = Outcome(booking, new_status, targets=targets, node_of=node_of)
    outcome.replaced = move.old if move is not None else None
    return outcome, over_quota


def _write_rejection(
    booking: Booking, *, code: str, detail: str, alternatives: list[dict], now: dt.datetime
) -> None:
    Booking.objects.filter(pk=booking.pk).update(
        status=BookingStatus.REJECTED,
        rejection_code=code,
        rejection_detail=detail[:500],
        alternatives=alternatives,
        decided_at=now,
        updated_at=now,
        allocation_attempts=F("allocation_attempts") + 1,
    )


def _decide(
    booking_id: int | None,
    *,
    now: dt.datetime,
    limit: int,
    failed: dict[int, str],
    shard: int | None = None,
    claimed: list[int] | None = None,
) -> tuple[str, int]:
    """Decide the booking asked for (if any), and the other pending bookings claimed with it (of
    `shard`, up to `limit` in all), in one durable transaction under the locking rule. Bookings
    in `failed` (whose decision raised in an earlier pass), or that failed too often already,
    are rejected as internal errors, not decided. Returns the asked-for booking's status and how
    many bookings were decided; raises _DecisionFailed when one booking's decision raises (the
    transaction is rolled back: the caller decides the batch again without it). The ids claimed
    are appended to `claimed`, for the caller's error handling."""
    outcomes: list[Outcome] = []
    with transaction.atomic(durable=True):
        set_lock_timeout(settings.TESTBED_LOCK_TIMEOUT_MS)
        status, batch = _claim(booking_id, limit, shard)
        if booking_id is not None and status is None:
            logger.warning("allocate: booking %s does not exist (deleted?)", booking_id)
            return "missing", 0
        if not batch:
            return status or "", 0  # decided already: a task delivered twice changes nothing
        if claimed is not None:
            claimed.extend(b.pk for b in batch)
        for b in batch:
            if b.allocation_attempts >= MAX_ALLOCATION_ATTEMPTS and b.pk not in failed:
                failed[b.pk] = f"gave up after {b.allocation_attempts} failed attempts"
        to_decide = [b for b in batch if b.pk not in failed]
        # The old bookings of moves are booking rows too: locked next, before any resource.
        moves = moves_lock(to_decide)
        resources = _resources(to_decide)
        # Then the organisations' quota grants, all of them at once and sorted by primary key,
        # so that two batches can never wait on each other's grants.
        quotas = QuotaBook.open(organization_ids={b.organization_id for b in to_decide})
        load_batch(list(resources.values()))
        if settings.TESTBED_DECIDE_DELAY_MS:
            time.sleep(settings.TESTBED_DECIDE_DELAY_MS / 1000)  # fault drill only (see settings)

        pending_rows: list[Allocation] = []
        confirmed: dict[tuple[str, bool], list[int]] = defaultdict(list)
        for booking in batch:
            if booking.pk in failed:
                _write_rejection(
                    booking,
                    code=INTERNAL_ERROR,
                    detail=INTERNAL_ERROR_DETAIL,
                    alternatives=[],
                    now=now,
                )
                rejection = (INTERNAL_ERROR, INTERNAL_ERROR_DETAIL)
                outcomes.append(
                    Outcome(
                        booking,
                        BookingStatus.REJECTED,
                        rejection=rejection,
                        error=failed[booking.pk],
                    )
                )
                continue
            try:
                outcome, over_quota = _decide_one(
                    booking,
                    resources[_key(booking)],
                    quotas=quotas,
                    now=now,
                    pending_rows=pending_rows,
                    move=moves.get(booking.pk),
                )
            except (OperationalError, InterfaceError, IntegrityError):
                raise  # a lock timeout, the database going away, a race: not this booking's fault
            except Exception as exc:
                raise _DecisionFailed(booking.pk) from exc
            if outcome.status != BookingStatus.REJECTED:
                outcome.over_quota = over_quota
                confirmed[(outcome.status, over_quota)].append(booking.pk)
            outcomes.append(outcome)

        _flush(pending_rows)
        quotas.flush()
        for (new_status, over_quota), ids in confirmed.items():
            Booking.objects.filter(pk__in=ids).update(
                status=new_status,
                over_quota=over_quota,
                decided_at=now,
                updated_at=now,
                allocation_attempts=F("allocation_attempts") + 1,
            )
        audit(outcomes)
        on_commit_tell(outcomes, now)
    if len(outcomes) > 1:
        logger.info("allocate: decided %d bookings in one transaction", len(outcomes))
    asked = next((o.status for o in outcomes if o.booking.pk == booking_id), "")
    return asked, len(outcomes)


def _flush(rows: list[Allocation]) -> None:
    if rows:
        Allocation.objects.bulk_create(rows)
        rows.clear()


def _reject_failed(booking_id: int, *, error: str, now: dt.datetime) -> str:
    """Reject one pending booking that cannot be decided, touching nothing but its own row (and
    releasing any quota it holds): the way out when even deciding it alone fails."""
    with transaction.atomic(durable=True):
        set_lock_timeout(settings.TESTBED_LOCK_TIMEOUT_MS)
        booking = (
            Booking.objects.select_for_update(of=("self",))
            .select_related("user", "organization", "equipment_type", "pool")
            .filter(pk=booking_id)
            .first()
        )
        if booking is None:
            return "missing"
        if booking.status != BookingStatus.PENDING:
            return booking.status
        quota_release(booking=booking, now=now, reason="allocation failed")
        _write_rejection(
            booking, code=INTERNAL_ERROR, detail=INTERNAL_ERROR_DETAIL, alternatives=[], now=now
        )
        outcome = Outcome(
            booking,
            BookingStatus.REJECTED,
            rejection=(INTERNAL_ERROR, INTERNAL_ERROR_DETAIL),
            error=error,
        )
        audit([outcome])
        on_commit_tell([outcome])
    return BookingStatus.REJECTED


def _count_failed_attempt(booking_id: int) -> None:
    """One more failed try of a still-pending booking (bounded by MAX_ALLOCATION_ATTEMPTS)."""
    try:
        Booking.objects.filter(pk=booking_id, status=BookingStatus.PENDING).update(
            allocation_attempts=F("allocation_attempts") + 1
        )
    except Exception:  # the database is still away: the task's own error is what matters
        logger.warning("allocate %s: could not count the failed attempt", booking_id, exc_info=True)


def booking_allocate(*, booking_id: int, attempts: int = 5) -> str:
    """Decide a pending booking; returns the resulting status. Safe to call any number of times.

    Raises AllocationBusy on a lock timeout (the task retries) and a transient database error
    as it is (counted: after MAX_ALLOCATION_ATTEMPTS the booking is rejected instead). Any other
    error never escapes: the booking at fault is rejected as `internal_error` and the others
    are decided (see the module docstring).
    """
    # Under load most tasks find their booking decided by another task's batch: one plain read
    # answers them, without a transaction or a lock. A pending booking is read again under lock.
    row = (
        Booking.objects.filter(pk=booking_id)
        .order_by()
        .values_list("status", "allocation_attempts")
        .first()
    )
    if row is None:
        logger.warning("allocate: booking %s does not exist (deleted?)", booking_id)
        return "missing"
    status, tries = row
    if status != BookingStatus.PENDING:
        return status
    if tries >= MAX_ALLOCATION_ATTEMPTS:
        logger.error("allocate: booking %s failed %d times; rejecting it", booking_id, tries)
        return _reject_failed(
            booking_id, error=f"gave up after {tries} failed attempts", now=timezone.now()
        )
    failed: dict[int, str] = {}  # bookings whose decision raised: rejected in the next pass
    limit = settings.TESTBED_ALLOCATION_BATCH
    races = 0
    while True:
        try:
            return _decide(booking_id, now=timezone.now(), limit=limit, failed=failed)[0]
        except _DecisionFailed as exc:
            logger.exception(
                "allocate: deciding booking %s raised; rejecting it and deciding the rest again",
                exc.booking_id,
            )
            failed[exc.booking_id] = _summary(exc.__cause__)
            if len(failed) >= MAX_FAILED_PER_TASK:
                limit = 1  # many bad bookings: leave the others to their own tasks
        except IntegrityError as exc:
            # Only reachable when the exclusion constraint caught a race (locking turned off):
            # the rows of the winner are committed now, so deciding again sees them.
            races += 1
            logger.info(
                "allocate %s: constraint stopped a double booking (%s), deciding again",
                booking_id,
                exc,
            )
            if races >= attempts:
                raise AllocationBusy(str(exc)) from exc
        except (OperationalError, InterfaceError) as exc:
            if isinstance(exc, OperationalError) and "lock" in str(exc).lower():
                raise AllocationBusy(str(exc)) from exc
            if limit > 1:
                # Perhaps another booking of the batch (a statement it makes time out): this
                # task's own booking goes alone before a failure is counted against it.
                logger.warning("allocate %s: batch failed (%s), alone now", booking_id, exc)
                limit = 1
                continue
            _count_failed_attempt(booking_id)
            raise
        except Exception as exc:
            # Outside any one booking's decision (claiming, locking, reading the resources):
            # any booking of the batch may be at fault, so the task's own booking goes alone.
            if limit > 1:
                logger.exception(
                    "allocate: a batch of booking %s raised; deciding that booking alone",
                    booking_id,
                )
                limit = 1
                continue
            logger.exception(
                "allocate: booking %s cannot be decided even alone; rejecting it", booking_id
            )
            return _reject_failed(booking_id, error=_summary(exc), now=timezone.now())


def _decide_shard_batch(shard: int, *, attempts: int = 5) -> int:
    """Claim and decide one batch of the shard's pending bookings; how many were decided (0: none
    free to claim). The same isolation as booking_allocate: a booking whose decision raises is
    rejected as `internal_error` and the rest decided again; a batch that fails otherwise goes
    one booking at a time, and a booking that fails even alone is rejected."""
    failed: dict[int, str] = {}
    limit = settings.TESTBED_ALLOCATION_BATCH
    races = 0
    while True:
        claimed: list[int] = []
        try:
            return _decide(
                None,
                now=timezone.now(),
                limit=limit,
                failed=failed,
                shard=shard,
                claimed=claimed,
            )[1]
        except _DecisionFailed as exc:
            logger.exception(
                "allocate: deciding booking %s raised; rejecting it and deciding the rest again",
                exc.booking_id,
            )
            failed[exc.booking_id] = _summary(exc.__cause__)
            if len(failed) >= MAX_FAILED_PER_TASK:
                limit = 1
        except IntegrityError as exc:
            races += 1
            logger.info("allocate shard %s: constraint stopped a double booking (%s)", shard, exc)
            if races >= attempts:
                raise AllocationBusy(str(exc)) from exc
        except (OperationalError, InterfaceError) as exc:
            if isinstance(exc, OperationalError) and "lock" in str(exc).lower():
                raise AllocationBusy(str(exc)) from exc
            if limit > 1 and claimed:
                logger.warning("allocate shard %s: batch failed (%s), one at a time", shard, exc)
                limit = 1
                continue
            for booking_id in claimed:
                _count_failed_attempt(booking_id)
            raise
        except Exception as exc:
            if limit > 1 and claimed:
                logger.exception("allocate shard %s: a batch raised; one at a time now", shard)
                limit = 1
                continue
            if not claimed:
                raise  # before any booking was claimed: nothing to blame, the task fails
            logger.exception("allocate: booking %s cannot be decided even alone", claimed[0])
            _reject_failed(claimed[0], error=_summary(exc), now=timezone.now())
            return 1


def _has_free_pending(shard: int) -> bool:
    """Is anything pending in the shard that no other decider holds right now?"""
    with transaction.atomic():
        free = _pending(shard).select_for_update(skip_locked=True, of=("self",)).order_by()
        return bool(list(free.values_list("pk", flat=True)[:1]))


def allocation_run_shard(shard: int) -> int:
    """The body of the `allocate_shard` task: decide the shard until nothing is pending, then hand
    the flag back without losing a wake-up (the protocol of booking/services/wakeup.py). Returns
    how many bookings it decided."""
    decided = 0
    while True:
        while True:
            flag_renew(shard)
            done = _decide_shard_batch(shard)
            decided += done
            if done < settings.TESTBED_ALLOCATION_BATCH:
                break  # a short batch took all that was free; the check below sees newer ones
        flag_drop(shard)
        # Anything committed before a web process lost the SET NX is visible here.
        if not _has_free_pending(shard) or not flag_take(shard):
            return decided
