//! One runtime, for the life of the process, for the work done beside its main runtime: each
//! scheduled run (blocking a thread of its own) and each lease's keeper. A store's pool keeps a
//! network connection (PostgreSQL's) tied to the runtime that opened it, and every other runtime
//! may use it only while that one lives: runtimes made for one run and dropped after it would
//! leave broken connections in the pool shared with the rest of the process.

use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

/// The runtime's handle; `Handle::block_on` drives a future on the calling thread while the
/// runtime's own workers drive the connections and the tasks spawned meanwhile (the pool hands
/// each used connection back that way).
pub(crate) fn handle() -> Result<&'static Handle, String> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    let built = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("baton-background")
            .enable_all()
            .build()
            .map_err(|error| format!("no background runtime: {error}"))
    });
    built.as_ref().map(Runtime::handle).map_err(Clone::clone)
}
