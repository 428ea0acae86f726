//! Where a stack leaves the program: the frames of the C library and the dynamic loader
//! that findings and waker names look past to find the code that made the call.

use crate::{Location, Profile, StackId};

/// Whether a location belongs to the C library or the dynamic loader rather than to the
/// program: the frames a hint should look past to find the code that made the call.
pub fn is_system_library(profile: &Profile, location: &Location) -> bool {
    let Some(mapping) = location.mapping.map(|m| profile.mapping(m)) else {
        return false;
    };
    let file = mapping.path.rsplit('/').next().unwrap_or("");
    [
        "libc.so",
        "libc-",
        "ld-linux",
        "libpthread",
        "libstdc++",
        "libgcc_s",
    ]
    .iter()
    .any(|lib| file.starts_with(lib))
}

/// The function that made a call into the system: the innermost frame of a stack outside the
/// kernel and the system libraries (`read_bytewise` for `read_bytewise -> pread64`).
pub fn user_caller(profile: &Profile, stack: StackId) -> String {
    profile
        .stack(stack)
        .iter()
        .map(|&id| profile.location(id))
        .filter(|loc| !loc.kind.is_kernel() && !is_system_library(profile, loc))
        .flat_map(|loc| loc.lines.iter())
        .map(|line| line.function.clone())
        .next()
        .unwrap_or_else(|| "[unknown]".to_owned())
}
