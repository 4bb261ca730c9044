//! An app's live output and resource use, followed over server-sent events
//! while the page is open (the streams close when it is left).

use std::collections::VecDeque;

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::super::widgets::human_size;
use crate::api::{LogLine, StatsSample};
use crate::client::{self, StreamEvent};

/// Lines kept in the logs panel.
const MAX_LINES: usize = 1000;
/// Samples kept for the charts: about a minute.
const SAMPLES: usize = 60;
const CHART_W: f64 = 300.0;
const CHART_H: f64 = 60.0;

fn push_capped<T>(buf: &mut VecDeque<T>, item: T, cap: usize) {
    if buf.len() == cap {
        buf.pop_front();
    }
    buf.push_back(item);
}

/// Ties a stream's life to the current owner: it closes on cleanup (when
/// the page is left).
fn keep_until_cleanup(stream: client::Stream) {
    let stream = StoredValue::new_local(stream);
    on_cleanup(move || stream.dispose());
}

#[component]
pub fn LogsPanel(name: String) -> impl IntoView {
    let lines = RwSignal::new(VecDeque::<LogLine>::new());
    let paused = RwSignal::new(false);
    // What the panel shows while paused, and how much arrived meanwhile.
    let frozen = RwSignal::new(String::new());
    let held = RwSignal::new(0usize);
    let note = RwSignal::new(None::<String>);
    let streamed = RwSignal::new(false);
    let pre = NodeRef::<leptos::html::Pre>::new();

    let push = move |mut line: LogLine| {
        line.text
            .truncate(line.text.trim_end_matches(['\n', '\r']).len());
        lines.update(|l| push_capped(l, line, MAX_LINES));
        if paused.get_untracked() {
            held.update(|h| *h += 1);
        }
    };

    Effect::new(move |_| {
        let name = name.clone();
        let recent = format!("/api/v1/apps/{name}/logs?tail=200");
        spawn_local(async move {
            match client::get::<Vec<LogLine>>(&recent).await {
                // The live stream may have answered first, with the same lines.
                Ok(v) if !streamed.get_untracked() => v.into_iter().for_each(push),
                Ok(_) => {}
                Err(e) => note.set(Some(e.message)),
            }
        });
        // The stream starts with the same last 200 lines (again after each
        // reconnect), so its first line after connecting replaces the panel.
        let mut replace = false;
        let stream = client::follow::<LogLine>(
            &format!("/api/v1/apps/{name}/logs?tail=200&follow=true"),
            move |ev| match ev {
                StreamEvent::Open => replace = true,
                StreamEvent::Item(line) => {
                    if std::mem::take(&mut replace) {
                        streamed.set(true);
                        note.set(None);
                        lines.update(VecDeque::clear);
                    }
                    push(line);
                }
                StreamEvent::Problem(m) => note.set(Some(m)),
                // Keep a more precise message (e.g. why the tail failed).
                StreamEvent::Closed => note.update(|n| {
                    n.get_or_insert_with(|| "Live output stopped.".into());
                }),
            },
        );
        keep_until_cleanup(stream);
    });

    let text = move || {
        lines.with(|l| {
            l.iter()
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
    };
    // Keep the newest line in view unless paused.
    Effect::new(move |_| {
        lines.track();
        if let (Some(pre), false) = (pre.get(), paused.get()) {
            pre.set_scroll_top(pre.scroll_height());
        }
    });
    let toggle = move |_| {
        if paused.get_untracked() {
            held.set(0);
            paused.set(false);
        } else {
            frozen.set(text());
            paused.set(true);
        }
    };

    view! {
        <section aria-labelledby="logs-heading">
            <div class="section-head">
                <h2 id="logs-heading">"Logs"</h2>
                <button type="button" class="secondary" id="logs-pause" aria-pressed=move || paused.get().to_string()
                    on:click=toggle>
                    {move || if paused.get() { format!("Resume ({} new)", held.get()) } else { "Pause".into() }}
                </button>
            </div>
            {move || note.get().map(|n| view! { <p class="muted" role="status">{n}</p> })}
            <pre id="logs" class="logs" node_ref=pre tabindex="0" aria-label="Container output">
                {move || if paused.get() { frozen.get() } else { text() }}
            </pre>
        </section>
    }
}

/// SVG polyline points for `values` scaled to `max`, newest at the right.
pub fn polyline(values: &[f64], max: f64) -> String {
    let step = CHART_W / (SAMPLES - 1) as f64;
    let offset = SAMPLES.saturating_sub(values.len());
    let max = if max > 0.0 { max } else { 1.0 };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = (offset + i) as f64 * step;
            let y = CHART_H - (v / max).clamp(0.0, 1.0) * CHART_H;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[component]
fn Chart(
    label: &'static str,
    points: impl Fn() -> String + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <svg class="chart" viewBox=format!("0 0 {CHART_W} {CHART_H}") preserveAspectRatio="none"
            role="img" aria-label=label>
            <polyline points=points/>
        </svg>
    }
}

#[component]
pub fn StatsPanel(name: String) -> impl IntoView {
    let samples = RwSignal::new(VecDeque::<StatsSample>::new());
    let note = RwSignal::new(None::<String>);

    Effect::new(move |_| {
        let stream = client::follow::<StatsSample>(
            &format!("/api/v1/apps/{name}/stats?stream=true"),
            move |ev| match ev {
                StreamEvent::Open => note.set(None),
                StreamEvent::Item(s) => samples.update(|v| push_capped(v, s, SAMPLES)),
                StreamEvent::Problem(m) => note.set(Some(m)),
                StreamEvent::Closed => note.set(Some("Live statistics stopped.".into())),
            },
        );
        keep_until_cleanup(stream);
    });

    let latest = move || samples.with(|s| s.back().cloned());
    let cpu_text = move || {
        latest()
            .map(|s| format!("{:.1} %", s.cpu_percent))
            .unwrap_or_else(|| "—".into())
    };
    let memory_text = move || {
        latest()
            .map(|s| match s.memory_limit_bytes {
                0 => human_size(s.memory_bytes),
                limit => format!("{} of {}", human_size(s.memory_bytes), human_size(limit)),
            })
            .unwrap_or_else(|| "—".into())
    };
    let other_text = move || {
        latest().map(|s| {
            format!(
                "{} processes · network ↓ {} ↑ {} · disk read {} written {}",
                s.pids,
                human_size(s.net_rx_bytes),
                human_size(s.net_tx_bytes),
                human_size(s.block_read_bytes),
                human_size(s.block_write_bytes)
            )
        })
    };
    let cpu_points = move || {
        samples.with(|s| {
            let v: Vec<f64> = s.iter().map(|s| s.cpu_percent).collect();
            polyline(&v, v.iter().copied().fold(100.0, f64::max))
        })
    };
    let memory_points = move || {
        samples.with(|s| {
            let v: Vec<f64> = s.iter().map(|s| s.memory_bytes as f64).collect();
            let limit = s.back().map_or(0.0, |s| s.memory_limit_bytes as f64);
            polyline(&v, v.iter().copied().fold(limit, f64::max))
        })
    };

    view! {
        <section aria-labelledby="stats-heading">
            <h2 id="stats-heading">"Resources"</h2>
            {move || note.get().map(|n| view! { <p class="muted" role="status">{n}</p> })}
            <div class="charts">
                <figure>
                    <figcaption>"CPU "<strong id="cpu">{cpu_text}</strong></figcaption>
                    <Chart label="CPU use over the last minute" points=cpu_points/>
                </figure>
                <figure>
                    <figcaption>"Memory "<strong id="memory">{memory_text}</strong></figcaption>
                    <Chart label="Memory use over the last minute" points=memory_points/>
                </figure>
            </div>
            <p class="muted">{other_text}</p>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_chart_spans_the_width_and_scales_to_max() {
        let values: Vec<f64> = (0..SAMPLES)
            .map(|i| if i % 2 == 0 { 0.0 } else { 50.0 })
            .collect();
        let points = polyline(&values, 100.0);
        let pairs: Vec<&str> = points.split(' ').collect();
        assert_eq!(pairs.len(), SAMPLES);
        assert_eq!(pairs[0], "0.0,60.0");
        assert_eq!(pairs[1], "5.1,30.0");
        assert_eq!(pairs[SAMPLES - 1], "300.0,30.0");
    }

    #[test]
    fn a_short_history_is_drawn_at_the_right_and_clamped() {
        let points = polyline(&[200.0, 0.0], 100.0);
        assert_eq!(
            points,
            format!("{:.1},0.0 300.0,60.0", 58.0 * CHART_W / 59.0)
        );
        assert_eq!(polyline(&[], 100.0), "");
        assert_eq!(polyline(&[5.0], 0.0), "300.0,0.0");
    }

    #[test]
    fn buffers_drop_their_oldest_item_when_full() {
        let mut buf = VecDeque::new();
        for i in 0..5 {
            push_capped(&mut buf, i, 3);
        }
        assert_eq!(buf, [2, 3, 4]);
    }
}
