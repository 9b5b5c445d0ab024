"""A stock gRPC reflection client against a node's API port (tests/grpc_api.rs).

Uses grpcio-reflection's own descriptor database (it speaks reflection v1alpha, as many tools
still do): lists the services, then calls raftsentinel.v1.Coordinator/GetMaster by name with
the request built from the reflected descriptors, without any .proto file.

Usage: grpc_reflection_client.py HOST:PORT MASTER_NAME
Prints one JSON object: {"services": [...], "reply": {...}}. A bearer token for the API may be
given in the environment variable RAFT_SENTINEL_PASSWORD.
"""

import json
import os
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "raftsentinel.v1.Coordinator"


def main() -> int:
    target, name = sys.argv[1], sys.argv[2]
    channel = grpc.insecure_channel(target)
    db = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(db.get_services())
    pool = descriptor_pool.DescriptorPool(db)
    method = pool.FindServiceByName(SERVICE).FindMethodByName("GetMaster")
    request_cls = message_factory.GetMessageClass(method.input_type)
    reply_cls = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        f"/{SERVICE}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=reply_cls.FromString,
    )
    metadata = []
    token = os.environ.get("RAFT_SENTINEL_PASSWORD")
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    reply = call(request_cls(name=name), timeout=5, metadata=metadata)
    print(
        json.dumps(
            {
                "services": services,
                "reply": json_format.MessageToDict(reply, preserving_proto_field_name=True),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
