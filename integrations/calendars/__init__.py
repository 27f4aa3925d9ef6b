"""Calendar feeds (iCal) of bookings behind secret tokens: per user, per organisation, per resource."""
