// A Proxy-Wasm filter in AssemblyScript, built with the @gcoredev/proxy-wasm-sdk-as SDK. It
// does what examples/c/hello and examples/wat/hello.wat do:
//   - every request going upstream gets "x-hello: assemblyscript";
//   - every response gets "x-hello: assemblyscript" (replaced, so a response that already has
//     it keeps one);
//   - a request for exactly /hello (query ignored) is answered by the filter: 200, a short
//     body, content-type and x-hello.

// The SDK's exports: proxy_abi_version_0_2_1, malloc and the proxy_on_* callbacks.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";

import {
  Context,
  FilterHeadersStatusValues,
  Headers,
  RootContext,
  makeHeaderPair,
  registerRootContext,
  send_http_response,
  stream_context,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";

const HEADER = "x-hello";
const VALUE = "assemblyscript";
const LOCAL_PATH = "/hello";

class HelloRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Hello(context_id, this);
  }
}

class Hello extends Context {
  constructor(context_id: u32, root_context: HelloRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let path = stream_context.headers.request.get(":path");
    const q = path.indexOf("?");
    if (q >= 0) path = path.substring(0, q);
    if (path == LOCAL_PATH) {
      const reply: Headers = [
        makeHeaderPair("content-type", "text/plain; charset=utf-8"),
        makeHeaderPair(HEADER, VALUE),
      ];
      send_http_response(200, "hello_local", String.UTF8.encode("hello from an AssemblyScript filter\n"), reply);
      return FilterHeadersStatusValues.StopIteration;
    }
    stream_context.headers.request.add(HEADER, VALUE);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.replace(HEADER, VALUE);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => {
  return new HelloRoot(context_id);
}, "hello");
