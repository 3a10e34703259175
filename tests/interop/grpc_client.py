#!/usr/bin/env python3
"""Call tokengate's gRPC API with grpcio, a client built from the proto alone.

Usage:
  grpc_client.py ADDR call METHOD JSON   one AuthApi call, e.g. Login '{"email": ...}'
  grpc_client.py ADDR health SERVICE     grpc.health.v1.Health/Check
  grpc_client.py ADDR reflect            the services and AuthApi's methods, by reflection

The AuthApi client is generated from proto/auth_api.proto with grpcio-tools
(`grpc_tools.protoc`) into a temporary directory on every run, so nothing
generated is kept and the client knows only what the proto says. Health uses
the stubs of grpcio-health-checking; reflection uses grpcio-reflection's
ProtoReflectionDescriptorDatabase, the way a generic tool discovers a server.

Prints one JSON object: `{"ok": {field: value}}` for a reply, or
`{"error": {"code": "ALREADY_EXISTS", "message": ..., "metadata": {...}}}` for a
gRPC error status — the caller judges both. Anything else (a bad proto, a
server that never accepts the connection) exits non-zero.
"""
import importlib
import json
import pathlib
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_tools import protoc

PROTO = pathlib.Path(__file__).resolve().parents[2] / "proto" / "auth_api.proto"
SERVICE = "realchat.auth.v1.AuthApi"
TIMEOUT = 10


def generate(out: str):
    """Compiles the proto into `out`; returns its messages and stubs modules."""
    include = str(pathlib.Path(protoc.__file__).parent / "_proto")
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO.parent}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO),
        ]
    )
    if status != 0:
        raise SystemExit(f"protoc failed on {PROTO} ({status})")
    sys.path.insert(0, out)
    return importlib.import_module("auth_api_pb2"), importlib.import_module("auth_api_pb2_grpc")


def fields(message) -> dict:
    """A message's fields by their proto names, numbers kept as numbers."""
    return {f.name: getattr(message, f.name) for f in message.DESCRIPTOR.fields}


def failure(error: grpc.RpcError) -> dict:
    metadata = {}
    for key, value in (error.initial_metadata() or ()) + (error.trailing_metadata() or ()):
        metadata[key] = value
    return {
        "error": {
            "code": error.code().name,
            "message": error.details(),
            "metadata": metadata,
        }
    }


def call(channel: grpc.Channel, method: str, request: dict) -> dict:
    with tempfile.TemporaryDirectory() as out:
        messages, stubs = generate(out)
        service = messages.DESCRIPTOR.services_by_name["AuthApi"]
        input_type = service.methods_by_name[method].input_type.name
        message = getattr(messages, input_type)(**request)
        stub = stubs.AuthApiStub(channel)
        try:
            reply = getattr(stub, method)(message, timeout=TIMEOUT)
        except grpc.RpcError as error:
            return failure(error)
        return {"ok": fields(reply)}


def health(channel: grpc.Channel, service: str) -> dict:
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
    except grpc.RpcError as error:
        return failure(error)
    return {"ok": {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}}


def reflect(channel: grpc.Channel) -> dict:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(database.get_services())
    # The descriptors come from the server alone: build a pool from them.
    pool = descriptor_pool.DescriptorPool(database)
    methods = {
        method.name: [method.input_type.full_name, method.output_type.full_name]
        for method in pool.FindServiceByName(SERVICE).methods
    }
    return {"ok": {"services": services, "methods": methods}}


def main() -> int:
    addr, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    with grpc.insecure_channel(addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        if command == "call":
            result = call(channel, args[0], json.loads(args[1]))
        elif command == "health":
            result = health(channel, args[0])
        elif command == "reflect":
            result = reflect(channel)
        else:
            raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
