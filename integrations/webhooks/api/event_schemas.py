"""What each webhook event's body looks like: OpenAPI components and the `x-webhooks` section.

Every delivery's body is {"type", "timestamp", "data"}; `data` per type is described here (the
producers are booking.events.booking_data / maintenance_data and the quota reminder). The
postprocessing hook `postprocess_webhook_events` (SPECTACULAR_SETTINGS) adds one component per
event type (`WebhookEvent_booking_confirmed`, ...) and an `x-webhooks` map from type to component;
docs/webhooks.md shows the same examples. tests/integrations/webhooks/test_schema.py checks the
examples against real event bodies.
"""

from __future__ import annotations

from typing import Any

from booking.events import PUBLIC_EVENTS

DATETIME = {"type": "string", "format": "date-time"}
NULLABLE_STRING = {"type": "string", "nullable": True}

BOOKING = {
    "type": "object",
    "description": "The booking as it is after the event (no price, no other organisation).",
    "properties": {
        "id": {"type": "integer"},
        "status": {
            "type": "string",
            "description": "pending, awaiting_approval, confirmed, rejected, active, completed, "
            "cancelled or no_show.",
        },
        "organization": {"type": "string", "description": "The organisation's slug."},
        "booked_by": {
            "type": "string",
            "description": "Username of the booker (or API key account).",
        },
        "resource": {
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": ["equipment", "pool"]},
                "code": NULLABLE_STRING,
            },
            "required": ["kind", "code"],
        },
        "quantity": {"type": "integer"},
        "start": DATETIME,
        "end": DATETIME,
        "rejection_code": {
            **NULLABLE_STRING,
            "description": "Why it was refused (capacity, quota_exceeded, operator_rejected, ...).",
        },
        "url": {"type": "string", "description": "The booking's page in the portal."},
    },
    "required": [
        "id",
        "status",
        "organization",
        "booked_by",
        "resource",
        "quantity",
        "start",
        "end",
    ],
}

BOOKING_EXAMPLE = {
    "booking": {
        "id": 4711,
        "status": "confirmed",
        "organization": "acme",
        "booked_by": "kim",
        "resource": {"kind": "pool", "code": "NAIDC-H100"},
        "quantity": 8,
        "start": "2026-12-08T09:00:00+09:00",
        "end": "2026-12-08T21:00:00+09:00",
        "rejection_code": None,
        "url": "https://testbed.example.kr/bookings/4711/",
    }
}


def _booking_event(
    description: str, status: str, *, extra: dict[str, int] | None = None, **changes: Any
) -> dict:
    """`extra`: top-level integer fields beside `booking` (their example values)."""
    example: dict[str, Any] = {
        "booking": {**BOOKING_EXAMPLE["booking"], "status": status, **changes}
    }
    example |= extra or {}
    return {
        "description": description,
        "data": {
            "type": "object",
            "properties": {
                "booking": BOOKING,
                **{name: {"type": "integer"} for name in (extra or {})},
            },
            "required": ["booking"],
            "additionalProperties": True,
        },
        "example": example,
    }


MAINTENANCE = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "target": {
            "type": "object",
            "nullable": True,
            "properties": {
                "kind": {"type": "string", "enum": ["equipment_type", "unit", "pool", "node"]},
                "id": {"type": "integer"},
                "name": {"type": "string"},
            },
        },
        "start": DATETIME,
        "end": DATETIME,
        "reason": {"type": "string"},
    },
    "required": ["id", "target", "start", "end", "reason"],
}

EVENTS: dict[str, dict[str, Any]] = {
    "booking.confirmed": _booking_event(
        "A booking was confirmed: by the allocator, or by an operator's approval.", "confirmed"
    ),
    "booking.rejected": _booking_event(
        "A booking was refused (no capacity, quota, an operator, or it expired undecided): "
        "`rejection_code` says why.",
        "rejected",
        rejection_code="unavailable",
    ),
    "booking.cancelled": _booking_event(
        "A booking was cancelled: by its booker, a manager or an operator, or because it was "
        "moved (then `moved_to` names the booking that replaced it, sent as booking.moved).",
        "cancelled",
    ),
    "booking.moved": _booking_event(
        "A booking was moved to a new window: this is the new booking; `moved_from` names the old "
        "one, which is cancelled (a booking.cancelled with `moved_to` is sent for it too).",
        "confirmed",
        extra={"moved_from": 4711},
        id=4712,
        url="https://testbed.example.kr/bookings/4712/",
    ),
    "booking.no_show": _booking_event(
        "Nobody checked in within the grace period: the booking was released.", "no_show"
    ),
    "booking.reclaimed": _booking_event(
        "The accelerators of a booking stood idle and an operator reclaimed them.", "completed"
    ),
    "approval.requested": _booking_event(
        "A booking of equipment that needs approval waits for an operator.", "awaiting_approval"
    ),
    "quota.threshold": {
        "description": "A quota grant reached 80 % or 100 % of its limit (told once per threshold).",
        "data": {
            "type": "object",
            "properties": {
                "grant": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "scope": {
                            "type": "string",
                            "description": "Resource or centre code, or *.",
                        },
                        "enforcement": {"type": "string", "enum": ["hard", "soft"]},
                        "period_start": {"type": "string", "format": "date"},
                        "period_end": {"type": "string", "format": "date"},
                        "limit_hours": {"type": "string", "description": "Decimal, unit-hours."},
                    },
                    "required": [
                        "id",
                        "scope",
                        "enforcement",
                        "period_start",
                        "period_end",
                        "limit_hours",
                    ],
                },
                "threshold_percent": {"type": "integer", "enum": [80, 100]},
                "used_hours": {"type": "string", "description": "Decimal: held + consumed."},
            },
            "required": ["grant", "threshold_percent", "used_hours"],
        },
        "example": {
            "grant": {
                "id": 12,
                "scope": "NAIDC-H100",
                "enforcement": "hard",
                "period_start": "2026-01-01",
                "period_end": "2026-12-31",
                "limit_hours": "1000.0000",
            },
            "threshold_percent": 80,
            "used_hours": "812.0000",
        },
    },
    "maintenance.scheduled": {
        "description": "Operators scheduled maintenance over bookings of your organisation "
        "(told once per organisation, with only its own bookings).",
        "data": {
            "type": "object",
            "properties": {
                "maintenance": MAINTENANCE,
                "affected_bookings": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["maintenance", "affected_bookings"],
        },
        "example": {
            "maintenance": {
                "id": 31,
                "target": {"kind": "node", "id": 7, "name": "naidc-h100-007"},
                "start": "2026-12-10T09:00:00+09:00",
                "end": "2026-12-10T18:00:00+09:00",
                "reason": "GPU 펌웨어 업데이트",
            },
            "affected_bookings": [4711],
        },
    },
}
assert tuple(EVENTS) == PUBLIC_EVENTS, "every public event needs its documented body"

TEST_EVENT_DOC = {
    "description": "Sent only by the test-delivery action, to the one endpoint it names.",
    "data": {
        "type": "object",
        "properties": {
            "endpoint": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "url": {"type": "string"}},
            },
            "organization": {"type": "string"},
            "message": {"type": "string"},
        },
    },
    "example": {
        "endpoint": {"id": 3, "url": "https://example.kr/hooks/testbed"},
        "organization": "acme",
        "message": "테스트 전송입니다 / This is a test delivery from testbed.",
    },
}


def component_name(event_type: str) -> str:
    return "WebhookEvent_" + event_type.replace(".", "_")


def event_component(event_type: str, doc: dict) -> dict:
    return {
        "type": "object",
        "description": f"Body of a `{event_type}` delivery. {doc['description']} Headers: "
        "webhook-id (the event id, the same on every retry), webhook-timestamp, "
        "webhook-signature (Standard Webhooks, v1 HMAC-SHA256).",
        "properties": {
            "type": {"type": "string", "enum": [event_type]},
            "timestamp": {**DATETIME, "description": "When the event happened."},
            "data": doc["data"],
        },
        "required": ["type", "timestamp", "data"],
        "example": {
            "type": event_type,
            "timestamp": "2026-12-01T10:15:02.123456+09:00",
            "data": doc["example"],
        },
    }


def postprocess_webhook_events(result: dict, generator, request, public) -> dict:
    """drf-spectacular hook: a component per event body, and `x-webhooks` naming them."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    hooks: dict[str, Any] = {}
    for event_type, doc in [*EVENTS.items(), ("webhook.test", TEST_EVENT_DOC)]:
        name = component_name(event_type)
        schemas[name] = event_component(event_type, doc)
        hooks[event_type] = {
            "post": {
                "summary": doc["description"],
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                    }
                },
                "responses": {
                    "2XX": {"description": "Received (any 2xx); anything else is retried."}
                },
            }
        }
    result["x-webhooks"] = hooks
    return result
