"""The gRPC server of a coordinator: services, health, reflection, keepalive.

Health: the overall service ("") and each workhive service report SERVING
while this replica can serve (it is connected to etcd), leader or not, so
Kubernetes rollouts never stall on standbys; ``enter_graceful_shutdown`` flips
everything to NOT_SERVING for good on SIGTERM.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from workhive.v1 import agent_pb2, agent_pb2_grpc, client_pb2, client_pb2_grpc

AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
CLIENT_SERVICE = client_pb2.DESCRIPTOR.services_by_name["ClientService"].full_name
SERVICES = ("", AGENT_SERVICE, CLIENT_SERVICE)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024

# Agents ping every 20 s on their session streams (agent/_session.py); accept it.
SERVER_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
)


def build_server(
    agent_servicer: agent_pb2_grpc.AgentServiceServicer,
    client_servicer: client_pb2_grpc.ClientServiceServicer,
    listen: str,
    *,
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, HealthServicer, int]:
    """Create (not start) the server; returns it, its health servicer, the bound port."""
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=list(interceptors))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(agent_servicer, server)
    client_pb2_grpc.add_ClientServiceServicer_to_server(client_servicer, server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *SERVICES[1:],
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if credentials is not None:
        port = server.add_secure_port(listen, credentials)
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    return server, health, port


async def set_serving(
    health: HealthServicer, serving: bool, services: Sequence[str] = SERVICES
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in services:
        await health.set(name, status)
