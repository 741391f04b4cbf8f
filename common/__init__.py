"""Zeitplan's shared code: the pure scheduling core and thin adapters to the services."""
