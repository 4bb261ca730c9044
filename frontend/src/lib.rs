//! The browser entry point: hydrate the server-rendered panel.
// The views are laid out (monomorphized) here: deep pages such as an app's
// need the same limit as the `app` crate.
#![recursion_limit = "256"]

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
