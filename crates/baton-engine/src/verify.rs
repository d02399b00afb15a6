//! Verification: the agent's machine stopped, protected files restored, the work committed, the
//! acceptance checks run on a clean machine over that commit (see `clean.rs`), and the verdict
//! (verified with that commit, feedback to the agent, or out of attempts).

use std::time::{Duration, Instant};

use baton_core::{CheckSpec, Event, Phase, Status, StopReason, TaskState};
use baton_sandbox::{RunRequest, Sandbox};

use crate::environment::{Resolved, SETUP_TIMEOUT, TaskEnvironment};
use crate::journal::Journal;
use crate::services::WithServices;
use crate::snapshot::{Caches, tail};
use crate::{Admission, Engine, EngineError, Machine};

/// Output kept from a check for the journal and the agent.
const CHECK_OUTPUT: usize = 4096;

/// True when a check's output says it ran no test at all (a runner that found nothing exits 0 in
/// some frameworks): such a check proves nothing, so it does not pass.
fn ran_no_test(output: &str) -> bool {
    let cargo_results: Vec<&str> = output.lines().filter(|l| l.trim_start().starts_with("test result:")).collect();
    let cargo_empty =
        !cargo_results.is_empty() && cargo_results.iter().all(|l| l.contains(" 0 passed") && l.contains(" 0 failed"));
    let others = ["Ran 0 tests", "collected 0 items", "no tests ran", "No tests found", "0 tests, 0 assertions"];
    // Mocha's summary is indented: `  0 passing (2ms)`.
    let mocha_empty = output.lines().any(|line| line.trim_start().starts_with("0 passing"));
    cargo_empty || mocha_empty || others.iter().any(|marker| output.contains(marker))
}

/// What the harness tells the agent after failed checks.
fn feedback(state: &TaskState) -> String {
    let checks = &state.work.last_checks;
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    let mut text = format!(
        "baton ran the acceptance checks: {} of {} failed. They ran on a clean machine: a fresh checkout of \
         your committed work (files git ignores are not in it) with a fresh home (nothing you installed or \
         changed in your own machine is there); your shell session and background processes were stopped.\n",
        failed.len(),
        checks.len()
    );
    if !state.work.restored.is_empty() {
        text.push_str(&format!(
            "\nThese files are protected and were put back as they were before the checks ran: {}. Do not change them; fix the code instead.\n",
            state.work.restored.join(", ")
        ));
    }
    for check in failed {
        text.push_str(&format!(
            "\n## `{}` failed (exit code {}, {:.1} s)\n```\n{}\n```\n",
            check.name,
            check.exit_code,
            check.duration_ms as f64 / 1000.0,
            check.output.trim_end()
        ));
    }
    text.push_str("\nFind the cause, fix it, and call `finish` again.");
    text
}

impl Engine {
    /// Runs the checks. Returns true when the task has ended (verified, or out of attempts).
    pub(crate) async fn verify(
        &self,
        journal: &mut Journal<'_>,
        machine: Machine<'_>,
        summary: &str,
    ) -> Result<bool, EngineError> {
        let Machine { toolbox, clean, worktree, environment, snapshots } = machine;
        if journal.state().status() != Status::Verifying {
            journal.append(Event::VerificationStarted).await?;
        }
        let spec = journal.state().spec.clone();
        // No check runs, and nothing is committed, over a worktree that holds a repository of the
        // agent's: git would run what its configuration names.
        let embedded = worktree.embedded_repositories()?;
        if !embedded.is_empty() {
            let refused = baton_git::GitError::EmbeddedRepositories(embedded);
            return self.not_checked(journal, format!("The checks did not run: {refused}.")).await;
        }
        // Nothing the agent started may touch the work while it is checked.
        toolbox.stop_sessions();
        let tampered = worktree.changed_since(&journal.state().base_commit, &spec.protect)?;
        if !tampered.is_empty() {
            worktree.restore(&journal.state().base_commit, &tampered)?;
            journal.append(Event::ProtectedRestored { paths: tampered }).await?;
        }
        if spec.checks.is_empty() {
            let detail = "no acceptance checks are configured, so nothing can verify the work".to_owned();
            journal.append(Event::Finished { reason: StopReason::ChecksFailed, detail }).await?;
            return Ok(true);
        }
        // The candidate: all of the agent's work, protected files as they were. It is what the
        // clean machine checks out, and what is marked verified if the checks pass.
        let message = format!("baton: {}\n\n{summary}", spec.request.lines().next().unwrap_or("task"));
        let candidate = match worktree.commit_all(&message)? {
            Some(commit) => commit,
            None => worktree.head()?,
        };
        // The environment the candidate declares: the agent may have changed it, and the review
        // is told. One built for the agent's declaration gets no kept cache it could poison.
        let own = &self.config.own_credentials;
        let resolved = match Resolved::read(worktree, &candidate, spec.environment.as_deref(), own) {
            Ok(resolved) => resolved,
            Err(EngineError::Environment(error)) => {
                return self.not_checked(journal, format!("The checks did not run: your commit's {error}")).await;
            }
            Err(error) => return Err(error),
        };
        let changed;
        let environment = if resolved.hash() == environment.hash {
            environment
        } else {
            let git_dir = worktree.common_dir()?;
            let source = resolved.source(worktree, &git_dir, &candidate);
            match TaskEnvironment::prepare(snapshots, &resolved, source, Caches::Fresh) {
                Ok(prepared) => {
                    for event in prepared.events.clone() {
                        journal.append(event).await?;
                    }
                    changed = prepared;
                    &changed
                }
                Err(EngineError::Setup(failure)) => {
                    let text = format!("The checks did not run: your commit changes the environment, and {failure}");
                    return self.not_checked(journal, text).await;
                }
                Err(error) => return Err(error),
            }
        };
        let built = clean.build(worktree, &candidate, environment.lower.clone()).and_then(|built| {
            let clean_machine = WithServices::new(built, environment.declared.startup.clone());
            let session = clean_machine.session()?;
            Ok((clean_machine, session))
        });
        let (clean_machine, session) = match built {
            Ok(built) => built,
            Err(error) => {
                let detail = format!("the clean machine for the checks could not be built: {error}");
                self.pause(journal, worktree, StopReason::EnvironmentError, detail).await?;
                return Ok(true);
            }
        };
        // What the repository declares the clean machine needs comes first, each step reported like a
        // check; one that fails (the agent's work may be what broke it) stops the rest.
        let setup = environment.declared.after_checkout.iter().map(|command| CheckSpec {
            name: format!("after_checkout `{command}`"),
            command: command.clone(),
            timeout_secs: SETUP_TIMEOUT.as_secs(),
        });
        let setup: Vec<CheckSpec> = setup.collect();
        for (index, check) in setup.iter().chain(&spec.checks).enumerate() {
            let key = format!("check `{}` #{}", check.name, journal.state().next_seq);
            let hold = self.config.rates.charges(check.timeout_secs, 1);
            if let Admission::Refused(refusal) = self.start_charged(journal, Vec::new(), &key, hold).await? {
                self.pause(journal, worktree, StopReason::BudgetExhausted, refusal.to_string()).await?;
                return Ok(true);
            }
            let start = Instant::now();
            let outcome = session.run(&RunRequest::shell(&check.command, Duration::from_secs(check.timeout_secs)))?;
            let _ = std::fs::remove_file(&outcome.output_file);
            let text = outcome.output.text();
            // A setup step is not a test: only checks must show they ran one.
            let phase = if index < setup.len() { Phase::AfterCheckout } else { Phase::Check };
            let empty = phase == Phase::Check && ran_no_test(&text);
            let passed = outcome.exit_code == 0 && outcome.stopped.is_none() && !empty;
            let mut output = tail(&text, CHECK_OUTPUT);
            if empty {
                output.push_str("\n[baton: this check ran no test, so it cannot pass]");
            }
            if outcome.stopped.is_some() {
                output.push_str(&format!("\n[stopped: {:?}]", outcome.stopped));
            }
            let used_secs = crate::calls::sandbox_seconds(start.elapsed(), check.timeout_secs);
            self.settle(journal, &key, self.config.rates.charges(used_secs, 1))?;
            for refusal in clean_machine.take_refused_connections() {
                journal.append(Event::ConnectionRefused { host: refusal.host, port: refusal.port, phase }).await?;
            }
            let event = Event::CheckFinished {
                name: check.name.clone(),
                exit_code: outcome.exit_code,
                passed,
                output,
                duration_ms: start.elapsed().as_millis() as u64,
                environment: environment.hash.clone(),
            };
            journal.append(event).await?;
            if !passed && phase == Phase::AfterCheckout {
                break;
            }
        }
        let state = journal.state();
        let passed = state.work.last_checks.iter().all(|c| c.passed);
        if passed {
            let count = state.work.last_checks.len();
            // An environment the agent changed is part of what judged its work: the verdict says so.
            let changed = if environment.hash == machine.environment.hash {
                String::new()
            } else {
                format!(", changed by the agent from {}", machine.environment.short_hash())
            };
            let evidence = format!(
                "{count} of {count} checks passed on a clean checkout of this commit (environment {}{changed})",
                environment.short_hash()
            );
            self.checkpointed(journal, candidate, evidence).await?;
            return self.review(journal, machine, summary).await;
        }
        if state.work.verifications >= self.config.max_verifications {
            let detail = format!("the checks failed {} times", state.work.verifications);
            journal.append(Event::Finished { reason: StopReason::ChecksFailed, detail }).await?;
            return Ok(true);
        }
        let text = feedback(state);
        journal.append(Event::Resumed { detail: "the checks failed; the agent continues".into() }).await?;
        journal.append(Event::Feedback { text }).await?;
        Ok(false)
    }

    /// The checks could not run on the agent's work for a reason the agent can fix: it is told
    /// `text` and goes on, unless it is out of attempts.
    async fn not_checked(&self, journal: &mut Journal<'_>, text: String) -> Result<bool, EngineError> {
        if journal.state().work.verifications >= self.config.max_verifications {
            let detail = text.trim_start_matches("The checks did not run: ").to_owned();
            let detail = format!("the checks could not run: {detail}");
            journal.append(Event::Finished { reason: StopReason::ChecksFailed, detail }).await?;
            return Ok(true);
        }
        journal.append(Event::Resumed { detail: "the checks could not run; the agent continues".into() }).await?;
        journal.append(Event::Feedback { text }).await?;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn checks_that_run_no_test_are_recognised() {
        let cargo_none = "running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored\n";
        assert!(super::ran_no_test(cargo_none));
        let cargo_some = "test result: ok. 3 passed; 0 failed\n   Doc-tests x\ntest result: ok. 0 passed; 0 failed\n";
        assert!(!super::ran_no_test(cargo_some));
        assert!(super::ran_no_test("----\nRan 0 tests in 0.000s\n\nOK\n"));
        assert!(super::ran_no_test("collected 0 items\n"));
        assert!(!super::ran_no_test("all tests passed\n"));
    }

    #[test]
    fn mochas_indented_empty_summary_is_recognised() {
        assert!(super::ran_no_test("\n\n  0 passing (2ms)\n\n"));
        assert!(!super::ran_no_test("\n  add\n    ✓ adds\n\n  10 passing (4ms)\n"));
    }
}
