//! A labelled usage bar (CPU, memory), as in Proxmox's summary panels.

use leptos::prelude::*;

/// A usage bar for a 0.0..=1.0 fraction with a text such as `1.00 GiB of 4.00 GiB`.
#[component]
pub fn Meter(
    /// What is measured, e.g. `Memory usage`.
    label: &'static str,
    /// The fraction used, 0.0..=1.0.
    #[prop(into)]
    fraction: Signal<f64>,
    /// Text shown beside the bar.
    #[prop(into)]
    text: Signal<String>,
) -> impl IntoView {
    let level = move || match fraction.get() {
        f if f >= 0.9 => "meter critical",
        f if f >= 0.7 => "meter warning",
        _ => "meter",
    };
    view! {
        <div class="meter-row">
            <span class="meter-label">{label}</span>
            <div
                class=level
                role="meter"
                aria-label=label
                aria-valuemin="0"
                aria-valuemax="100"
                aria-valuenow=move || format!("{:.0}", fraction.get() * 100.0)
            >
                <div
                    class="meter-fill"
                    style:width=move || format!("{:.1}%", fraction.get().clamp(0.0, 1.0) * 100.0)
                ></div>
            </div>
            <span class="meter-text">{text}</span>
        </div>
    }
}
