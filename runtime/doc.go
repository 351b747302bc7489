// Package runtime holds what every plexus Wasm host needs whatever ABI it speaks: a wazero
// compilation cache shared by all modules (in memory, or on disk), per-module wazero
// runtimes with memory limits and termination checks, WASI preview1 under both of its
// module names, a bounded LIFO pool of instances with rate-limited restarts, a per-call
// deadline that costs no allocation, and the classification of a failed call (trap,
// timeout, memory, ABI).
//
// ABI packages (runtime/proxywasm, later runtime/httpwasm) build on it; see RATIONALE.md
// for why things are the way they are.
package runtime
