//! Small pieces shared by the pages: error display, status badges, plans,
//! confirmations and the formatting of sizes, times and ids.

use leptos::prelude::*;

use crate::api::{AppStatus, Plan};
use crate::client::ClientError;

/// A reload action for a page: GET `path` and hand the answer to `on_ok`,
/// or put the error in `error`. Pages run it once and after each change.
pub fn loader<T: serde::de::DeserializeOwned + 'static>(
    path: &'static str,
    on_ok: impl Fn(T) + Copy + 'static,
    error: RwSignal<Option<ClientError>>,
) -> impl Fn() + Copy + 'static {
    move || {
        leptos::task::spawn_local(async move {
            match crate::client::get::<T>(path).await {
                Ok(v) => on_ok(v),
                Err(e) => error.set(Some(e)),
            }
        })
    }
}

/// An error from the API, announced to screen readers.
#[component]
pub fn ErrorMessage(error: RwSignal<Option<ClientError>>) -> impl IntoView {
    move || {
        error.get().map(|e| {
            let field = e.field.map(|f| format!(" ({f})")).unwrap_or_default();
            view! { <p class="error" role="alert">{e.message}{field}</p> }
        })
    }
}

/// True when the API's `field` (e.g. `ports[1].host`, `env.A=B`) is
/// `form_field` or lies inside it.
pub fn field_matches(field: &str, form_field: &str) -> bool {
    field
        .strip_prefix(form_field)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// The last error's message when it is about `form_field`; a more precise
/// field (`ports[1].host`) is added in brackets.
fn error_on(error: RwSignal<Option<ClientError>>, form_field: &str) -> Option<String> {
    error.with(|e| {
        let e = e.as_ref()?;
        let field = e.field.as_deref()?;
        if !field_matches(field, form_field) {
            None
        } else if field == form_field {
            Some(e.message.clone())
        } else {
            Some(format!("{} ({field})", e.message))
        }
    })
}

/// `aria-invalid` for an input whose field the last error named.
pub fn invalid(
    error: RwSignal<Option<ClientError>>,
    field: &'static str,
) -> impl Fn() -> &'static str {
    move || {
        if error_on(error, field).is_some() {
            "true"
        } else {
            "false"
        }
    }
}

/// The last error's message, next to the input of the field it names.
#[component]
pub fn FieldError(error: RwSignal<Option<ClientError>>, field: &'static str) -> impl IntoView {
    move || {
        error_on(error, field).map(|m| {
            view! { <p class="error field-error" role="alert" data-field=field>{m}</p> }
        })
    }
}

/// The last error, unless one of `fields` shows it next to its input.
#[component]
pub fn FormError(
    error: RwSignal<Option<ClientError>>,
    fields: &'static [&'static str],
) -> impl IntoView {
    let shown_elsewhere = move || {
        error.with(|e| {
            e.as_ref()
                .and_then(|e| e.field.as_deref())
                .is_some_and(|f| fields.iter().any(|form_field| field_matches(f, form_field)))
        })
    };
    move || (!shown_elsewhere()).then(|| view! { <ErrorMessage error/> })
}

/// A client-side validation problem, shaped like the API's errors.
pub fn problem(field: &str, message: impl Into<String>) -> ClientError {
    ClientError {
        status: 0,
        code: "invalid".into(),
        message: message.into(),
        field: Some(field.into()),
    }
}

/// How a status reads at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
    Busy,
    Idle,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Good => "state good",
            Tone::Bad => "state bad",
            Tone::Busy => "state busy",
            Tone::Idle => "state idle",
        }
    }
}

pub fn app_status_word(status: AppStatus) -> &'static str {
    match status {
        AppStatus::Running => "running",
        AppStatus::Starting => "starting",
        AppStatus::Unhealthy => "unhealthy",
        AppStatus::Stopped => "stopped",
        AppStatus::Failed => "failed",
        AppStatus::Drifted => "drifted",
        AppStatus::Pending => "pending",
        AppStatus::Unknown => "unknown",
    }
}

pub fn app_status_tone(status: AppStatus) -> Tone {
    match status {
        AppStatus::Running => Tone::Good,
        AppStatus::Failed | AppStatus::Unhealthy => Tone::Bad,
        AppStatus::Drifted | AppStatus::Pending | AppStatus::Starting => Tone::Busy,
        AppStatus::Stopped | AppStatus::Unknown => Tone::Idle,
    }
}

/// Docker's container states (`running`, `exited`, `restarting`, …).
pub fn container_state_tone(state: &str) -> Tone {
    match state {
        "running" => Tone::Good,
        "dead" => Tone::Bad,
        "restarting" | "paused" | "removing" => Tone::Busy,
        _ => Tone::Idle,
    }
}

/// A status word in a coloured pill; `title` (e.g. the reasons) as tooltip.
#[component]
pub fn StatusBadge(
    #[prop(into)] word: String,
    tone: Tone,
    /// Empty: no tooltip.
    #[prop(optional, into)]
    title: String,
) -> impl IntoView {
    let title = (!title.is_empty()).then_some(title);
    view! { <span class=tone.class() title=title>{word}</span> }
}

/// An app's status badge, its reasons as tooltip.
#[component]
pub fn AppStatusBadge(status: AppStatus, reasons: Vec<String>) -> impl IntoView {
    let title = reasons.join("; ");
    view! { <StatusBadge word=app_status_word(status) tone=app_status_tone(status) title/> }
}

/// Marks engine objects that berth created.
#[component]
pub fn ManagedBadge() -> impl IntoView {
    view! { <span class="badge managed" title="created and managed by berth">"berth"</span> }
}

/// What applying would do: each action and why.
#[component]
pub fn PlanBox(plan: Plan, #[prop(into)] id: String) -> impl IntoView {
    view! {
        <div class="plan" id=id role="status">
            {plan.actions.is_empty().then_some("Nothing to do: the container already matches.")}
            <ol>
                {plan
                    .actions
                    .into_iter()
                    .map(|a| view! {
                        <li data-action=a.action.as_str()>
                            <strong>{a.action.as_str()}</strong>
                            {(!a.reasons.is_empty()).then(|| format!(" — {}", a.reasons.join("; ")))}
                        </li>
                    })
                    .collect_view()}
            </ol>
        </div>
    }
}

/// An inline "are you sure" step; focus moves to its confirm button.
/// (Callbacks rather than generic closures: one copy of this in the wasm.)
#[component]
pub fn Confirm(
    #[prop(into)] message: String,
    confirm_label: &'static str,
    confirm_id: &'static str,
    #[prop(into)] on_confirm: Callback<()>,
    #[prop(into)] on_cancel: Callback<()>,
) -> impl IntoView {
    let button = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if let Some(b) = button.get() {
            let _ = b.focus();
        }
    });
    let label = message.clone();
    view! {
        <div class="confirm" role="alertdialog" aria-label=label
            on:keydown=move |ev| if ev.key() == "Escape" { on_cancel.run(()) }>
            <p>{message}</p>
            <div class="actions">
                <button type="button" class="danger" id=confirm_id node_ref=button
                    on:click=move |_| on_confirm.run(())>{confirm_label}</button>
                <button type="button" class="secondary" on:click=move |_| on_cancel.run(())>"Cancel"</button>
            </div>
        </div>
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.3 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM` (UTC).
pub fn format_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The first 12 hex digits of an engine id, as `docker ps` shows them.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_match_themselves_and_what_lies_inside_them() {
        assert!(field_matches("ports", "ports"));
        assert!(field_matches("ports[1].host", "ports"));
        assert!(field_matches("env.A=B", "env"));
        assert!(field_matches("limits.memory_mb", "limits.memory_mb"));
        assert!(!field_matches("portsx", "ports"));
        assert!(!field_matches("limits.cpus", "limits.memory_mb"));
        assert!(!field_matches("name", "names"));
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(187 * 1024 * 1024), "187 MiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }

    #[test]
    fn unix_times_become_utc_dates() {
        assert_eq!(format_unix(0), "1970-01-01 00:00");
        assert_eq!(format_unix(951_782_400), "2000-02-29 00:00");
        assert_eq!(format_unix(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(format_unix(-60), "1969-12-31 23:59");
    }

    #[test]
    fn ids_are_shortened_like_docker_does() {
        assert_eq!(short_id("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn statuses_have_the_agreed_colours() {
        assert_eq!(app_status_tone(AppStatus::Running), Tone::Good);
        assert_eq!(app_status_tone(AppStatus::Unhealthy), Tone::Bad);
        assert_eq!(app_status_tone(AppStatus::Drifted), Tone::Busy);
        assert_eq!(app_status_tone(AppStatus::Unknown), Tone::Idle);
        assert_eq!(container_state_tone("exited"), Tone::Idle);
    }
}
