//! The environment's `startup` services: started in every session of a task's machine (the
//! agent's, and the clean machine's where the checks run) before anything else runs there, each
//! waited for until its `ready` command passes. They end with the session.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use baton_core::Service;
use baton_sandbox::{
    Attached, BackgroundProcess, RefusedConnection, RunOutcome, RunRequest, Sandbox, SandboxError, SandboxSession,
};

use crate::snapshot::{STEP_OUTPUT, tail};

/// How long one try of a `ready` command may take.
const READY_TRY: Duration = Duration::from_secs(10);
/// Between tries.
const READY_PAUSE: Duration = Duration::from_millis(200);
/// What a background service may run for: as long as its session.
const SERVICE_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// A sandbox whose sessions start `services` first.
#[derive(Debug)]
pub(crate) struct WithServices<S> {
    inner: S,
    services: Vec<Service>,
}

impl<S: Sandbox> WithServices<S> {
    pub(crate) fn new(inner: S, services: Vec<Service>) -> WithServices<S> {
        WithServices { inner, services }
    }
}

#[derive(Debug)]
struct Serviced {
    session: Box<dyn SandboxSession>,
    /// Kept so that they run as long as the session; stopped with it.
    running: Mutex<Vec<Box<dyn BackgroundProcess>>>,
}

impl Drop for Serviced {
    fn drop(&mut self) {
        for service in self.running.get_mut().unwrap_or_else(|e| e.into_inner()).iter() {
            service.stop();
        }
    }
}

/// Starts `service` in `session` and waits until it is ready; the error says what it printed.
fn start(session: &dyn SandboxSession, service: &Service) -> Result<Box<dyn BackgroundProcess>, SandboxError> {
    let process = session.spawn(&RunRequest::shell(&service.command, SERVICE_LIFETIME))?;
    let started = Instant::now();
    let mut said = Vec::new();
    let failed = |said: &[u8], why: String| {
        let output = tail(&String::from_utf8_lossy(said), STEP_OUTPUT);
        SandboxError::Setup(format!("startup `{}` {why}; its output:\n{}", service.command, output.trim_end()))
    };
    loop {
        let news = process.read_new();
        said.extend_from_slice(&news.output);
        if let Some(code) = news.exit_code {
            return Err(failed(&said, format!("ended (exit code {code}) before it was ready")));
        }
        let Some(ready) = &service.ready else { return Ok(process) };
        let outcome = session.run(&RunRequest::shell(ready, READY_TRY))?;
        let _ = std::fs::remove_file(&outcome.output_file);
        if outcome.exit_code == 0 && outcome.stopped.is_none() {
            return Ok(process);
        }
        if started.elapsed() >= Duration::from_secs(service.timeout_secs) {
            process.stop();
            let why =
                format!("was not ready after {} s (`{ready}` exit code {})", service.timeout_secs, outcome.exit_code);
            return Err(failed(&said, why));
        }
        std::thread::sleep(READY_PAUSE);
    }
}

impl<S: Sandbox> Sandbox for WithServices<S> {
    fn run(&self, request: &RunRequest) -> Result<RunOutcome, SandboxError> {
        self.inner.run(request)
    }

    fn session(&self) -> Result<Box<dyn SandboxSession>, SandboxError> {
        let session = self.inner.session()?;
        let mut running = Vec::new();
        for service in &self.services {
            match start(session.as_ref(), service) {
                Ok(process) => running.push(process),
                Err(error) => {
                    running.iter().for_each(|process| process.stop());
                    return Err(error);
                }
            }
        }
        Ok(Box::new(Serviced { session, running: Mutex::new(running) }))
    }

    fn take_refused_connections(&self) -> Vec<RefusedConnection> {
        self.inner.take_refused_connections()
    }

    fn egress_socket(&self) -> Option<std::path::PathBuf> {
        self.inner.egress_socket()
    }
}

impl SandboxSession for Serviced {
    fn run(&self, request: &RunRequest) -> Result<RunOutcome, SandboxError> {
        self.session.run(request)
    }

    fn spawn(&self, request: &RunRequest) -> Result<Box<dyn BackgroundProcess>, SandboxError> {
        self.session.spawn(request)
    }

    fn attach(&self, request: &RunRequest) -> Result<Attached, SandboxError> {
        self.session.attach(request)
    }
}
