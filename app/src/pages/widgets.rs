//! Small pieces shared by the pages.

use leptos::prelude::*;

use crate::client::ClientError;

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

/// `aria-invalid` for an input whose field the last error named.
pub fn invalid(
    error: RwSignal<Option<ClientError>>,
    field: &'static str,
) -> impl Fn() -> &'static str {
    move || {
        if error.with(|e| e.as_ref().and_then(|e| e.field.as_deref()) == Some(field)) {
            "true"
        } else {
            "false"
        }
    }
}
