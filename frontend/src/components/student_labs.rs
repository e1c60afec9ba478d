//! A student's labs: for each lab, its schedule and the student's own VM with its live state,
//! Start, Stop, the console and Reset (with a confirmation). Nothing else of the cluster.

use kiln_api_types::labs::LabEntry;
use leptos::prelude::*;

use crate::api::Api;
use crate::components::lab_dashboard::ResetDialog;
use crate::components::labs::{schedule, task_pulse};
use crate::components::vm_console::VmConsole;
use crate::events::ClusterData;
use crate::vm::VmState;

/// Set `signal` only when the value changes (a set notifies even for the same value, and
/// the console below must not be rebuilt by a refresh). Called after an `await`, when the card
/// may be gone: a disposed signal is left alone.
fn set_changed<T: PartialEq + Send + Sync + 'static>(signal: RwSignal<T>, value: T) {
    if signal.try_with_untracked(|v| *v != value) == Some(true) {
        signal.set(value);
    }
}

/// The student's labs.
#[component]
pub fn StudentLabs(
    /// The labs the user attends.
    #[prop(into)]
    labs: Signal<Vec<LabEntry>>,
) -> impl IntoView {
    view! {
        <div class="cards" data-testid="student-labs">
            <For each=move || labs.get() key=|l| (l.labid.clone(), l.state.clone(), l.end) let:lab>
                <StudentLabCard lab/>
            </For>
        </div>
    }
}

/// One lab, with the student's VM.
#[component]
fn StudentLabCard(lab: LabEntry) -> impl IntoView {
    let api = Api::expect();
    let data = ClusterData::expect();
    let pulse = task_pulse(data);
    let labid = StoredValue::new(lab.labid.clone());
    // The student's own VM (the lab shows a student only itself).
    let vm = RwSignal::new(None::<(u32, String)>);
    let note = RwSignal::new(None::<String>);
    Effect::new(move || {
        pulse.with(|_| ());
        leptos::task::spawn_local(async move {
            match api.lab(&labid.get_value()).await {
                Ok(d) => {
                    let mine = d.members.into_iter().next();
                    set_changed(vm, mine.as_ref().and_then(|m| m.vmid.zip(m.node.clone())));
                    set_changed(
                        note,
                        match mine {
                            Some(m) if m.vmid.is_none() => Some(
                                "Your VM is not ready yet: your instructor deploys the lab.".into(),
                            ),
                            _ => None,
                        },
                    );
                }
                Err(e) => set_changed(note, Some(format!("Could not load the lab: {e}"))),
            }
        });
    });
    let state = Memo::new(move |_| {
        vm.with(|v| v.as_ref().and_then(|(vmid, _)| data.vm(*vmid)))
            .map(|r| VmState::of(&r))
            .unwrap_or(VmState::Unknown)
    });
    let open = lab.state == "open";
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let console = RwSignal::new(false);
    let resetting = RwSignal::new(false);
    let power = move |action: &'static str| {
        let Some((vmid, node)) = vm.get_untracked() else {
            return;
        };
        busy.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            if let Err(e) = api.vm_action(&node, vmid, action).await {
                error.set(Some(format!("{action} failed: {e}")));
            }
            busy.set(false);
        });
    };
    let vmid_text =
        move || vm.with(|v| v.as_ref().map(|(id, _)| id.to_string()).unwrap_or_default());

    view! {
        <div class="card" data-testid="student-lab" data-labid=lab.labid.clone() data-state=lab.state.clone()>
            <h3>{format!("Lab {}", lab.labid)}</h3>
            {(!lab.comment.is_empty()).then(|| view! { <p>{lab.comment.clone()}</p> })}
            <p class="hint">{format!("{} ({})", schedule(&lab), lab.state)}</p>
            {(!open).then(|| {
                view! {
                    <div class="notice warning" role="status">
                        {if lab.state == "ended" {
                            "The lab has ended: your VM was stopped. Ask your instructor to extend it."
                        } else {
                            "The lab has not started yet: your VM can start once it opens."
                        }}
                    </div>
                }
            })}
            {move || note.get().map(|n| view! { <p class="hint" data-testid="student-vm-note">{n}</p> })}
            <Show when=move || vm.with(Option::is_some)>
                <div class="student-vm" data-testid="student-vm" data-vmid=vmid_text data-status=move || state.get().as_str()>
                    <p>
                        {move || format!("Your VM {}: ", vmid_text())}
                        <strong data-testid="student-vm-state">{move || state.get().as_str()}</strong>
                    </p>
                    <div class="toolbar" role="toolbar" aria-label="Your VM">
                        <button
                            type="button"
                            class="button primary"
                            data-testid="student-vm-start"
                            disabled=move || !open || busy.get() || state.get() != VmState::Stopped
                            on:click=move |_| power("start")
                        >
                            "Start"
                        </button>
                        <button
                            type="button"
                            class="button"
                            data-testid="student-vm-stop"
                            disabled=move || busy.get() || !state.get().has_process()
                            on:click=move |_| power("stop")
                        >
                            "Stop"
                        </button>
                        <button
                            type="button"
                            class="button"
                            data-testid="student-vm-console"
                            aria-pressed=move || console.get().to_string()
                            on:click=move |_| console.update(|c| *c = !*c)
                        >
                            {move || if console.get() { "Hide console" } else { "Console" }}
                        </button>
                        <button
                            type="button"
                            class="button danger"
                            data-testid="student-vm-reset"
                            disabled=move || !open || busy.get()
                            on:click=move |_| resetting.set(true)
                        >
                            "Reset"
                        </button>
                    </div>
                    {move || error.get().map(|e| view! { <div class="notice error" role="alert" data-testid="student-vm-error">{e}</div> })}
                    {move || {
                        let vmid = vm.get().map(|(id, _)| id)?;
                        console.get().then(|| view! { <VmConsole vmid/> })
                    }}
                </div>
            </Show>
        </div>
        {move || {
            let vmid = vm.get().map(|(id, _)| id)?;
            resetting
                .get()
                .then(|| {
                    view! {
                        <ResetDialog
                            labid=labid.get_value()
                            userid=None
                            vmid
                            on_close=move |()| resetting.set(false)
                        />
                    }
                })
        }}
    }
}
