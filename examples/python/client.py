#!/usr/bin/python3
"""A modeld client in Python: list the server's models, then stream a generation.

modeld speaks plain gRPC, so any language with a gRPC library is a client. This one needs only
Debian's python3-grpcio and python3-protobuf (apt-get install python3-grpcio python3-protobuf)
and no generated code: the message classes are built at run time from modeld.binpb, the
FileDescriptorSet of proto/modeld/v1 that gen.sh writes with buf, and the RPCs are called by
their method paths with grpc's generic stubs (channel.unary_unary, channel.unary_stream).

Usage:
    client.py [--addr HOST:PORT] [--model NAME] [--max-new-tokens N] [--temperature T]
              [--top-k K] [--top-p P] [--seed S] [PROMPT]

It prints the table of models (ModelService/ListModels), then, given a PROMPT, the prompt and
its continuation as the tokens arrive (GenerateService/Generate, a server stream), and a summary
line: finish reason, token counts, time to first token and total time. Errors print the gRPC
status and exit 1; Ctrl-C cancels the call and exits 130.
"""

import argparse
import os
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

HERE = os.path.dirname(os.path.abspath(__file__))


def load_types(path):
    """Returns a function that maps a full message name to its class, and the pool."""
    fds = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        fds.ParseFromString(f.read())
    # A private pool: the set carries the well-known types it imports (buf build writes the
    # files in dependency order), so it is complete and cannot clash with the default pool.
    pool = descriptor_pool.DescriptorPool()
    for file_proto in fds.file:
        pool.Add(file_proto)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        get_class = message_factory.GetMessageClass
    else:  # older runtimes, e.g. Debian 12's python3-protobuf 3.21.12 (Python module 4.21.12)
        get_class = message_factory.MessageFactory(pool).GetPrototype

    def message(name):
        return get_class(pool.FindMessageTypeByName(name))

    return message, pool


def enum_name(pool, enum, number, prefix):
    """FINISH_REASON_LENGTH -> LENGTH, for people."""
    name = pool.FindEnumTypeByName(enum).values_by_number[number].name
    return name[len(prefix):] if name.startswith(prefix) else name


def seconds(duration):
    return duration.seconds + duration.nanos / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--addr", default=os.environ.get("MODELD_ADDR", "127.0.0.1:50051"),
                   help="server address (default $MODELD_ADDR or 127.0.0.1:50051)")
    p.add_argument("--model", default="", help="model name (default: the server's default model)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate (default 64)")
    p.add_argument("--temperature", type=float, help="sampling temperature; 0 is greedy (server default 1)")
    p.add_argument("--top-k", type=int, help="keep the k most likely tokens (server default: all)")
    p.add_argument("--top-p", type=float, help="nucleus sampling threshold (server default 1)")
    p.add_argument("--seed", type=int, help="seed, for reproducible sampling (server default: random)")
    p.add_argument("--timeout", type=float, default=120, help="deadline of each call in seconds (default 120)")
    p.add_argument("prompt", nargs="?", help="text to continue; without it, only list the models")
    args = p.parse_args()
    if args.max_new_tokens < 1:
        p.error("--max-new-tokens must be at least 1")

    message, pool = load_types(os.path.join(HERE, "modeld.binpb"))
    ListModelsRequest = message("modeld.v1.ListModelsRequest")
    ListModelsResponse = message("modeld.v1.ListModelsResponse")
    GenerateRequest = message("modeld.v1.GenerateRequest")
    GenerateResponse = message("modeld.v1.GenerateResponse")

    channel = grpc.insecure_channel(args.addr)
    list_models = channel.unary_unary(
        "/modeld.v1.ModelService/ListModels",
        request_serializer=ListModelsRequest.SerializeToString,
        response_deserializer=ListModelsResponse.FromString,
    )
    generate = channel.unary_stream(
        "/modeld.v1.GenerateService/Generate",
        request_serializer=GenerateRequest.SerializeToString,
        response_deserializer=GenerateResponse.FromString,
    )

    out = sys.stdout
    call = None
    try:
        resp = list_models(ListModelsRequest(), timeout=args.timeout)
        out.write("== models (ModelService/ListModels on %s)\n" % args.addr)
        out.write("%-20s %-10s %12s %12s %s\n" % ("NAME", "STATE", "PARAMETERS", "LAYERS/EMBD", "TOKENIZER"))
        for m in resp.models:
            out.write("%-20s %-10s %12d %12s %s\n" % (
                m.name,
                enum_name(pool, "modeld.v1.ModelState", m.state, "MODEL_STATE_").lower(),
                m.num_parameters,
                "%d/%d" % (m.config.n_layer, m.config.n_embd),
                "yes" if m.has_tokenizer else "no",
            ))
        if args.prompt is None:
            return 0

        req = GenerateRequest(model=args.model, prompt=args.prompt, max_new_tokens=args.max_new_tokens)
        # The sampling fields are proto3 `optional`: a field left unset takes the server's
        # default, so set only those given on the command line.
        if args.temperature is not None:
            req.sampling.temperature = args.temperature
        if args.top_k is not None:
            req.sampling.top_k = args.top_k
        if args.top_p is not None:
            req.sampling.top_p = args.top_p
        if args.seed is not None:
            req.sampling.seed = args.seed

        out.write("== generate (GenerateService/Generate, model %s)\n" % (args.model or "default"))
        out.write(args.prompt)
        out.flush()
        call = generate(req, timeout=args.timeout)
        last = None
        for r in call:  # one message per decoding step that produced text
            if r.text:
                out.write(r.text)
                out.flush()
            if r.finish_reason:
                last = r
        out.write("\n")
        if last is None:
            print("client.py: the stream ended without a final message", file=sys.stderr)
            return 1
        out.write("== finish_reason=%s prompt_tokens=%d completion_tokens=%d ttft=%.1fms total=%.1fms\n" % (
            enum_name(pool, "modeld.v1.FinishReason", last.finish_reason, "FINISH_REASON_"),
            last.usage.prompt_tokens,
            last.usage.completion_tokens,
            seconds(last.timings.time_to_first_token) * 1e3,
            seconds(last.timings.total) * 1e3,
        ))
        return 0
    except grpc.RpcError as e:
        out.flush()
        print("\nclient.py: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if call is not None:
            call.cancel()
        print("\nclient.py: interrupted", file=sys.stderr)
        return 130
    finally:
        channel.close()


if __name__ == "__main__":
    sys.exit(main())
