"""Models of integrations.webhooks."""
