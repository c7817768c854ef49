"""Prices: a bundled dated snapshot, refreshed live from the Cloud Billing Catalog when possible."""
