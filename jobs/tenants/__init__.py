"""Tenants: the registry of tenant groups and tenants, onboarding, and the upload path."""
