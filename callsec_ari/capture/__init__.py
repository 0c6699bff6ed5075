"""Secure DTMF capture: field rules, entry, sinks and the capture service."""
