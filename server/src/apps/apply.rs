//! Carrying out a plan on the engine, in an order that keeps the app's
//! previous container as long as possible: a recreation creates the new
//! container first, swaps, and only removes the old one once the new one
//! runs. If the new one fails to start, the old one is started again.
//!
//! With `update_order: start-first` the new container starts, and takes the
//! app's name, while the old one still serves; only then does the old one
//! stop. Behind the proxy, a redeploy (a rotated secret, say) drops nothing.

use std::time::Duration;

use app::api::{ActionKind, AppSpec, DesiredState, PlannedAction, UpdateOrder};

use super::engine::{Engine, EngineError, Observed};

/// The temporary name of a replacement container during a swap.
pub const NEXT_SUFFIX: &str = "_next";
/// The old container's name during a start-first swap.
pub const PREV_SUFFIX: &str = "_prev";
/// How long a start-first swap waits for the new container to run (and be
/// healthy, when it has a health check).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a new container without a health check must keep running.
const STABLE: Duration = Duration::from_secs(2);
/// After the new container takes the name, the old one keeps serving this
/// long: the proxy follows Docker's events and re-resolves in milliseconds.
const SWAP_GRACE: Duration = Duration::from_secs(1);

/// A failed step, worded for the admin.
pub type StepError = String;

fn say(step: &str, e: EngineError) -> StepError {
    format!("{step}: {e}")
}

pub struct Target<'a> {
    pub spec: &'a AppSpec,
    pub hash: &'a str,
    pub stack: Option<&'a str>,
    pub current: Option<&'a Observed>,
    pub strays: &'a [Observed],
    /// Decrypted secrets for the environment of a new container.
    pub secrets: &'a crate::secrets::Injected,
}

/// Runs `actions` in order; returns the steps done before any failure.
pub async fn execute(
    engine: &Engine,
    t: &Target<'_>,
    actions: &[PlannedAction],
) -> Result<(), StepError> {
    let mut strays = t.strays.iter();
    let mut created: Option<String> = None;
    for step in actions {
        match step.action {
            ActionKind::Remove => {
                // Strays come first in a plan; a plan for deletion removes the
                // app's own container.
                let id = match strays.next() {
                    Some(stray) => &stray.id,
                    None => match t.current {
                        Some(c) => &c.id,
                        None => continue,
                    },
                };
                engine
                    .remove(id)
                    .await
                    .map_err(|e| say("removing a container", e))?;
            }
            ActionKind::Create => {
                engine
                    .ensure_dependencies(t.spec)
                    .await
                    .map_err(|e| say("preparing networks and volumes", e))?;
                let id = engine
                    .create(t.spec, t.hash, t.stack, &t.spec.name, t.secrets)
                    .await
                    .map_err(|e| say("creating the container", e))?;
                created = Some(id);
            }
            ActionKind::Start => {
                let id = created
                    .as_deref()
                    .or(t.current.map(|c| c.id.as_str()))
                    .ok_or("nothing to start")?;
                engine
                    .start(id)
                    .await
                    .map_err(|e| say("starting the container", e))?;
            }
            ActionKind::Stop => {
                if let Some(c) = t.current {
                    engine
                        .stop(&c.id)
                        .await
                        .map_err(|e| say("stopping the container", e))?;
                }
            }
            ActionKind::Restart => {
                if let Some(c) = t.current {
                    engine
                        .restart(&c.id)
                        .await
                        .map_err(|e| say("restarting the container", e))?;
                }
            }
            ActionKind::Recreate => recreate(engine, t).await?,
        }
    }
    Ok(())
}

async fn recreate(engine: &Engine, t: &Target<'_>) -> Result<(), StepError> {
    let Some(old) = t.current else {
        return Err("no container to recreate".into());
    };
    engine
        .ensure_dependencies(t.spec)
        .await
        .map_err(|e| say("preparing networks and volumes", e))?;
    let next_name = format!("{}{NEXT_SUFFIX}", t.spec.name);
    let new_id = engine
        .create(t.spec, t.hash, t.stack, &next_name, t.secrets)
        .await
        .map_err(|e| say("creating the new container (the old one still runs)", e))?;

    let was_running = old.running;
    if was_running
        && t.spec.update_order == UpdateOrder::StartFirst
        && t.spec.state == DesiredState::Running
    {
        return start_first(engine, t, old, &new_id).await;
    }
    if was_running {
        if let Err(e) = engine.stop(&old.id).await {
            let _ = engine.remove(&new_id).await;
            return Err(say("stopping the old container (it still runs)", e));
        }
    }
    crate::fault::pause_point("apply.recreate.after_stop").await;

    if t.spec.state == DesiredState::Running {
        if let Err(e) = engine.start(&new_id).await {
            let _ = engine.remove(&new_id).await;
            let restored = if was_running {
                match engine.start(&old.id).await {
                    Ok(()) => "the previous container is running again",
                    Err(_) => "the previous container could not be started again",
                }
            } else {
                "the previous container is left as it was"
            };
            return Err(format!(
                "the new container failed to start: {e}; {restored}"
            ));
        }
    }
    // From here the new container serves; the old one only has to go.
    engine
        .remove(&old.id)
        .await
        .map_err(|e| say("removing the old container", e))?;
    engine
        .rename(&new_id, &t.spec.name)
        .await
        .map_err(|e| say("renaming the new container", e))?;
    Ok(())
}

/// The new container runs, becomes the app, and only then the old one stops.
/// Any failure before the names swap leaves the old container serving.
async fn start_first(
    engine: &Engine,
    t: &Target<'_>,
    old: &Observed,
    new_id: &str,
) -> Result<(), StepError> {
    let give_up = |why: String| async move {
        let _ = engine.remove(new_id).await;
        Err(format!("{why}; the previous container still runs"))
    };
    if let Err(e) = engine.start(new_id).await {
        return give_up(format!("the new container failed to start: {e}")).await;
    }
    if let Err(why) = wait_ready(engine, new_id, t.spec.health_check.is_some()).await {
        return give_up(why).await;
    }
    let prev_name = format!("{}{PREV_SUFFIX}", t.spec.name);
    if let Err(e) = engine.rename(&old.id, &prev_name).await {
        return give_up(say("renaming the old container", e)).await;
    }
    if let Err(e) = engine.rename(new_id, &t.spec.name).await {
        let _ = engine.rename(&old.id, &t.spec.name).await;
        return give_up(say("renaming the new container", e)).await;
    }
    crate::fault::pause_point("apply.start_first.after_swap").await;
    // The proxy now resolves the app to the new container; let requests in
    // flight on the old one finish.
    tokio::time::sleep(SWAP_GRACE).await;
    engine
        .stop(&old.id)
        .await
        .map_err(|e| say("stopping the old container (the new one serves)", e))?;
    engine
        .remove(&old.id)
        .await
        .map_err(|e| say("removing the old container (the new one serves)", e))
}

/// Waits until the container runs (and, with a health check, is healthy).
/// Without one, it must keep running, unrestarted, for `STABLE`: a process
/// that dies after a moment must not replace one that works.
async fn wait_ready(engine: &Engine, id: &str, health: bool) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut running_since: Option<(tokio::time::Instant, Option<String>)> = None;
    loop {
        let o = engine
            .inspect(id)
            .await
            .map_err(|e| say("watching the new container", e))?;
        if !o.running && o.state != "created" && o.state != "restarting" {
            return Err(format!(
                "the new container stopped at once ({})",
                match o.exit_code {
                    Some(code) => format!("exit code {code}"),
                    None => o.state,
                }
            ));
        }
        match (health, o.health.as_deref()) {
            (_, Some("unhealthy")) => {
                return Err("the new container's health check fails".into());
            }
            (true, Some("healthy")) => return Ok(()),
            (false, _) if o.running => match &running_since {
                Some((since, started)) if *started == o.started_at => {
                    if since.elapsed() >= STABLE {
                        return Ok(());
                    }
                }
                _ => running_since = Some((tokio::time::Instant::now(), o.started_at.clone())),
            },
            _ => {}
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the new container was not ready within {} s",
                READY_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
