"""A whole workhive cluster on one machine, as processes: embedded etcd,
coordinators and agents on free loopback ports. Used by ``workhive up`` and by
the end-to-end and failover tests; it never touches etcd's data itself."""
