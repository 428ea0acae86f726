//! The I/O profile's call sites, named once its stacks are: each sample is labelled with the
//! function that made the call, so `go tool pprof -tagleaf=call_site` (or `-tagfocus`) reads
//! a Go server's I/O by `net/http.(*connReader).Read`, where every stack's leaf is the
//! runtime's `Syscall6`.

use profiler_model::{Label, LabelKey, Profile, callers::user_caller};

/// Labels every sample of an I/O profile with its call site.
pub fn label_call_sites(profile: &mut Profile) {
    for i in 0..profile.samples.len() {
        let site = user_caller(profile, profile.samples[i].stack);
        profile.samples[i]
            .labels
            .push(Label::str(LabelKey::CallSite, site));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_model::fixture::named_stack;
    use profiler_model::{ProfileBuilder, ProfileKind, ValueType};
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_go_read_is_labelled_by_the_function_outside_the_runtime() {
        let mut builder = ProfileBuilder::with_sample_types(
            ProfileKind::Io,
            vec![ValueType::new("calls", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::ZERO,
        );
        let stack = named_stack(
            &mut builder,
            &[
                "internal/runtime/syscall.Syscall6",
                "syscall.read",
                "internal/poll.(*FD).Read",
                "net.(*netFD).Read",
                "net.(*conn).Read",
                "net/http.(*connReader).Read",
                "bufio.(*Reader).fill",
            ],
        );
        builder.add_sample(stack, &[3], vec![]);
        let mut profile = builder.build();
        label_call_sites(&mut profile);
        let label = profile.samples[0]
            .labels
            .iter()
            .find(|l| l.key == LabelKey::CallSite)
            .expect("a call_site label");
        assert_eq!(
            label.value,
            profiler_model::LabelValue::Str("net/http.(*connReader).Read".into())
        );
    }

    #[test]
    fn a_python_read_is_labelled_by_its_python_line() {
        use profiler_model::{FrameKind, Line, Location};
        let mut builder = ProfileBuilder::with_sample_types(
            ProfileKind::Io,
            vec![ValueType::new("calls", "count")],
            SystemTime::UNIX_EPOCH,
            Duration::ZERO,
        );
        let native = |b: &mut ProfileBuilder, name: &str, address| {
            b.location(profiler_model::fixture::location(
                address,
                None,
                vec![profiler_model::fixture::line(name)],
            ))
        };
        let python = |b: &mut ProfileBuilder, function: &str, line| {
            b.location(Location {
                address: 0,
                mapping: None,
                lines: vec![Line {
                    function: function.to_owned(),
                    file: Some("/srv/app/config.py".to_owned()),
                    line,
                }],
                kind: FrameKind::Python,
            })
        };
        // Leaf first: the interpreter's C code, then the Python line that read, its caller.
        let stack = vec![
            native(&mut builder, "_Py_read", 1),
            native(&mut builder, "_io_FileIO_readall_impl", 2),
            python(&mut builder, "Config.load", 12),
            python(&mut builder, "main", 40),
            native(&mut builder, "Py_BytesMain", 3),
        ];
        let stack = builder.stack(stack);
        builder.add_sample(stack, &[1], vec![]);
        let mut profile = builder.build();
        label_call_sites(&mut profile);
        assert!(
            profile.samples[0]
                .labels
                .iter()
                .any(|l| l.key == LabelKey::CallSite
                    && l.value
                        == profiler_model::LabelValue::Str("Config.load (config.py:12)".into()))
        );
    }
}
