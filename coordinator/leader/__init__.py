"""The leader: drives the scheduling core from etcd and agent sessions and
executes its commands as fenced, batched etcd transactions."""
