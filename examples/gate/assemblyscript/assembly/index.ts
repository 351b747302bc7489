// The gate example in AssemblyScript, on the upstream npm SDK (@gcoredev/proxy-wasm-sdk-as):
// it counts every request in the metric gate_requests, answers one that carries
// x-deny: yes with 403 itself, and marks the others, and their responses, with
// x-gate: assemblyscript; with sdk/assemblyscript it counts the allowed ones in a counter
// every replica shares, whose value the response carries as x-gate-count; and
// x-gate-backend: NAME sends the request to that backend (with a timeout and a retry
// policy). See ../README.md.

// The SDK's exports: proxy_abi_version_0_2_1, malloc and the proxy_on_* callbacks.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";

import {
  Context,
  Counter,
  FilterHeadersStatusValues,
  Headers,
  RootContext,
  makeHeaderPair,
  registerRootContext,
  send_http_response,
  stream_context,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";
import { counterIncr, lastStatus, OK, RETRY_5XX, setBackend, setRetry, setTimeout } from "../../../../sdk/assemblyscript/assembly/index";

const NAME = "x-gate";
const LANG = "assemblyscript";

class GateRoot extends RootContext {
  requests: Counter | null = null;

  onConfigure(configuration_size: u32): bool {
    this.requests = new Counter("gate_requests");
    return true;
  }

  createContext(context_id: u32): Context {
    return new Gate(context_id, this);
  }
}

class Gate extends Context {
  gate: GateRoot;
  count: string = "";

  constructor(context_id: u32, root_context: GateRoot) {
    super(context_id, root_context);
    this.gate = root_context;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const requests = this.gate.requests;
    if (requests != null) requests.increment(1);
    if (stream_context.headers.request.get("x-deny") == "yes") {
      const reply: Headers = [makeHeaderPair(NAME, LANG)];
      send_http_response(403, "gate_denied", String.UTF8.encode("denied by " + LANG + "\n"), reply);
      return FilterHeadersStatusValues.StopIteration;
    }
    stream_context.headers.request.add(NAME, LANG);
    const n = counterIncr("gate:allowed", 1, 0);
    if (lastStatus == OK) this.count = n.toString();
    const backend = stream_context.headers.request.get("x-gate-backend");
    if (backend != "") {
      // The request's routing, through plexus: this backend, a 5s bound, one retry.
      setBackend(backend);
      setTimeout(5000);
      setRetry(2, RETRY_5XX, 0, 0);
    }
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add(NAME, LANG);
    stream_context.headers.response.add("x-gate-count", this.count);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => {
  return new GateRoot(context_id);
}, "gate");
