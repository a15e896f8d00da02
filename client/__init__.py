"""The workhive client (see docs/client.md)."""
