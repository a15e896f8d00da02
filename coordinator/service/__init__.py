"""The gRPC edge: translate between protobuf and the domain, nothing more."""
