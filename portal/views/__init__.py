"""Portal pages, one module per area: catalogue, bookings, organization, operations, accounts."""
