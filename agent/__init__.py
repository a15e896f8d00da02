"""The workhive agent SDK: connect to coordinators, heartbeat, run tasks."""
