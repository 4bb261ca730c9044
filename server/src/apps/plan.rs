//! The reconciler's decisions, as pure functions of what is desired and what
//! the engine has: the plan (what apply would do, and why) and the status
//! (what to tell the admin). Unit-tested without an engine.

use app::api::{ActionKind, AppSpec, AppStatus, DesiredState, PlannedAction};

use super::engine::{expected_mutable, Observed};

/// Everything the decisions depend on.
pub struct Inputs<'a> {
    pub spec: &'a AppSpec,
    /// `config_hash` of `spec`.
    pub hash: &'a str,
    /// The spec of the last successful apply, to explain what changed.
    pub applied: Option<&'a AppSpec>,
    /// What the image reference points at now (`None`: not on the engine).
    pub image_id: Option<&'a str>,
    /// The container named after the app, if any.
    pub current: Option<&'a Observed>,
    /// Other containers labelled as the app's (left by an interrupted apply,
    /// or renamed behind berth's back).
    pub strays: &'a [Observed],
    /// The secrets stamp a new container would carry (`secrets::Secrets::stamp`).
    pub secrets: &'a str,
}

fn action(kind: ActionKind, reasons: Vec<String>) -> PlannedAction {
    PlannedAction {
        action: kind,
        reasons,
    }
}

/// What apply would do to make the engine match the spec.
pub fn plan(i: &Inputs) -> Vec<PlannedAction> {
    let mut actions = Vec::new();
    for stray in i.strays {
        let why = if stray.name.ends_with(super::apply::NEXT_SUFFIX)
            || stray.name.ends_with(super::apply::PREV_SUFFIX)
        {
            format!(
                "container `{}` was left by an interrupted apply",
                stray.name
            )
        } else {
            format!(
                "container `{}` is the app's but was renamed outside berth",
                stray.name
            )
        };
        actions.push(action(ActionKind::Remove, vec![why]));
    }
    let wants_running = i.spec.state == DesiredState::Running;
    let Some(current) = i.current else {
        let why = if !i.strays.is_empty() {
            "the app's container is not under its name".to_string()
        } else if i.applied.is_some() {
            "the container was removed outside berth".to_string()
        } else {
            "the app has no container yet".to_string()
        };
        actions.push(action(ActionKind::Create, vec![why]));
        if wants_running {
            actions.push(action(
                ActionKind::Start,
                vec!["desired state is running".into()],
            ));
        }
        return actions;
    };

    let recreate = recreate_reasons(i, current);
    if !recreate.is_empty() {
        actions.push(action(ActionKind::Recreate, recreate));
        return actions;
    }
    if wants_running && !current.running && current.state != "restarting" {
        actions.push(action(ActionKind::Start, vec![describe_stopped(current)]));
    } else if !wants_running && current.running {
        actions.push(action(
            ActionKind::Stop,
            vec!["desired state is stopped".into()],
        ));
    }
    actions
}

fn recreate_reasons(i: &Inputs, current: &Observed) -> Vec<String> {
    let mut reasons = Vec::new();
    if current.spec_hash.as_deref() != Some(i.hash) {
        match i.applied {
            Some(applied) if current.spec_hash.is_some() => {
                reasons.extend(changes(applied, i.spec))
            }
            _ => {}
        }
        if reasons.is_empty() {
            reasons.push("the container was created from a different configuration".into());
        }
    }
    if let Some(why) = secrets_changed(i, current) {
        reasons.push(why);
    }
    if let Some(id) = i.image_id {
        if !current.image_id.is_empty() && current.image_id != id {
            reasons.push(format!(
                "`{}` now points to a different image",
                i.spec.image
            ));
        }
    }
    reasons.extend(drift(i.spec, current));
    reasons
}

/// The container has other secret revisions than the store: names only.
fn secrets_changed(i: &Inputs, current: &Observed) -> Option<String> {
    let changes = crate::secrets::stamp_changes(&current.secrets_stamp, i.secrets);
    (!changes.is_empty()).then(|| format!("secrets changed ({})", changes.join("; ")))
}

/// Whether the container was made from other settings or secrets than the
/// stored ones (what a redeploy would bring in).
pub fn needs_redeploy(i: &Inputs) -> bool {
    i.current
        .is_some_and(|c| c.spec_hash.as_deref() != Some(i.hash) || secrets_changed(i, c).is_some())
}

/// Settings changed in place on the engine (`docker update`, `docker network
/// connect`…) since berth created the container.
pub fn drift(spec: &AppSpec, o: &Observed) -> Vec<String> {
    let (memory, nano_cpus, pids, restart, networks) = expected_mutable(spec);
    let mut reasons = Vec::new();
    if o.memory != memory {
        reasons.push("memory limit changed outside berth".into());
    }
    if o.nano_cpus != nano_cpus {
        reasons.push("CPU limit changed outside berth".into());
    }
    if o.pids_limit != pids {
        reasons.push("process limit changed outside berth".into());
    }
    if o.restart != restart {
        reasons.push("restart policy changed outside berth".into());
    }
    if o.networks != networks {
        reasons.push("networks changed outside berth".into());
    }
    reasons
}

fn describe_stopped(o: &Observed) -> String {
    match (o.state.as_str(), o.exit_code) {
        ("created", _) => "the container was created but not started".into(),
        (_, _) if o.oom_killed => "the container was killed for running out of memory".into(),
        (state, Some(code)) => format!("the container is {state} (exit code {code})"),
        (state, None) => format!("the container is {state}"),
    }
}

/// What changed between two specs, in words. Values are never quoted: env
/// values may be secret.
pub fn changes(old: &AppSpec, new: &AppSpec) -> Vec<String> {
    let mut out = Vec::new();
    if old.image != new.image {
        out.push(format!("image changed ({} → {})", old.image, new.image));
    }
    if old.command != new.command {
        out.push("command changed".into());
    }
    if old.entrypoint != new.entrypoint {
        out.push("entrypoint changed".into());
    }
    if old.env != new.env {
        let added: Vec<&str> = new
            .env
            .keys()
            .filter(|k| !old.env.contains_key(*k))
            .map(String::as_str)
            .collect();
        let removed: Vec<&str> = old
            .env
            .keys()
            .filter(|k| !new.env.contains_key(*k))
            .map(String::as_str)
            .collect();
        let changed: Vec<&str> = new
            .env
            .iter()
            .filter(|(k, v)| old.env.get(*k).is_some_and(|o| o != *v))
            .map(|(k, _)| k.as_str())
            .collect();
        let mut parts = Vec::new();
        for (label, keys) in [("added", added), ("removed", removed), ("changed", changed)] {
            if !keys.is_empty() {
                parts.push(format!("{label} {}", keys.join(", ")));
            }
        }
        out.push(format!("env changed ({})", parts.join("; ")));
    }
    let simple: [(&str, bool); 10] = [
        ("ports changed", old.ports != new.ports),
        ("volumes changed", old.volumes != new.volumes),
        (
            "networks changed",
            old.networks != new.networks || old.aliases != new.aliases,
        ),
        ("restart policy changed", old.restart != new.restart),
        ("resource limits changed", old.limits != new.limits),
        ("health check changed", old.health_check != new.health_check),
        ("labels changed", old.labels != new.labels),
        ("privileged mode changed", old.privileged != new.privileged),
        ("capabilities changed", old.cap_add != new.cap_add),
        (
            "host namespaces changed",
            (old.host_network, old.host_pid, old.host_ipc)
                != (new.host_network, new.host_pid, new.host_ipc),
        ),
    ];
    out.extend(
        simple
            .into_iter()
            .filter(|(_, c)| *c)
            .map(|(r, _)| r.to_string()),
    );
    out
}

/// The status shown for an app, with its reasons.
pub fn status(
    i: &Inputs,
    last_apply_failed: Option<&str>,
    applying: bool,
) -> (AppStatus, Vec<String>) {
    if applying {
        return (AppStatus::Pending, vec!["an apply is in progress".into()]);
    }
    if let Some(error) = last_apply_failed {
        return (
            AppStatus::Failed,
            vec![format!("the last apply failed: {error}")],
        );
    }
    let Some(current) = i.current else {
        return match (i.applied, i.strays.first()) {
            (_, Some(stray)) => (
                AppStatus::Drifted,
                vec![format!("the app's container is named `{}`", stray.name)],
            ),
            (Some(_), None) => (
                AppStatus::Drifted,
                vec!["the container was removed outside berth".into()],
            ),
            (None, None) => (AppStatus::Pending, vec!["not applied yet".into()]),
        };
    };
    if current.spec_hash.as_deref() != Some(i.hash) {
        return (
            AppStatus::Pending,
            vec!["the configuration changed and is not applied yet".into()],
        );
    }
    if let Some(why) = secrets_changed(i, current) {
        return (
            AppStatus::Pending,
            vec![format!("{why}: redeploy to apply")],
        );
    }
    let drifted = drift(i.spec, current);
    if !drifted.is_empty() {
        return (AppStatus::Drifted, drifted);
    }
    match (i.spec.state, current.running) {
        (DesiredState::Running, true) => match current.health.as_deref() {
            Some("starting") => (
                AppStatus::Starting,
                vec!["waiting for the health check".into()],
            ),
            Some("unhealthy") => (
                AppStatus::Unhealthy,
                vec!["the health check is failing".into()],
            ),
            _ => (AppStatus::Running, Vec::new()),
        },
        (DesiredState::Running, false) => {
            if current.state == "restarting" {
                return (
                    AppStatus::Failed,
                    vec![format!(
                        "restarting after exit code {}",
                        current.exit_code.unwrap_or_default()
                    )],
                );
            }
            let by_signal = matches!(current.exit_code, Some(137 | 143)) && !current.oom_killed;
            if current.state == "exited" && by_signal {
                (AppStatus::Drifted, vec!["stopped outside berth".into()])
            } else if current.state == "created" {
                (AppStatus::Pending, vec![describe_stopped(current)])
            } else {
                (AppStatus::Failed, vec![describe_stopped(current)])
            }
        }
        (DesiredState::Stopped, true) => (AppStatus::Drifted, vec!["started outside berth".into()]),
        (DesiredState::Stopped, false) => (AppStatus::Stopped, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn spec() -> AppSpec {
        AppSpec {
            name: "web".into(),
            image: "img:1".into(),
            ..Default::default()
        }
    }

    fn observed(spec: &AppSpec, hash: &str) -> Observed {
        let (memory, nano_cpus, pids_limit, restart, networks) = expected_mutable(spec);
        Observed {
            id: "c1".into(),
            name: spec.name.clone(),
            spec_hash: Some(hash.into()),
            secrets_stamp: String::new(),
            state: "running".into(),
            running: true,
            exit_code: Some(0),
            oom_killed: false,
            health: None,
            started_at: None,
            image_id: "sha256:aaa".into(),
            memory,
            nano_cpus,
            pids_limit,
            restart,
            networks,
            ports: vec![],
            addresses: vec![],
        }
    }

    fn inputs<'a>(
        spec: &'a AppSpec,
        current: Option<&'a Observed>,
        applied: Option<&'a AppSpec>,
    ) -> Inputs<'a> {
        Inputs {
            spec,
            hash: "h2",
            applied,
            image_id: Some("sha256:aaa"),
            current,
            strays: &[],
            secrets: "",
        }
    }

    fn kinds(actions: &[PlannedAction]) -> Vec<ActionKind> {
        actions.iter().map(|a| a.action).collect()
    }

    #[test]
    fn a_new_app_is_created_and_started() {
        let s = spec();
        let p = plan(&inputs(&s, None, None));
        assert_eq!(kinds(&p), [ActionKind::Create, ActionKind::Start]);
        let stopped = AppSpec {
            state: DesiredState::Stopped,
            ..spec()
        };
        assert_eq!(
            kinds(&plan(&inputs(&stopped, None, None))),
            [ActionKind::Create]
        );
    }

    #[test]
    fn a_matching_container_needs_nothing() {
        let s = spec();
        let o = observed(&s, "h2");
        assert!(plan(&inputs(&s, Some(&o), Some(&s))).is_empty());
        assert_eq!(
            status(&inputs(&s, Some(&o), Some(&s)), None, false).0,
            AppStatus::Running
        );
    }

    #[test]
    fn a_changed_spec_is_recreated_with_reasons() {
        let old = spec();
        let mut new = spec();
        new.image = "img:2".into();
        new.env.insert("A".into(), "secret-value".into());
        let o = observed(&old, "h1");
        let p = plan(&inputs(&new, Some(&o), Some(&old)));
        assert_eq!(kinds(&p), [ActionKind::Recreate]);
        let reasons = p[0].reasons.join("; ");
        assert!(
            reasons.contains("image changed (img:1 → img:2)"),
            "{reasons}"
        );
        assert!(reasons.contains("env changed (added A)"), "{reasons}");
        assert!(!reasons.contains("secret-value"));
    }

    #[test]
    fn a_retagged_image_is_recreated() {
        let s = spec();
        let o = observed(&s, "h2");
        let mut i = inputs(&s, Some(&o), Some(&s));
        i.image_id = Some("sha256:bbb");
        let p = plan(&i);
        assert_eq!(kinds(&p), [ActionKind::Recreate]);
        assert!(p[0].reasons[0].contains("different image"));
    }

    #[test]
    fn changes_behind_berths_back_are_drift() {
        let s = spec();
        let mut o = observed(&s, "h2");
        o.memory = 64 * 1024 * 1024;
        let (st, reasons) = status(&inputs(&s, Some(&o), Some(&s)), None, false);
        assert_eq!(st, AppStatus::Drifted);
        assert_eq!(reasons, ["memory limit changed outside berth"]);
        assert_eq!(
            kinds(&plan(&inputs(&s, Some(&o), Some(&s)))),
            [ActionKind::Recreate]
        );

        let mut o = observed(&s, "h2");
        o.running = false;
        o.state = "exited".into();
        o.exit_code = Some(137);
        let (st, _) = status(&inputs(&s, Some(&o), Some(&s)), None, false);
        assert_eq!(st, AppStatus::Drifted);
        assert_eq!(
            kinds(&plan(&inputs(&s, Some(&o), Some(&s)))),
            [ActionKind::Start]
        );

        let (st, reasons) = status(&inputs(&s, None, Some(&s)), None, false);
        assert_eq!(
            (st, reasons[0].as_str()),
            (
                AppStatus::Drifted,
                "the container was removed outside berth"
            )
        );

        let stopped = AppSpec {
            state: DesiredState::Stopped,
            ..spec()
        };
        let o = observed(&stopped, "h2");
        assert_eq!(
            status(&inputs(&stopped, Some(&o), Some(&stopped)), None, false).0,
            AppStatus::Drifted
        );
        assert_eq!(
            kinds(&plan(&inputs(&stopped, Some(&o), Some(&stopped)))),
            [ActionKind::Stop]
        );
    }

    #[test]
    fn a_crash_is_a_failure_not_drift() {
        let s = spec();
        let mut o = observed(&s, "h2");
        o.running = false;
        o.state = "exited".into();
        o.exit_code = Some(3);
        let (st, reasons) = status(&inputs(&s, Some(&o), Some(&s)), None, false);
        assert_eq!(st, AppStatus::Failed);
        assert_eq!(reasons, ["the container is exited (exit code 3)"]);
        let (st, _) = status(&inputs(&s, Some(&o), Some(&s)), Some("boom"), false);
        assert_eq!(st, AppStatus::Failed);
    }

    #[test]
    fn strays_are_removed_first() {
        let s = spec();
        let mut stray = observed(&s, "h1");
        stray.name = format!("web{}", crate::apps::apply::NEXT_SUFFIX);
        let mut i = inputs(&s, None, Some(&s));
        let strays = [stray];
        i.strays = &strays;
        assert_eq!(
            kinds(&plan(&i)),
            [ActionKind::Remove, ActionKind::Create, ActionKind::Start]
        );
    }

    #[test]
    fn networks_default_to_the_bridge() {
        let s = spec();
        let o = observed(&s, "h2");
        assert_eq!(o.networks, BTreeSet::from(["bridge".to_string()]));
    }

    #[test]
    fn changed_secrets_recreate_by_name_and_mark_a_redeploy() {
        let s = spec();
        let mut o = observed(&s, "h2");
        o.secrets_stamp = "DB_PASSWORD@aa,TOKEN@bb".into();
        let mut i = inputs(&s, Some(&o), Some(&s));
        i.secrets = "DB_PASSWORD@aa,TOKEN@bb";
        assert!(plan(&i).is_empty());
        assert!(!needs_redeploy(&i));
        i.secrets = "DB_PASSWORD@cc,NEW@dd";
        let actions = plan(&i);
        assert_eq!(kinds(&actions), [ActionKind::Recreate]);
        assert_eq!(
            actions[0].reasons,
            ["secrets changed (added NEW; updated DB_PASSWORD; removed TOKEN)"]
        );
        assert!(needs_redeploy(&i));
        let (st, reasons) = status(&i, None, false);
        assert_eq!(st, AppStatus::Pending);
        assert!(reasons[0].ends_with("redeploy to apply"), "{reasons:?}");
    }
}
