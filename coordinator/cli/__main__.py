"""``python -m workhive.coordinator.cli`` == ``workhive``."""

from workhive.coordinator.cli import main

main()
