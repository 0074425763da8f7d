"""Shared pytest fixtures: small synthetic data made by the project itself."""
