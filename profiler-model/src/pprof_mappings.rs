//! How pprof's mappings are written: the main executable first, so `go tool pprof` names
//! the program, and each mapping's `has_*` flags as its locations support them.

use crate::{Location, Profile};

/// The order mappings are written in: the main executable's first, the others as they
/// were interned.
pub(super) fn mapping_order(profile: &Profile) -> Vec<usize> {
    let mut order: Vec<usize> = (0..profile.mappings.len()).collect();
    if let Some(main) = main_executable(profile) {
        order.retain(|&m| m != main);
        order.insert(0, main);
    }
    order
}

/// The mapping of the program the samples ran in: of the mappings of files that are not
/// shared libraries (nor pseudo files such as `[vdso]` or the kernel's), the one in the
/// stacks of the most samples, weighted by the default sample value. In a whole-host
/// profile that is the busiest program's.
fn main_executable(profile: &Profile) -> Option<usize> {
    let program: Vec<bool> = profile
        .mappings
        .iter()
        .map(|m| {
            let name = m.path.rsplit('/').next().unwrap_or("");
            m.path.starts_with('/') && !name.is_empty() && !name.contains(".so")
        })
        .collect();
    let mut weight = vec![0u128; profile.mappings.len()];
    let mut seen = Vec::new();
    for sample in &profile.samples {
        let value = sample
            .values
            .get(profile.default_sample_type)
            .map_or(0, |&v| u128::try_from(v).unwrap_or(0));
        seen.clear();
        for &loc in profile.stack(sample.stack) {
            if let Some(m) = profile.location(loc).mapping.map(|m| m.index())
                && program[m]
                && !seen.contains(&m)
            {
                seen.push(m);
                // A sample of value 0 still says the program ran.
                weight[m] += value.max(1);
            }
        }
    }
    // The first of equals, so that the choice does not depend on anything but the data.
    let (main, &best) = weight.iter().enumerate().rev().max_by_key(|&(_, w)| *w)?;
    (best > 0).then_some(main)
}

/// The symbolic information the locations of one mapping carry.
///
/// A "has" flag is set only when every location has it, so that pprof, which may
/// symbolize mappings lacking information, is never told a partly symbolized one is done.
#[derive(Clone, Copy)]
pub(super) struct MappingFlags {
    pub(super) any: bool,
    pub(super) functions: bool,
    pub(super) filenames: bool,
    pub(super) line_numbers: bool,
    pub(super) inline_frames: bool,
}

impl Default for MappingFlags {
    fn default() -> Self {
        Self {
            any: false,
            functions: true,
            filenames: true,
            line_numbers: true,
            inline_frames: false,
        }
    }
}

impl MappingFlags {
    pub(super) fn add(&mut self, loc: &Location) {
        self.any = true;
        self.functions &= loc.kind.is_named();
        self.filenames &= loc.lines.iter().all(|l| l.file.is_some());
        self.line_numbers &= loc.lines.iter().all(|l| l.line != 0);
        self.inline_frames |= loc.lines.len() > 1;
    }
}
