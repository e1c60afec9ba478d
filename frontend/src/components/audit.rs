//! Datacenter → Audit: the audit log (every state-changing API call: when, who, what, the
//! answer, from where), newest first, filtered by caller, a page at a time. Needs `Sys.Audit`
//! on `/`; others see the server's refusal.

use kiln_api_types::access::AuditEntry;
use leptos::prelude::*;

use crate::api::{segment, Api};
use crate::components::datacenter_view::{DatacenterTabs, DcTab};
use crate::format;

/// Entries per page.
const PAGE: u32 = 50;

/// The query path of one page (`start` entries skipped, newest first).
pub fn audit_path(start: u32, user: &str) -> String {
    let user = user.trim();
    let mut path = format!("/api2/kiln/audit?start={start}&limit={PAGE}");
    if !user.is_empty() {
        path.push_str("&userfilter=");
        path.push_str(&segment(user));
    }
    path
}

/// "done", "refused" or "failed", from the answer's status.
pub fn outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "done",
        400..=499 => "refused",
        _ => "failed",
    }
}

/// The audit log view.
#[component]
pub fn AuditView(
    /// The Datacenter tab (this view is one of them).
    tab: RwSignal<DcTab>,
) -> impl IntoView {
    let api = Api::expect();
    let entries = RwSignal::new(Vec::<AuditEntry>::new());
    let error = RwSignal::new(None::<String>);
    let start = RwSignal::new(0u32);
    let user = RwSignal::new(String::new());
    let applied = RwSignal::new(String::new());
    Effect::new(move || {
        let path = audit_path(start.get(), &applied.get());
        leptos::task::spawn_local(async move {
            match api.get::<Vec<AuditEntry>>(&path).await {
                Ok(list) => {
                    entries.set(list);
                    error.set(None);
                }
                Err(e) => error.set(Some(format!("Could not load the audit log: {e}"))),
            }
        });
    });
    let filter = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        start.set(0);
        applied.set(user.get_untracked());
    };
    let row = |e: AuditEntry| {
        let who = if e.user.is_empty() {
            "(not logged in)".to_owned()
        } else {
            e.user.clone()
        };
        view! {
            <tr data-testid="audit-row" data-outcome=outcome(e.status)>
                <td>{format::timestamp(e.time)}</td>
                <td>{who}</td>
                <td>{e.method.clone()}</td>
                <td class="mono">{e.path.clone()}</td>
                <td>{format!("{} ({})", e.status, outcome(e.status))}</td>
                <td>{e.client.clone()}</td>
            </tr>
        }
    };

    view! {
        <section class="summary" data-testid="audit-view">
            <DatacenterTabs tab/>
            <div class="summary-head">
                <h2 class="summary-title">"Audit log"</h2>
                <form class="inline-form" on:submit=filter>
                    <label for="audit-user">"User"</label>
                    <input
                        id="audit-user"
                        data-testid="audit-user"
                        placeholder="user@kiln or user@kiln!token"
                        prop:value=move || user.get()
                        on:input=move |ev| user.set(event_target_value(&ev))
                    />
                    <button type="submit" class="button" data-testid="audit-filter">
                        "Filter"
                    </button>
                </form>
            </div>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            <table class="grid" data-testid="audit-table">
                <thead>
                    <tr>
                        <th scope="col">"Time"</th>
                        <th scope="col">"User"</th>
                        <th scope="col">"Method"</th>
                        <th scope="col">"Path"</th>
                        <th scope="col">"Answer"</th>
                        <th scope="col">"Client"</th>
                    </tr>
                </thead>
                <tbody>{move || entries.get().into_iter().map(row).collect_view()}</tbody>
            </table>
            <div class="dialog-buttons">
                <button
                    type="button"
                    class="button"
                    data-testid="audit-newer"
                    disabled=move || start.get() == 0
                    on:click=move |_| start.update(|s| *s = s.saturating_sub(PAGE))
                >
                    "Newer"
                </button>
                <button
                    type="button"
                    class="button"
                    data-testid="audit-older"
                    disabled=move || entries.with(|e| e.len() < PAGE as usize)
                    on:click=move |_| start.update(|s| *s += PAGE)
                >
                    "Older"
                </button>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_the_user_filter_make_the_query() {
        assert_eq!(audit_path(0, ""), "/api2/kiln/audit?start=0&limit=50");
        assert_eq!(
            audit_path(50, " ada@kiln!ci "),
            "/api2/kiln/audit?start=50&limit=50&userfilter=ada@kiln%21ci"
        );
        assert_eq!(outcome(200), "done");
        assert_eq!(outcome(403), "refused");
        assert_eq!(outcome(500), "failed");
    }
}
