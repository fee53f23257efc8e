"""Configuration: the typed schema, the resolved RunSpec, and the checks of both."""
