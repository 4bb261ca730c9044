//! The rules editor: a table with one row per rule, presets to add, the
//! on/off switch and the mode. Changes are checked as they are typed, first
//! by the shared `check_config` and then by berth (a dry run, which adds the
//! lockout guard and the warnings); an error is shown at the input it names.
//! Saving stores the rules; nothing reaches the kernel before an apply.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::widgets::{invalid, problem, ErrorMessage, FieldError};
use super::form::{rule_field, to_form, to_rule, RuleField, RuleForm};
use super::Warnings;
use crate::api::firewall::{check_config, FirewallConfig, FirewallRules, Mode, Preset};
use crate::client::{self, ClientError};

const RULES_PATH: &str = "/api/v1/firewall/rules";
const ACTION_OPTIONS: &[&str] = &["allow", "deny", "reject"];
const PROTOCOL_OPTIONS: &[&str] = &["tcp", "udp", "icmp", "any"];
/// The inputs of a row, by the name the API gives their field.
const ROW_FIELDS: &[&str] = &[
    "action",
    "protocol",
    "ports",
    "sources",
    "rate_limit",
    "comment",
    "name",
];

/// A row and the key that keeps its inputs (and focus) while rows move.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: u64,
    form: RuleForm,
}

/// True when the page shows an error about `field` next to an input (or
/// row) rather than above the table.
fn shown_at_input(field: &str, rows: usize) -> bool {
    field == "enabled" || field == "mode" || rule_field(field).is_some_and(|(i, _)| i < rows)
}

/// The error's message when it names `field` of row `index`; `""` stands
/// for the row itself or a field it has no input for.
fn row_error(error: &Option<ClientError>, index: usize, field: &str) -> Option<String> {
    let e = error.as_ref()?;
    let (i, f) = rule_field(e.field.as_deref()?)?;
    let matches = if field.is_empty() {
        !ROW_FIELDS.contains(&f)
    } else {
        f == field
    };
    (i == index && matches).then(|| e.message.clone())
}

#[component]
pub fn RulesEditor(
    /// Kept true while the table differs from the saved rules.
    dirty: RwSignal<bool>,
    #[prop(into)] on_saved: Callback<()>,
) -> impl IntoView {
    let rows = RwSignal::new(Vec::<Entry>::new());
    let enabled = RwSignal::new(false);
    let mode = RwSignal::new(Mode::Standalone);
    let presets = RwSignal::new(Vec::<Preset>::new());
    let error = RwSignal::new(None::<ClientError>);
    // Warnings of the last dry run that passed.
    let checked = RwSignal::new(None::<Vec<String>>);
    let saved = RwSignal::new(None::<FirewallRules>);
    let busy = RwSignal::new(false);
    // The rules as saved: the table is checked only once it differs.
    let baseline = RwSignal::new(None::<FirewallConfig>);
    let generation = StoredValue::new(0u64);
    let next_key = StoredValue::new(0u64);

    let new_entry = move |form: RuleForm| {
        let key = next_key.get_value();
        next_key.set_value(key + 1);
        Entry { key, form }
    };
    let config = move || FirewallConfig {
        enabled: enabled.get(),
        mode: mode.get(),
        rules: rows.with(|r| r.iter().map(|e| to_rule(&e.form)).collect()),
    };
    let fill = move |r: &FirewallRules| {
        let forms: Vec<RuleForm> = r.rules.iter().map(to_form).collect();
        // Compared with what the table reads back, not with berth's text,
        // so an empty rate limit or a padded comment is no "change".
        baseline.set(Some(FirewallConfig {
            enabled: r.enabled,
            mode: r.mode,
            rules: forms.iter().map(to_rule).collect(),
        }));
        rows.set(forms.into_iter().map(new_entry).collect());
        enabled.set(r.enabled);
        mode.set(r.mode);
    };

    Effect::new(move |_| {
        spawn_local(async move {
            match client::get::<FirewallRules>(RULES_PATH).await {
                Ok(r) => fill(&r),
                Err(e) => error.set(Some(e)),
            }
            // Without presets the editor still works: no error for them.
            if let Ok(p) = client::get::<Vec<Preset>>("/api/v1/firewall/presets").await {
                presets.set(p);
            }
        });
    });

    // Live validation, 400 ms after the last change.
    Effect::new(move |_| {
        let current = config();
        let Some(saved_config) = baseline.get() else {
            return;
        };
        generation.update_value(|g| *g += 1);
        let mine = generation.get_value();
        let changed = current != saved_config;
        dirty.set(changed);
        if !changed {
            checked.set(None);
            error.set(None);
            return;
        }
        saved.set(None);
        set_timeout(
            move || {
                if generation.try_get_value() != Some(mine) {
                    return;
                }
                if let Err(e) = check_config(&current) {
                    checked.set(None);
                    error.set(Some(problem(&e.field, e.message)));
                    return;
                }
                spawn_local(async move {
                    let path = format!("{RULES_PATH}?dry_run=true");
                    let result = client::send::<_, FirewallRules>("PUT", &path, &current).await;
                    if generation.try_get_value() != Some(mine) {
                        return;
                    }
                    match result {
                        Ok(r) => {
                            error.set(None);
                            checked.set(Some(r.warnings));
                        }
                        Err(e) => {
                            checked.set(None);
                            error.set(Some(e));
                        }
                    }
                });
            },
            Duration::from_millis(400),
        );
    });

    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let current = config();
        if let Err(e) = check_config(&current) {
            error.set(Some(problem(&e.field, e.message)));
            return;
        }
        // A dry run still under way must not overwrite what saving says.
        generation.update_value(|g| *g += 1);
        busy.set(true);
        spawn_local(async move {
            match client::send::<_, FirewallRules>("PUT", RULES_PATH, &current).await {
                Ok(r) => {
                    error.set(None);
                    checked.set(None);
                    fill(&r);
                    saved.set(Some(r));
                    on_saved.run(());
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let add = move |forms: Vec<RuleForm>| {
        rows.update(|r| r.extend(forms.into_iter().map(new_entry)));
    };
    let on_edit = Callback::new(move |(key, field, value): (u64, RuleField, String)| {
        rows.update(|r| {
            if let Some(e) = r.iter_mut().find(|e| e.key == key) {
                e.form.set(field, value);
            }
        });
    });
    let general_error = move || {
        error.with(|e| {
            e.as_ref().is_some_and(|e| {
                e.field
                    .as_deref()
                    .is_none_or(|f| !shown_at_input(f, rows.with(Vec::len)))
            })
        })
    };

    view! {
        <section aria-labelledby="rules-heading">
            <h2 id="rules-heading">"Rules"</h2>
            <p class="help">
                "Rules are read top to bottom: the first that matches a new inbound connection decides. "
                "Loopback and replies to connections this host opened always get through."
            </p>
            <form id="rules-form" on:submit=save>
                <label class="check">
                    <input type="checkbox" id="firewall-enabled" aria-invalid=invalid(error, "enabled")
                        bind:checked=enabled/>
                    " Enable firewall (default drop inbound)"
                </label>
                <FieldError error field="enabled"/>
                <label for="firewall-mode">"Mode"</label>
                <select id="firewall-mode" aria-invalid=invalid(error, "mode")
                    on:change=move |ev| {
                        let v = event_target_value(&ev);
                        mode.set(if v == "coexist" { Mode::Coexist } else { Mode::Standalone });
                    }>
                    <option value="standalone" prop:selected=move || mode.get() == Mode::Standalone>
                        "Standalone: berth is the host's firewall"
                    </option>
                    <option value="coexist" prop:selected=move || mode.get() == Mode::Coexist>
                        "Coexist: another firewall (UFW, firewalld) keeps the host's policy"
                    </option>
                </select>
                <p class="help">
                    "In coexist mode berth's rules still apply everywhere, but its default drop covers only the ports Docker publishes, which the other firewall misses."
                </p>
                <FieldError error field="mode"/>
                <div class="table-scroll">
                    <table class="data rules" id="rules-table">
                        <thead>
                            <tr>
                                <th scope="col">"#"</th>
                                <th scope="col">"Action"</th>
                                <th scope="col">"Protocol"</th>
                                <th scope="col">"Ports"</th>
                                <th scope="col">"Sources"</th>
                                <th scope="col">"Rate limit"</th>
                                <th scope="col">"Comment"</th>
                                <th scope="col">"Name"</th>
                                <th scope="col"><span class="visually-hidden">"Order and removal"</span></th>
                            </tr>
                        </thead>
                        <tbody>
                            <For each=move || rows.get() key=|e| e.key let:entry>
                                <RuleRow key=entry.key form=entry.form rows error on_edit/>
                            </For>
                        </tbody>
                    </table>
                </div>
                {move || (baseline.with(Option::is_some) && rows.with(Vec::is_empty)).then(|| view! {
                    <p class="muted" id="no-rules">"No rules yet."</p>
                })}
                <div class="actions">
                    <button type="button" class="secondary" id="add-rule"
                        on:click=move |_| add(vec![RuleForm::default()])>"Add rule"</button>
                </div>
                {move || (!presets.with(Vec::is_empty)).then(|| view! {
                    <div class="presets" id="presets">
                        <p class="help">"Presets add their rules at the end of the table; SSH presets are filled in with your address."</p>
                        <div class="actions">
                            {presets.get().into_iter().map(|p| {
                                let forms: Vec<RuleForm> = p.rules.iter().map(to_form).collect();
                                view! {
                                    <button type="button" class="secondary small" id=format!("preset-{}", p.id)
                                        title=p.description.clone()
                                        on:click=move |_| add(forms.clone())>{format!("+ {}", p.name)}</button>
                                }
                            }).collect_view()}
                        </div>
                    </div>
                })}
                {move || general_error().then(|| view! { <ErrorMessage error/> })}
                {move || checked.get().map(|warnings| view! {
                    <div id="rules-validation" role="status">
                        <p class="muted">"Valid: berth would accept these rules."</p>
                        <Warnings warnings id="rules-check-warnings"/>
                    </div>
                })}
                <div class="actions">
                    <button type="submit" id="save-rules" disabled=busy>"Save"</button>
                    {move || dirty.get().then(|| view! {
                        <span class="badge needs-redeploy" id="rules-unsaved">"unsaved changes"</span>
                    })}
                </div>
                {move || saved.get().map(|r| view! {
                    <div id="rules-saved" role="status">
                        <p class="success">
                            {format!("Saved as revision {}. ", r.revision)}
                            "Review the plan below and apply it to make the rules live."
                        </p>
                        <Warnings warnings=r.warnings id="rules-warnings"/>
                    </div>
                })}
            </form>
        </section>
    }
}

/// One rule. Inputs start from `form` and report every change; they are
/// never re-rendered from the table, so typing and moving keep the caret.
#[component]
fn RuleRow(
    key: u64,
    form: RuleForm,
    rows: RwSignal<Vec<Entry>>,
    error: RwSignal<Option<ClientError>>,
    on_edit: Callback<(u64, RuleField, String)>,
) -> impl IntoView {
    let index = Memo::new(move |_| {
        rows.with(|r| r.iter().position(|e| e.key == key))
            .unwrap_or(0)
    });
    let last = Memo::new(move |_| index.get() + 1 >= rows.with(Vec::len));
    let up = NodeRef::<leptos::html::Button>::new();
    let down = NodeRef::<leptos::html::Button>::new();
    // Moves the row and keeps focus on the button that moved it (the
    // browser drops focus when the row's element moves).
    let move_by = move |delta: isize,
                        button: NodeRef<leptos::html::Button>,
                        other: NodeRef<leptos::html::Button>| {
        rows.update(|r| {
            let Some(i) = r.iter().position(|e| e.key == key) else {
                return;
            };
            let j = i as isize + delta;
            if (0..r.len() as isize).contains(&j) {
                r.swap(i, j as usize);
            }
        });
        request_animation_frame(move || {
            // At the top or bottom the button is disabled: the other one.
            let target = match button.get_untracked() {
                Some(b) if !b.disabled() => Some(b),
                _ => other.get_untracked(),
            };
            if let Some(b) = target {
                let _ = b.focus();
            }
        });
    };
    let edit =
        Callback::new(move |(field, value): (RuleField, String)| on_edit.run((key, field, value)));
    let row_message = Memo::new(move |_| error.with(|e| row_error(e, index.get(), "")));

    view! {
        <tr id=move || format!("rule-{}", index.get()) data-rule=move || index.get().to_string()>
            <th scope="row" class="number">{move || index.get() + 1}</th>
            <td>
                <RuleSelect field=RuleField::Action options=ACTION_OPTIONS value=form.action.as_str()
                    label="action" index error edit/>
            </td>
            <td>
                <RuleSelect field=RuleField::Protocol options=PROTOCOL_OPTIONS value=form.protocol.as_str()
                    label="protocol" index error edit/>
            </td>
            <td class="ports">
                <RuleInput field=RuleField::Ports value=form.ports label="ports" placeholder="all"
                    index error edit/>
            </td>
            <td class="sources">
                <RuleInput field=RuleField::Sources value=form.sources label="sources"
                    placeholder="anywhere" index error edit/>
            </td>
            <td class="rate">
                <RuleInput field=RuleField::RateLimit value=form.rate_limit label="rate limit"
                    placeholder="6/minute" index error edit/>
            </td>
            <td>
                <RuleInput field=RuleField::Comment value=form.comment label="comment" placeholder=""
                    index error edit/>
            </td>
            <td>
                <RuleInput field=RuleField::Name value=form.name label="name" placeholder=""
                    index error edit/>
            </td>
            <td>
                <div class="row-actions">
                    <button type="button" class="small secondary" node_ref=up
                        id=move || format!("rule-{}-up", index.get())
                        aria-label=move || format!("Move rule {} up", index.get() + 1)
                        disabled=move || index.get() == 0
                        on:click=move |_| move_by(-1, up, down)>"↑"</button>
                    <button type="button" class="small secondary" node_ref=down
                        id=move || format!("rule-{}-down", index.get())
                        aria-label=move || format!("Move rule {} down", index.get() + 1)
                        disabled=last
                        on:click=move |_| move_by(1, down, up)>"↓"</button>
                    <button type="button" class="small danger"
                        id=move || format!("rule-{}-remove", index.get())
                        aria-label=move || format!("Remove rule {}", index.get() + 1)
                        on:click=move |_| rows.update(|r| r.retain(|e| e.key != key))>"Remove"</button>
                </div>
                {move || row_message.get().map(|m| view! {
                    <p class="error field-error" role="alert" id=format!("rule-{}-error", index.get_untracked())>{m}</p>
                })}
            </td>
        </tr>
    }
}

/// The error about one input of a row (`rules[3].ports`).
fn field_message(
    error: RwSignal<Option<ClientError>>,
    index: Memo<usize>,
    name: &'static str,
) -> Memo<Option<String>> {
    Memo::new(move |_| error.with(|e| row_error(e, index.get(), name)))
}

/// The message under an input; its id is the input's plus `-error`.
#[component]
fn FieldMessage(
    message: Memo<Option<String>>,
    index: Memo<usize>,
    name: &'static str,
) -> impl IntoView {
    move || {
        message.get().map(|m| {
            view! {
                <p class="error field-error" role="alert"
                    id=move || format!("rule-{}-{name}-error", index.get())>{m}</p>
            }
        })
    }
}

#[component]
fn RuleInput(
    field: RuleField,
    value: String,
    label: &'static str,
    placeholder: &'static str,
    index: Memo<usize>,
    error: RwSignal<Option<ClientError>>,
    edit: Callback<(RuleField, String)>,
) -> impl IntoView {
    let name = field.api_name();
    let message = field_message(error, index, name);
    view! {
        <input id=move || format!("rule-{}-{name}", index.get()) class=format!("rule-{name}") value=value placeholder=placeholder spellcheck="false"
            autocomplete="off"
            data-field=move || format!("rules[{}].{name}", index.get())
            aria-label=move || format!("Rule {} {label}", index.get() + 1)
            aria-invalid=move || if message.with(Option::is_some) { "true" } else { "false" }
            on:input=move |ev| edit.run((field, event_target_value(&ev)))/>
        <FieldMessage message index name/>
    }
}

#[component]
fn RuleSelect(
    field: RuleField,
    options: &'static [&'static str],
    value: &'static str,
    label: &'static str,
    index: Memo<usize>,
    error: RwSignal<Option<ClientError>>,
    edit: Callback<(RuleField, String)>,
) -> impl IntoView {
    let name = field.api_name();
    let message = field_message(error, index, name);
    view! {
        <select id=move || format!("rule-{}-{name}", index.get()) class=format!("rule-{name}")
            data-field=move || format!("rules[{}].{name}", index.get())
            aria-label=move || format!("Rule {} {label}", index.get() + 1)
            aria-invalid=move || if message.with(Option::is_some) { "true" } else { "false" }
            on:change=move |ev| edit.run((field, event_target_value(&ev)))>
            {options.iter().map(|o| view! { <option value=*o selected=*o == value>{*o}</option> }).collect_view()}
        </select>
        <FieldMessage message index name/>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(field: &str) -> Option<ClientError> {
        Some(ClientError {
            status: 422,
            code: "invalid".into(),
            message: "bad".into(),
            field: Some(field.into()),
        })
    }

    #[test]
    fn errors_go_to_the_input_they_name() {
        let e = error("rules[1].sources[0]");
        assert_eq!(row_error(&e, 1, "sources").as_deref(), Some("bad"));
        assert_eq!(row_error(&e, 1, "ports"), None);
        assert_eq!(row_error(&e, 0, "sources"), None);
        assert_eq!(row_error(&e, 1, ""), None);
        assert_eq!(row_error(&error("rules[2]"), 2, "").as_deref(), Some("bad"));
    }

    #[test]
    fn errors_without_an_input_are_shown_above() {
        assert!(shown_at_input("enabled", 0));
        assert!(shown_at_input("rules[3].ports", 4));
        assert!(!shown_at_input("rules[3].ports", 3));
        assert!(!shown_at_input("rules", 3));
        assert!(!shown_at_input("confirm_seconds", 3));
    }
}
