"""All writes of the booking app. Named <noun>_<verb>, keyword-only, typed."""
