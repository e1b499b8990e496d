"""OTLP/gRPC trace receiver (port 4317) with Jaeger's `/api/services` (16686).

Stands in for jaegertracing/all-in-one in tests: it decodes just enough of
ExportTraceServiceRequest (protobuf) to count spans per `service.name`.
"""

import threading
from concurrent import futures

import grpc

from standin_http import serve_json

LOCK = threading.Lock()
SPANS = {}  # service name -> spans received


def fields(buf):
    """Yields (field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            size, i = varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield number, wire, value


def varint(buf, i):
    result = shift = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def service_name(resource):
    for number, _, kv in fields(resource):
        if number != 1:  # Resource.attributes
            continue
        key, value = None, None
        for n, _, v in fields(kv):
            if n == 1:
                key = v.decode("utf-8", "replace")
            elif n == 2:
                for an, _, av in fields(v):
                    if an == 1:  # AnyValue.string_value
                        value = av.decode("utf-8", "replace")
        if key == "service.name" and value:
            return value
    return "unknown_service"


def export(request, context):
    try:
        for number, _, resource_spans in fields(request):
            if number != 1:  # ExportTraceServiceRequest.resource_spans
                continue
            name, count = "unknown_service", 0
            for n, _, v in fields(resource_spans):
                if n == 1:
                    name = service_name(v)
                elif n == 2:  # ScopeSpans
                    count += sum(1 for sn, _, _ in fields(v) if sn == 2)
            with LOCK:
                SPANS[name] = SPANS.get(name, 0) + count
    except (IndexError, ValueError) as error:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request: %s" % error)
    return b""  # an empty ExportTraceServiceResponse


def query(path):
    """Jaeger's `/api/services`, and the span counts per service."""
    with LOCK:
        services = sorted(SPANS)
        spans = dict(SPANS)
    if path == "/api/services":
        return {"data": services, "total": len(services), "limit": 0, "offset": 0, "errors": None}
    if path == "/standin/spans":
        return spans
    return None


def main():
    identity = lambda b: b  # noqa: E731
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export, identity, identity)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("0.0.0.0:4317")
    server.start()
    print("OTLP/gRPC on :4317, /api/services on :16686", flush=True)
    serve_json(16686, query)


if __name__ == "__main__":
    main()
