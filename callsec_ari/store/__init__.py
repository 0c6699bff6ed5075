"""Encrypted customer store, vault, GDPR tooling."""
