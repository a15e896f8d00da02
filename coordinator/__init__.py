"""The workhive coordinator: scheduling core, etcd state, election, gRPC services, CLI."""
