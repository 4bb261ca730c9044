//! Review and apply: what applying the saved rules would change (in words
//! and as a diff of berth's nft table), nft's own check of the ruleset, and
//! the lockout guard's verdict. Apply stays disabled while any of them says
//! no, or when there is nothing to apply.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::widgets::ErrorMessage;
use super::watch::FirewallWatch;
use super::Warnings;
use crate::api::firewall::{ApplyRequest, DiffLine, FirewallPlan, PendingApply};
use crate::client::{self, ClientError};

/// Why Apply is disabled, if it is.
fn blocked(plan: Option<&FirewallPlan>, pending: bool) -> Option<&'static str> {
    let Some(plan) = plan else {
        return Some("Review the plan first.");
    };
    if pending {
        Some("An apply is waiting for its confirmation.")
    } else if plan.refused.is_some() {
        Some("berth would refuse these rules.")
    } else if plan.check_error.is_some() {
        Some("nft rejects this ruleset.")
    } else if plan.up_to_date {
        Some("Nothing to apply.")
    } else {
        None
    }
}

fn diff_class(op: &str) -> &'static str {
    match op {
        "+" => "add",
        "-" => "del",
        _ => "same",
    }
}

#[component]
pub fn PlanPanel(
    /// Bumped when the saved or live rules change: the plan shown is then
    /// out of date and goes.
    changed: RwSignal<u64>,
    /// The editor has unsaved changes (which a plan does not include).
    dirty: RwSignal<bool>,
    /// After a 409: another apply is pending, which the status will show.
    #[prop(into)]
    on_conflict: Callback<()>,
) -> impl IntoView {
    let watch = expect_context::<FirewallWatch>();
    let plan = RwSignal::new(None::<FirewallPlan>);
    let error = RwSignal::new(None::<ClientError>);
    let loading = RwSignal::new(false);
    let applying = RwSignal::new(false);

    Effect::new(move |first: Option<()>| {
        changed.track();
        if first.is_some() {
            plan.set(None);
        }
    });

    let review = move |_| {
        loading.set(true);
        spawn_local(async move {
            match client::get::<FirewallPlan>("/api/v1/firewall/plan").await {
                Ok(p) => {
                    error.set(None);
                    plan.set(Some(p));
                }
                Err(e) => error.set(Some(e)),
            }
            loading.set(false);
        });
    };
    let apply = move |_| {
        applying.set(true);
        spawn_local(async move {
            let body = ApplyRequest::default();
            match client::send::<_, PendingApply>("POST", "/api/v1/firewall/apply", &body).await {
                Ok(p) => {
                    error.set(None);
                    watch.set_pending(p);
                }
                Err(e) => {
                    if e.status == 409 {
                        on_conflict.run(());
                    }
                    error.set(Some(e));
                }
            }
            applying.set(false);
        });
    };
    let pending = Memo::new(move |_| watch.pending().is_some());
    let why_not = move || plan.with(|p| blocked(p.as_ref(), pending.get()));

    view! {
        <section aria-labelledby="plan-heading">
            <h2 id="plan-heading">"Plan and apply"</h2>
            <p class="help">
                "Applying loads the saved rules in one nft transaction. Then confirm them from this page before the countdown ends; "
                "if you cannot (because they shut you out), berth restores the previous rules by itself."
            </p>
            {move || dirty.get().then(|| view! {
                <p class="notice" id="plan-unsaved-note">"The table has unsaved changes: the plan and Apply use the saved rules. Save first."</p>
            })}
            <div class="actions">
                <button type="button" class="secondary" id="plan-button" disabled=loading on:click=review>
                    {move || if loading.get() { "Loading…" } else { "Review plan" }}
                </button>
                <button type="button" id="apply-button" on:click=apply
                    disabled=move || applying.get() || why_not().is_some()
                    title=move || why_not().unwrap_or_default()>
                    {move || if applying.get() { "Applying…" } else { "Apply" }}
                </button>
            </div>
            <ErrorMessage error/>
            {move || plan.get().map(|p| view! { <PlanView plan=p/> })}
        </section>
    }
}

#[component]
fn PlanView(plan: FirewallPlan) -> impl IntoView {
    let live = match plan.applied_revision {
        Some(r) => format!("revision {r}"),
        None => "nothing berth applied".into(),
    };
    view! {
        <div class="plan" id="plan" data-up-to-date=plan.up_to_date.to_string()>
            {plan.refused.map(|r| view! {
                <p class="error" role="alert" id="plan-refused">
                    <strong>"berth would refuse to apply this: "</strong>{r}
                </p>
            })}
            {plan.check_error.map(|e| view! {
                <div class="error" role="alert" id="plan-check-error">
                    <p><strong>"nft rejects the ruleset:"</strong></p>
                    <pre class="diff">{e}</pre>
                </div>
            })}
            {plan.up_to_date.then(|| view! {
                <p class="success" id="plan-up-to-date">"Nothing to apply: the kernel already holds exactly these rules."</p>
            })}
            <p>{format!("Saved revision {} against {live}.", plan.revision)}</p>
            <Warnings warnings=plan.warnings id="plan-warnings"/>
            <h3>"Changes"</h3>
            {if plan.changes.is_empty() {
                view! { <p class="muted" id="plan-changes">"No rule changes."</p> }.into_any()
            } else {
                view! {
                    <ul id="plan-changes">
                        {plan.changes.into_iter().map(|c| view! { <li>{c}</li> }).collect_view()}
                    </ul>
                }.into_any()
            }}
            <h3>"berth's table, live → after apply"</h3>
            <DiffView lines=plan.diff/>
            <details>
                <summary>"The whole ruleset"</summary>
                <pre class="diff" id="plan-ruleset">{plan.ruleset}</pre>
            </details>
        </div>
    }
}

/// Added lines green, removed red, unchanged muted; the `+`/`-` stay in
/// the text for whoever cannot tell the colours apart or copies it.
#[component]
fn DiffView(lines: Vec<DiffLine>) -> impl IntoView {
    view! {
        <pre class="diff" id="plan-diff">
            {lines.into_iter().map(|l| {
                let text = format!("{}{}\n", if l.op.is_empty() { " " } else { &l.op }, l.text);
                view! { <span class=diff_class(&l.op) data-op=l.op>{text}</span> }
            }).collect_view()}
        </pre>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> FirewallPlan {
        FirewallPlan {
            revision: 2,
            applied_revision: Some(1),
            up_to_date: false,
            changes: vec!["rule 1 added".into()],
            ruleset: String::new(),
            diff: Vec::new(),
            check_error: None,
            refused: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn apply_waits_for_a_plan_that_allows_it() {
        assert!(blocked(None, false).is_some());
        assert_eq!(blocked(Some(&plan()), false), None);
        assert!(blocked(Some(&plan()), true).is_some());
        let refused = FirewallPlan {
            refused: Some("this would block your own access to the panel".into()),
            ..plan()
        };
        assert!(blocked(Some(&refused), false).is_some());
        let failing = FirewallPlan {
            check_error: Some("syntax error".into()),
            ..plan()
        };
        assert!(blocked(Some(&failing), false).is_some());
        let current = FirewallPlan {
            up_to_date: true,
            ..plan()
        };
        assert_eq!(blocked(Some(&current), false), Some("Nothing to apply."));
    }

    #[test]
    fn diff_lines_are_coloured_by_their_op() {
        assert_eq!(diff_class("+"), "add");
        assert_eq!(diff_class("-"), "del");
        assert_eq!(diff_class(" "), "same");
    }
}
