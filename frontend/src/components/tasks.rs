//! The task panel at the bottom (newest first, live) and the task log viewer.

use std::time::Duration;

use kiln_api_types::{TaskLogLine, TaskSummary};
use leptos::prelude::*;

use crate::api::{segment, Api};
use crate::components::dialog::Dialog;
use crate::events::ClusterData;
use crate::format;

/// How a task ended, as the panel shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Still running.
    Running,
    /// Finished with `OK`.
    Ok,
    /// Finished with an error (or a warning), with the server's text.
    Failed(String),
}

impl TaskOutcome {
    /// Reads a task's status fields.
    pub fn of(task: &TaskSummary) -> Self {
        if task.status == "running" {
            return TaskOutcome::Running;
        }
        match task.exitstatus.as_deref() {
            Some("OK") => TaskOutcome::Ok,
            Some(other) => TaskOutcome::Failed(other.to_owned()),
            None => TaskOutcome::Failed("unknown".into()),
        }
    }

    /// Test hook / CSS class: `running`, `ok` or `error`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskOutcome::Running => "running",
            TaskOutcome::Ok => "ok",
            TaskOutcome::Failed(_) => "error",
        }
    }

    /// What the status column says.
    pub fn label(&self) -> String {
        match self {
            TaskOutcome::Running => "running".into(),
            TaskOutcome::Ok => "OK".into(),
            TaskOutcome::Failed(error) => format!("Error: {error}"),
        }
    }
}

/// A running task's progress in whole percent, if it reports one.
pub fn percent(task: &TaskSummary) -> Option<u32> {
    task.progress
        .filter(|_| task.status == "running")
        .map(|p| (p.clamp(0.0, 1.0) * 100.0).round() as u32)
}

/// A progress bar for a running task that reports its progress.
#[component]
fn TaskProgress(#[prop(into)] percent: Signal<Option<u32>>) -> impl IntoView {
    move || {
        percent.get().map(|p| {
            view! {
                <div
                    class="task-progress"
                    role="progressbar"
                    data-testid="task-progress"
                    aria-valuemin="0"
                    aria-valuemax="100"
                    aria-valuenow=p.to_string()
                >
                    <div class="task-progress-fill" style:width=format!("{p}%")></div>
                    <span class="task-progress-text">{format!("{p} %")}</span>
                </div>
            }
        })
    }
}

/// A task's description, e.g. `nodejoin n2` (Proxmox shows type and object).
fn description(task: &TaskSummary) -> String {
    if task.id.is_empty() {
        task.kind.clone()
    } else {
        format!("{} {}", task.kind, task.id)
    }
}

/// The task viewer's open task, shared through context so that any action can show its task.
#[derive(Clone, Copy)]
pub struct TaskViewer {
    open: RwSignal<Option<TaskSummary>>,
}

impl TaskViewer {
    /// Creates a closed viewer and provides it as context.
    pub fn provide() -> Self {
        let viewer = TaskViewer {
            open: RwSignal::new(None),
        };
        provide_context(viewer);
        viewer
    }

    /// The viewer provided by [`TaskViewer::provide`].
    pub fn expect() -> Self {
        expect_context()
    }

    /// Opens the viewer on the task with this UPID (as a state-changing call returned it).
    pub fn show_upid(&self, upid: &str) {
        if let Some(task) = crate::vm::task_from_upid(upid) {
            self.open.set(Some(task));
        }
    }
}

/// The bottom panel listing recent tasks; a click opens the task's log.
#[component]
pub fn TaskPanel() -> impl IntoView {
    let data = ClusterData::expect();
    let open_task = TaskViewer::expect().open;
    view! {
        <section class="task-panel" aria-labelledby="task-panel-title" data-testid="task-panel">
            <div class="panel-title" id="task-panel-title">"Tasks"</div>
            <div class="task-scroll">
                <table class="grid task-table">
                    <thead>
                        <tr>
                            <th scope="col">"Start Time"</th>
                            <th scope="col">"End Time"</th>
                            <th scope="col">"Node"</th>
                            <th scope="col">"User name"</th>
                            <th scope="col">"Description"</th>
                            <th scope="col">"Status"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=move || data.tasks.get()
                            key=|task| {
                                (
                                    task.upid.clone(),
                                    task.status.clone(),
                                    task.exitstatus.clone(),
                                    percent(task),
                                )
                            }
                            let:task
                        >
                            <TaskRow task on_open=move |task| open_task.set(Some(task))/>
                        </For>
                    </tbody>
                </table>
                <Show when=move || data.loaded.get() && data.tasks.with(Vec::is_empty)>
                    <p class="empty">"No tasks yet."</p>
                </Show>
            </div>
            {move || {
                open_task
                    .get()
                    .map(|task| {
                        view! { <TaskLogDialog task on_close=move |()| open_task.set(None)/> }
                    })
            }}
        </section>
    }
}

/// One row of the task panel.
#[component]
fn TaskRow(task: TaskSummary, #[prop(into)] on_open: Callback<TaskSummary>) -> impl IntoView {
    let outcome = TaskOutcome::of(&task);
    let end = task.endtime.map(format::timestamp).unwrap_or_default();
    let open = {
        let task = task.clone();
        move || on_open.run(task.clone())
    };
    let open_on_key = {
        let open = open.clone();
        move |event: leptos::ev::KeyboardEvent| {
            if event.key() == "Enter" || event.key() == " " {
                event.prevent_default();
                open();
            }
        }
    };
    view! {
        <tr
            class=format!("task-row {}", outcome.as_str())
            tabindex="0"
            data-testid="task-row"
            data-upid=task.upid.clone()
            data-status=outcome.as_str()
            on:click=move |_| open()
            on:keydown=open_on_key
        >
            <td>{format::timestamp(task.starttime)}</td>
            <td>{end}</td>
            <td>{task.node.clone()}</td>
            <td>{task.user.clone()}</td>
            <td>{description(&task)}</td>
            <td class="task-status">
                {match percent(&task) {
                    Some(p) => view! { <TaskProgress percent=Some(p)/> }.into_any(),
                    None => outcome.label().into_any(),
                }}
            </td>
        </tr>
    }
}

/// The task viewer: status and log of one task, refreshed every second while it runs.
#[component]
pub fn TaskLogDialog(
    /// The task as the panel knew it when clicked.
    task: TaskSummary,
    /// Called when the dialog is dismissed.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let status = RwSignal::new(task.clone());
    let lines = RwSignal::new(Vec::<TaskLogLine>::new());
    let error = RwSignal::new(None::<String>);
    let loading = RwSignal::new(true);
    let node = task.node.clone();
    let upid = task.upid.clone();

    let refresh = move || {
        let (node, upid) = (node.clone(), upid.clone());
        leptos::task::spawn_local(async move {
            // Status first: a log read after the status said "stopped" is complete (read the
            // other way round, a task ending in between left its last lines out for good).
            let summary = api.task_status(&node, &upid).await;
            let log = api.task_log(&node, &upid).await;
            loading.set(false);
            match (log, summary) {
                (Ok(log), Ok(summary)) => {
                    lines.set(log);
                    status.set(summary);
                    error.set(None);
                }
                (Err(e), _) | (_, Err(e)) => error.set(Some(e.to_string())),
            }
        });
    };
    // Effects run in the browser only: load now, then poll while the task runs.
    Effect::new(move || {
        refresh();
        let refresh = refresh.clone();
        let poll = set_interval_with_handle(
            move || {
                if status.with_untracked(|s| s.status == "running") {
                    refresh();
                }
            },
            Duration::from_secs(1),
        );
        if let Ok(poll) = poll {
            on_cleanup(move || poll.clear());
        }
    });

    let stopping = RwSignal::new(false);
    let stop = {
        let (node, upid) = (task.node.clone(), task.upid.clone());
        move |_| {
            let path = format!("nodes/{}/tasks/{}", segment(&node), segment(&upid));
            stopping.set(true);
            leptos::task::spawn_local(async move {
                if let Err(e) = api.delete::<serde_json::Value>(&path).await {
                    error.set(Some(format!("Cannot stop the task: {e}")));
                    stopping.set(false);
                }
            });
        }
    };
    let running = move || status.with(|s| s.status == "running");

    let title = format!("Task viewer: {}", description(&task));
    view! {
        <Dialog title testid="task-log-dialog" on_close>
            <dl class="task-facts">
                <dt>"Status"</dt>
                <dd data-testid="task-log-status">
                    {move || status.with(|s| TaskOutcome::of(s).label())}
                </dd>
                <dt>"Progress"</dt>
                <dd>
                    <TaskProgress percent=Signal::derive(move || status.with(percent))/>
                </dd>
                <dt>"Node"</dt>
                <dd>{task.node.clone()}</dd>
                <dt>"User"</dt>
                <dd>{task.user.clone()}</dd>
                <dt>"Started"</dt>
                <dd>{format::timestamp(task.starttime)}</dd>
                <dt>"UPID"</dt>
                <dd class="mono">{task.upid.clone()}</dd>
            </dl>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            <Show when=running>
                <div class="dialog-buttons">
                    <button
                        type="button"
                        class="button danger"
                        data-testid="task-stop"
                        disabled=move || stopping.get()
                        on:click=stop.clone()
                    >
                        "Stop"
                    </button>
                </div>
            </Show>
            <pre class="task-log" data-testid="task-log" aria-busy=move || loading.get().to_string()>
                {move || {
                    lines
                        .get()
                        .into_iter()
                        .map(|line| format!("{}\n", line.t))
                        .collect::<String>()
                }}
            </pre>
        </Dialog>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: &str, exit: Option<&str>) -> TaskSummary {
        TaskSummary {
            upid: "UPID:n1:1:1:1:nodejoin:n1:root@kiln:".into(),
            node: "n1".into(),
            pid: 1,
            pstart: 1,
            starttime: 1,
            kind: "nodejoin".into(),
            id: "n1".into(),
            user: "root@kiln".into(),
            status: status.into(),
            exitstatus: exit.map(Into::into),
            endtime: None,
            progress: None,
        }
    }

    #[test]
    fn outcome_reads_running_ok_and_errors() {
        assert_eq!(
            TaskOutcome::of(&task("running", None)),
            TaskOutcome::Running
        );
        assert_eq!(
            TaskOutcome::of(&task("stopped", Some("OK"))),
            TaskOutcome::Ok
        );
        let failed = TaskOutcome::of(&task("stopped", Some("node unreachable")));
        assert_eq!(failed.label(), "Error: node unreachable");
        assert_eq!(failed.as_str(), "error");
    }

    #[test]
    fn description_names_type_and_object() {
        assert_eq!(description(&task("running", None)), "nodejoin n1");
    }
}
