//! A lab's dashboard for its instructor: the schedule, every student's VM with its live
//! state, and the lab's actions — deploy (with the task's progress), start or stop all,
//! import students, extend or end the lab, tear it down — and per student: start, stop, the
//! console, and reset.

use kiln_api_types::labs::{LabAccounts, LabDetail, LabStudent, LabUpdate};
use leptos::prelude::*;

use crate::api::Api;
use crate::components::dialog::Dialog;
use crate::components::lab_accounts::AccountsDialog;
use crate::components::labs::{schedule, task_pulse};
use crate::components::tasks::{percent, TaskViewer};
use crate::components::vm_console::VmConsole;
use crate::events::ClusterData;
use crate::format;
use crate::vm::VmState;

/// A student's VM state: live from the event stream when the VM is in it, else as the lab
/// reported it (`missing` without a VM).
fn live_state(data: ClusterData, student: &LabStudent) -> String {
    student
        .vmid
        .and_then(|vmid| data.vm(vmid))
        .map(|r| VmState::of(&r).as_str().to_owned())
        .unwrap_or_else(|| student.status.clone())
}

/// The dashboard of lab `labid`.
#[component]
pub fn LabDashboard(
    /// The lab.
    labid: String,
    /// Back to the list of labs.
    #[prop(into)]
    on_back: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let data = ClusterData::expect();
    let viewer = TaskViewer::expect();
    let detail = RwSignal::new(None::<LabDetail>);
    let error = RwSignal::new(None::<String>);
    let action_error = RwSignal::new(None::<String>);
    let importing = RwSignal::new(false);
    let imported = RwSignal::new(None::<LabAccounts>);
    let tearing_down = RwSignal::new(false);
    let console = RwSignal::new(None::<(String, u32)>);
    let resetting = RwSignal::new(None::<(String, u32)>);
    let new_end = RwSignal::new(String::new());
    // Set once a teardown is asked for: the lab is about to vanish, so stop reloading it.
    let leaving = RwSignal::new(false);
    let pulse = task_pulse(data);
    let id = StoredValue::new(labid.clone());

    Effect::new(move || {
        pulse.with(|_| ());
        if leaving.get_untracked() {
            return;
        }
        let labid = id.get_value();
        leptos::task::spawn_local(async move {
            match api.lab(&labid).await {
                Ok(d) => {
                    // The dashboard may be gone by now (after a teardown): `try_`.
                    if new_end.try_with_untracked(String::is_empty) == Some(true) {
                        new_end.set(format::datetime_local(d.lab.end));
                    }
                    detail.set(Some(d));
                    error.set(None);
                }
                Err(e) => error.set(Some(format!("Could not load lab {labid}: {e}"))),
            }
        });
    });
    let instructor =
        Memo::new(move |_| detail.with(|d| d.as_ref().is_some_and(|d| d.lab.role == "instructor")));
    let busy = Memo::new(move |_| detail.with(|d| d.as_ref().and_then(|d| d.lab.busy.clone())));
    // The running deployment of this lab, for its progress bar.
    let deploying = Memo::new(move |_| {
        let labid = id.get_value();
        data.tasks.with(|tasks| {
            tasks
                .iter()
                .find(|t| t.kind == "labdeploy" && t.id == labid && t.status == "running")
                .cloned()
        })
    });
    let deploy = move |_| {
        action_error.set(None);
        let labid = id.get_value();
        leptos::task::spawn_local(async move {
            // The task viewer shows the progress and a line per student.
            match api.deploy_lab(&labid).await {
                Ok(upid) => viewer.show_upid(&upid),
                Err(e) => action_error.set(Some(format!("Deploy failed: {e}"))),
            }
        });
    };
    let power = move |action: &'static str| {
        action_error.set(None);
        let labid = id.get_value();
        leptos::task::spawn_local(async move {
            if let Err(e) = api.lab_power(&labid, action).await {
                action_error.set(Some(format!("{action} all failed: {e}")));
            }
        });
    };
    let set_end = move |end: Option<i64>| {
        let Some(end) = end else {
            action_error.set(Some("Enter the new end as a date and time.".into()));
            return;
        };
        action_error.set(None);
        let labid = id.get_value();
        leptos::task::spawn_local(async move {
            let update = LabUpdate {
                end: Some(end),
                ..LabUpdate::default()
            };
            match api.update_lab(&labid, &update).await {
                Ok(()) => {
                    if let Ok(d) = api.lab(&labid).await {
                        new_end.set(format::datetime_local(d.lab.end));
                        detail.set(Some(d));
                    }
                }
                Err(e) => action_error.set(Some(format!("Changing the end failed: {e}"))),
            }
        });
    };

    let head = move || {
        detail.with(|d| {
            d.as_ref().map(|d| {
                let lab = &d.lab;
                view! {
                    <dl class="task-facts" data-testid="lab-facts">
                        <dt>"State"</dt>
                        <dd data-testid="lab-state">{lab.state.clone()}</dd>
                        <dt>"Schedule"</dt>
                        <dd>{schedule(lab)}</dd>
                        <dt>"Template"</dt>
                        <dd>{lab.template.to_string()}</dd>
                        <dt>"Roster"</dt>
                        <dd>{format!("group {} ({} student(s), {} with a VM)", lab.group, lab.students, lab.deployed)}</dd>
                        <dt>"Each student"</dt>
                        <dd>
                            {format!(
                                "{} vCPU(s), {} MiB running",
                                lab.quota.max_vcpus.map_or("any".into(), |v| v.to_string()),
                                lab.quota.max_memory.map_or("any".into(), |v| v.to_string())
                            )}
                        </dd>
                        {(!lab.comment.is_empty()).then(|| view! { <dt>"Comment"</dt><dd>{lab.comment.clone()}</dd> })}
                    </dl>
                }
            })
        })
    };

    view! {
        <section class="summary" data-testid="lab-dashboard" data-labid=labid.clone()>
            <div class="summary-head">
                <h2 class="summary-title">{format!("Lab {labid}")}</h2>
                <button type="button" class="button" data-testid="lab-back" on:click=move |_| on_back.run(())>
                    "All labs"
                </button>
            </div>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            {head}
            <Show when=move || instructor.get()>
                <div class="toolbar" role="toolbar" aria-label="Lab actions">
                    <button type="button" class="button primary" data-testid="lab-deploy" disabled=move || busy.with(Option::is_some) on:click=deploy>
                        "Deploy"
                    </button>
                    <button type="button" class="button" data-testid="lab-start-all" disabled=move || busy.with(Option::is_some) on:click=move |_| power("start")>
                        "Start all"
                    </button>
                    <button type="button" class="button" data-testid="lab-stop-all" disabled=move || busy.with(Option::is_some) on:click=move |_| power("stop")>
                        "Stop all"
                    </button>
                    <button type="button" class="button" data-testid="lab-import" on:click=move |_| importing.set(true)>
                        "Add students"
                    </button>
                    <input
                        type="datetime-local"
                        aria-label="New end"
                        data-testid="lab-end-input"
                        prop:value=move || new_end.get()
                        on:input=move |ev| new_end.set(event_target_value(&ev))
                    />
                    <button
                        type="button"
                        class="button"
                        data-testid="lab-extend"
                        on:click=move |_| set_end(format::parse_datetime_local(&new_end.get_untracked()))
                    >
                        "Set end"
                    </button>
                    <button type="button" class="button" data-testid="lab-end-now" on:click=move |_| set_end(Some(format::now_secs()))>
                        "End now"
                    </button>
                    <button
                        type="button"
                        class="button danger"
                        data-testid="lab-teardown"
                        disabled=move || busy.with(Option::is_some)
                        on:click=move |_| tearing_down.set(true)
                    >
                        "Tear down"
                    </button>
                </div>
            </Show>
            {move || busy.get().map(|b| view! { <div class="notice warning" role="status" data-testid="lab-busy">{format!("{b} in progress…")}</div> })}
            {move || {
                deploying
                    .get()
                    .map(|task| {
                        let pct = percent(&task).unwrap_or(0);
                        view! {
                            <div class="meter-row" data-testid="lab-deploy-progress">
                                <span class="meter-label">"Deploying"</span>
                                <div class="task-progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=pct.to_string()>
                                    <div class="task-progress-fill" style:width=format!("{pct}%")></div>
                                    <span class="task-progress-text">{format!("{pct}%")}</span>
                                </div>
                            </div>
                        }
                    })
            }}
            {move || action_error.get().map(|e| view! { <div class="notice error" role="alert" data-testid="lab-action-error">{e}</div> })}
            <div class="card wide">
                <h3>"Students"</h3>
                <table class="grid" data-testid="lab-students">
                    <thead>
                        <tr>
                            <th scope="col">"Student"</th>
                            <th scope="col">"E-mail"</th>
                            <th scope="col">"VM"</th>
                            <th scope="col">"State"</th>
                            <th scope="col">"Note"</th>
                            <th scope="col"></th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=move || detail.with(|d| d.as_ref().map(|d| d.members.clone()).unwrap_or_default())
                            key=|s| (s.userid.clone(), s.vmid, s.status.clone(), s.error.clone())
                            let:student
                        >
                            <StudentRow student instructor console resetting action_error/>
                        </For>
                    </tbody>
                </table>
            </div>
        </section>
        <Show when=move || importing.get()>
            <ImportDialog
                labid=id.get_value()
                on_close=move |()| importing.set(false)
                on_done=move |a: LabAccounts| {
                    importing.set(false);
                    imported.set(Some(a));
                }
            />
        </Show>
        {move || {
            imported
                .get()
                .map(|a| {
                    view! { <AccountsDialog labid=a.labid.clone() accounts=a.accounts on_close=move |()| imported.set(None)/> }
                })
        }}
        {move || {
            console
                .get()
                .map(|(userid, vmid)| {
                    view! {
                        <Dialog title=format!("Console of {userid} (VM {vmid})") testid="lab-console-dialog" on_close=Callback::new(move |()| console.set(None))>
                            <VmConsole vmid/>
                        </Dialog>
                    }
                })
        }}
        {move || {
            resetting
                .get()
                .map(|(userid, vmid)| {
                    view! {
                        <ResetDialog
                            labid=id.get_value()
                            userid=Some(userid)
                            vmid
                            on_close=move |()| resetting.set(None)
                        />
                    }
                })
        }}
        <Show when=move || tearing_down.get()>
            <TeardownDialog labid=id.get_value() leaving on_close=move |()| tearing_down.set(false) on_done=on_back/>
        </Show>
    }
}

/// One student of the dashboard.
#[component]
fn StudentRow(
    student: LabStudent,
    instructor: Memo<bool>,
    console: RwSignal<Option<(String, u32)>>,
    resetting: RwSignal<Option<(String, u32)>>,
    action_error: RwSignal<Option<String>>,
) -> impl IntoView {
    let api = Api::expect();
    let data = ClusterData::expect();
    let state = {
        let student = student.clone();
        Memo::new(move |_| live_state(data, &student))
    };
    let name = format!("{} {}", student.firstname, student.lastname)
        .trim()
        .to_owned();
    let vm = student.vmid.zip(student.node.clone());
    let power = move |action: &'static str| {
        let Some((vmid, node)) = vm.clone() else {
            return;
        };
        leptos::task::spawn_local(async move {
            if let Err(e) = api.vm_action(&node, vmid, action).await {
                action_error.set(Some(format!("VM {vmid}: {action} failed: {e}")));
            }
        });
    };
    let (start, stop) = (power.clone(), power);
    let userid = student.userid.clone();
    let (console_user, reset_user) = (userid.clone(), userid.clone());
    let vmid = student.vmid;
    view! {
        <tr
            data-testid="lab-student"
            data-userid=student.userid.clone()
            data-vmid=student.vmid.map(|v| v.to_string()).unwrap_or_default()
            data-status=move || state.get()
        >
            <td>
                {student.userid.clone()}
                {(!name.is_empty()).then(|| format!(" ({name})"))}
                {(!student.enrolled).then_some(" — left the roster")}
            </td>
            <td>{student.email.clone()}</td>
            <td>{student.vmid.map_or_else(|| "—".to_owned(), |v| format!("{v} on {}", student.node.clone().unwrap_or_default()))}</td>
            <td>{move || state.get()}</td>
            <td class="field-error">{student.error.clone()}</td>
            <td>
                <div class="toolbar">
                    <button
                        type="button"
                        class="button"
                        data-testid="lab-student-start"
                        disabled=move || vmid.is_none() || state.get() != "stopped"
                        on:click=move |_| start("start")
                    >
                        "Start"
                    </button>
                    <button
                        type="button"
                        class="button"
                        data-testid="lab-student-stop"
                        disabled=move || vmid.is_none() || !matches!(state.get().as_str(), "running" | "paused")
                        on:click=move |_| stop("stop")
                    >
                        "Stop"
                    </button>
                    <button
                        type="button"
                        class="button"
                        data-testid="lab-student-console"
                        disabled=move || vmid.is_none()
                        on:click=move |_| {
                            if let Some(v) = vmid {
                                console.set(Some((console_user.clone(), v)));
                            }
                        }
                    >
                        "Console"
                    </button>
                    <button
                        type="button"
                        class="button"
                        data-testid="lab-student-reset"
                        disabled=move || vmid.is_none() || !instructor.get()
                        on:click=move |_| {
                            if let Some(v) = vmid {
                                resetting.set(Some((reset_user.clone(), v)));
                            }
                        }
                    >
                        "Reset"
                    </button>
                </div>
            </td>
        </tr>
    }
}

/// Confirms a reset: the VM becomes a fresh clone of the template (used by students too).
#[component]
pub fn ResetDialog(
    /// The lab.
    labid: String,
    /// The student (`None`: the caller).
    userid: Option<String>,
    /// The VM.
    vmid: u32,
    /// Closes the dialog.
    #[prop(into)]
    on_close: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let viewer = TaskViewer::expect();
    let sending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let who = userid.clone().unwrap_or_else(|| "your".into());
    let confirm = move |_| {
        sending.set(true);
        let (labid, userid) = (labid.clone(), userid.clone());
        leptos::task::spawn_local(async move {
            match api.reset_lab_vm(&labid, userid).await {
                Ok(upid) => {
                    on_close.run(());
                    viewer.show_upid(&upid);
                }
                Err(e) => {
                    error.set(Some(format!("Reset failed: {e}")));
                    sending.set(false);
                }
            }
        });
    };
    view! {
        <Dialog title=format!("Reset VM {vmid}") testid="lab-reset-dialog" on_close>
            <p>
                {format!(
                    "This stops {} VM {vmid} and makes it a fresh copy of the lab's template: everything done in it is lost.",
                    if who == "your" { "your".to_owned() } else { format!("{who}'s") }
                )}
            </p>
            {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
            <div class="dialog-buttons">
                <button type="button" class="button" on:click=move |_| on_close.run(())>
                    "Cancel"
                </button>
                <button
                    type="button"
                    class="button danger"
                    data-testid="lab-reset-confirm"
                    disabled=move || sending.get()
                    on:click=confirm
                >
                    "Reset"
                </button>
            </div>
        </Dialog>
    }
}

/// Adds students from a CSV (file or text), checked line by line before it is sent.
#[component]
fn ImportDialog(
    labid: String,
    #[prop(into)] on_close: Callback<()>,
    #[prop(into)] on_done: Callback<LabAccounts>,
) -> impl IntoView {
    let api = Api::expect();
    let csv = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let sending = RwSignal::new(false);
    let lines = Memo::new(move |_| {
        csv.with(|t| kiln_api_types::roster::parse_roster(t.as_bytes()).err())
            .filter(|_| !csv.with(String::is_empty))
            .map(|l| kiln_api_types::roster::describe(&l))
    });
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        if lines.with_untracked(Option::is_some) {
            return;
        }
        sending.set(true);
        let labid = labid.clone();
        leptos::task::spawn_local(async move {
            match api.import_students(&labid, csv.get_untracked()).await {
                Ok(accounts) => on_done.run(accounts),
                Err(e) => {
                    error.set(Some(match e.param("csv") {
                        Some(detail) => detail.to_owned(),
                        None => format!("Adding the students failed: {e}"),
                    }));
                    sending.set(false);
                }
            }
        });
    };
    view! {
        <Dialog title="Add students".to_owned() testid="lab-import-dialog" on_close>
            <form class="wizard" on:submit=submit novalidate>
                <p class="hint">
                    "One student per line, below the column names (username, email, firstname, lastname). Their accounts get one-time passwords; deploy the lab again to give them their VMs."
                </p>
                <textarea
                    rows="8"
                    data-testid="lab-import-csv"
                    prop:value=move || csv.get()
                    on:input=move |ev| csv.set(event_target_value(&ev))
                ></textarea>
                {move || {
                    lines
                        .get()
                        .or(error.get())
                        .map(|text| {
                            view! {
                                <ul class="field-error roster-errors" role="alert" data-testid="lab-import-error">
                                    {text.lines().map(|l| view! { <li>{l.to_owned()}</li> }).collect_view()}
                                </ul>
                            }
                        })
                }}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>
                        "Cancel"
                    </button>
                    <button type="submit" class="button primary" data-testid="lab-import-submit" disabled=move || sending.get()>
                        "Add"
                    </button>
                </div>
            </form>
        </Dialog>
    }
}

/// Asks to type the lab id before tearing the lab down.
#[component]
fn TeardownDialog(
    labid: String,
    leaving: RwSignal<bool>,
    #[prop(into)] on_close: Callback<()>,
    #[prop(into)] on_done: Callback<()>,
) -> impl IntoView {
    let api = Api::expect();
    let viewer = TaskViewer::expect();
    let typed = RwSignal::new(String::new());
    let sending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let id = StoredValue::new(labid.clone());
    let confirmed = move || typed.with(|t| t.trim() == id.get_value());
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        if !confirmed() {
            return;
        }
        sending.set(true);
        leaving.set(true);
        let labid = id.get_value();
        leptos::task::spawn_local(async move {
            match api.delete_lab(&labid).await {
                Ok(upid) => {
                    on_close.run(());
                    viewer.show_upid(&upid);
                    on_done.run(());
                }
                Err(e) => {
                    leaving.set(false);
                    error.set(Some(format!("Tear down failed: {e}")));
                    sending.set(false);
                }
            }
        });
    };
    view! {
        <Dialog title=format!("Tear down lab {labid}") testid="lab-teardown-dialog" on_close>
            <form class="confirm-form" on:submit=submit>
                <p>
                    "This stops and removes every student's VM and pool. The lab's pool, roster group and accounts stay. Type the lab id "
                    <strong>{labid.clone()}</strong>
                    " to confirm."
                </p>
                <input type="text" autocomplete="off" data-testid="lab-teardown-input" bind:value=typed/>
                {move || error.get().map(|e| view! { <div class="notice error" role="alert">{e}</div> })}
                <div class="dialog-buttons">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>
                        "Cancel"
                    </button>
                    <button type="submit" class="button danger" data-testid="lab-teardown-confirm" disabled=move || !confirmed() || sending.get()>
                        "Tear down"
                    </button>
                </div>
            </form>
        </Dialog>
    }
}
