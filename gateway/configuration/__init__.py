"""Configuration: settings from a YAML file and ``FANOUT_*`` environment variables."""
