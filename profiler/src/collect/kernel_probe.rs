//! Asks the running kernel which BPF features it has, before anything is loaded: a helper
//! or map type is one tiny BPF load or map creation (through aya's probes), the uprobe PMU
//! a sysfs file, BTF-enabled tracepoints a typedef in the kernel's BTF. A question the
//! kernel cannot answer (an unexpected error) falls back to the release number. What the
//! answers mean for the profiles is [`crate::collect::kernel_features::decide`].

use std::path::Path;

use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{BpfHelper, is_helper_supported, is_map_supported, is_program_supported};
use aya::{Btf, Endianness};
use aya_obj::btf::BtfKind;

use crate::collect::kernel_features::{Feature, KernelFeatures, version};

/// Asks the running kernel which features it has, and returns them with its BTF (read from
/// `btf_path`, once: the loader uses it too). Each other question is one tiny program load,
/// map creation or sysfs read.
pub fn probe(btf_path: &Path) -> (KernelFeatures, Option<Btf>) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let kernel_version = version(&release);
    // An unexpected error leaves the question to the release number.
    let by_version = |feature: Feature| kernel_version.is_some_and(|v| v >= feature.first_linux());
    let answer = |feature: Feature, asked: Result<bool, String>| match asked {
        Ok(has) => has,
        Err(err) => {
            log::debug!("cannot ask the kernel for {}: {err}", feature.key());
            by_version(feature)
        }
    };
    let helper = |feature: Feature, program: ProgramType, helper: BpfHelper| {
        answer(
            feature,
            is_helper_supported(program, helper).map_err(|err| err.to_string()),
        )
    };
    let program = |feature: Feature, program: ProgramType| {
        answer(
            feature,
            is_program_supported(program).map_err(|err| err.to_string()),
        )
    };
    let btf = Btf::parse_file(btf_path, Endianness::default());
    if let Err(err) = &btf {
        log::debug!("no kernel BTF at {}: {err}", btf_path.display());
    }
    // The kernel attaches a `tp_btf` program by this typedef of its BTF.
    let btf_tracepoints = btf.as_ref().is_ok_and(|btf| {
        btf.id_by_type_name_kind("btf_trace_sys_enter", BtfKind::Typedef)
            .is_ok()
    });
    // The state argument came with 5.18; its typedef, with the tracepoint itself.
    let sched_switch_state = by_version(Feature::SchedSwitchState)
        && btf.as_ref().is_ok_and(|btf| {
            btf.id_by_type_name_kind("btf_trace_sched_switch", BtfKind::Typedef)
                .is_ok()
        });
    let aya_found = aya::features();
    let uprobe_pmu = Path::new("/sys/bus/event_source/devices/uprobe");
    let present = [
        (Feature::Btf, btf.is_ok()),
        (Feature::GlobalData, aya_found.bpf_global_data()),
        (
            Feature::RingBuffer,
            answer(
                Feature::RingBuffer,
                is_map_supported(MapType::RingBuf).map_err(|err| err.to_string()),
            ),
        ),
        (
            Feature::TracepointPrograms,
            program(Feature::TracepointPrograms, ProgramType::TracePoint),
        ),
        (Feature::ProbeReadKernel, aya_found.bpf_probe_read_kernel()),
        (
            Feature::ProbeReadUser,
            helper(
                Feature::ProbeReadUser,
                ProgramType::KProbe,
                BpfHelper::BPF_FUNC_probe_read_user,
            ),
        ),
        (
            Feature::CurrentTaskBtf,
            helper(
                Feature::CurrentTaskBtf,
                ProgramType::KProbe,
                BpfHelper::BPF_FUNC_get_current_task_btf,
            ),
        ),
        (
            Feature::TaskPtRegs,
            helper(
                Feature::TaskPtRegs,
                ProgramType::KProbe,
                BpfHelper::BPF_FUNC_task_pt_regs,
            ),
        ),
        (
            Feature::PerfEventPrograms,
            program(Feature::PerfEventPrograms, ProgramType::PerfEvent),
        ),
        (
            Feature::GetStack,
            helper(
                Feature::GetStack,
                ProgramType::PerfEvent,
                BpfHelper::BPF_FUNC_get_stack,
            ),
        ),
        (Feature::BtfTracepoints, btf_tracepoints),
        (Feature::Uprobes, uprobe_pmu.join("type").is_file()),
        (
            Feature::Uretprobes,
            uprobe_pmu.join("format/retprobe").is_file(),
        ),
        (Feature::PerfLink, aya_found.bpf_perf_link()),
        (Feature::AttachCookie, aya_found.bpf_cookie()),
        (Feature::SchedSwitchState, sched_switch_state),
    ];
    let mut found = KernelFeatures::complete(&release);
    for (feature, has) in present {
        log::debug!(
            "kernel feature {}: {}",
            feature.key(),
            if has { "present" } else { "missing" }
        );
        if !has {
            found = found.without(feature);
        }
    }
    for feature in played_missing() {
        found = found.without(feature);
    }
    (found, btf.ok())
}

/// The features `PROFILER_KERNEL_WITHOUT` (a comma-separated list of [`Feature::key`]s)
/// says to treat as missing, so tests can play an older kernel on this one.
fn played_missing() -> Vec<Feature> {
    let Some(list) = std::env::var_os("PROFILER_KERNEL_WITHOUT") else {
        return Vec::new();
    };
    let list = list.to_string_lossy();
    list.split(',')
        .filter_map(|key| Feature::ALL.into_iter().find(|f| f.key() == key.trim()))
        .collect()
}
