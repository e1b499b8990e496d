#!/usr/bin/env python3
"""An independent gRPC client (Python grpcio, not our Rust code) that learns a
server's API through reflection alone and calls it, as grpcurl would.

    grpc_probe.py ADDR list
    grpc_probe.py ADDR health [SERVICE]
    grpc_probe.py ADDR call FULL.SERVICE/Method 'JSON'

`call` prints the response as JSON, or `ERROR <CODE> <message>` and exits 1.
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main():
    address, command, *rest = sys.argv[1:]
    channel = grpc.insecure_channel(address)
    if command == "health":
        service = rest[0] if rest else ""
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        print(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
        return 0
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)
    if command == "list":
        for name in sorted(database.get_services()):
            print(name)
        return 0
    if command == "call":
        full_method, body = rest
        service_name, method_name = full_method.split("/")
        method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        request = json_format.Parse(body, request_type())
        call = channel.unary_unary(
            f"/{service_name}/{method_name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        try:
            response = call(request, timeout=10)
        except grpc.RpcError as error:
            print(f"ERROR {error.code().name} {error.details()}")
            return 1
        print(json.dumps(json_format.MessageToDict(response), sort_keys=True))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
