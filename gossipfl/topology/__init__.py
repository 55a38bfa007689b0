"""Peer table, bandwidth estimation, partner selectors and discovery."""
