//! The browser panel: Leptos pages rendered on the server, then hydrated by
//! the wasm bundle served from `<site-dir>/pkg`. Pages fetch their data from
//! the REST API in the browser, so the UI has no private back door.

use axum::http::{header, HeaderValue};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes, ResponseOptions};
use leptos_meta::MetaTags;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Config;

/// Name of the bundle produced by `scripts/build-site.sh` (`berth.js`, `berth_bg.wasm`).
pub const OUTPUT_NAME: &str = "berth";

pub fn routes<S: Clone + Send + Sync + 'static>(config: &Config) -> Router<S> {
    let options = LeptosOptions::builder()
        .output_name(OUTPUT_NAME)
        .site_root(config.site_dir.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .build();
    let pages = generate_route_list(app::App);
    let pkg = Router::new()
        .fallback_service(ServeDir::new(config.site_dir.join("pkg")))
        // The bundle's names do not change between builds, so the browser
        // must revalidate rather than trust a cached copy.
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ));
    Router::new()
        .leptos_routes(&options, pages, {
            let options = options.clone();
            move || shell(options.clone())
        })
        .nest_service("/pkg", pkg)
        .with_state(options)
}

/// The HTML document around the app. It sets a per-response CSP whose nonce
/// is the only thing allowing the inline hydration script to run.
fn shell(options: LeptosOptions) -> impl IntoView {
    leptos::nonce::provide_nonce();
    if let (Some(nonce), Some(response)) =
        (leptos::nonce::use_nonce(), use_context::<ResponseOptions>())
    {
        let csp = format!(
            "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
             style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        );
        if let Ok(value) = HeaderValue::from_str(&csp) {
            response.insert_header(header::CONTENT_SECURITY_POLICY, value);
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="stylesheet" href="/pkg/berth.css"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <app::App/>
            </body>
        </html>
    }
}
