//! Tells from a stack's function names which language wrote it and where user code starts,
//! so hints can name the fix in that language.

/// The language a call site's code is written in, as far as its frames tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// C, or anything without the marks of the others.
    C,
    /// C++ (`std::` names without Rust's marks).
    Cpp,
    /// Rust (`std::io::`, `core::`, `alloc::`, closures `{{closure}}`).
    Rust,
    /// Go (`runtime.`, `syscall.`, `os.(*File)`).
    Go,
}

/// Guesses the language of a stack from its function names, innermost first.
pub fn detect<'a>(functions: impl IntoIterator<Item = &'a str>) -> Language {
    let mut cpp = false;
    for name in functions {
        if name.starts_with("runtime.")
            || name.starts_with("syscall.")
            || name.starts_with("internal/poll.")
            || name.starts_with("os.(*File)")
        {
            return Language::Go;
        }
        if name.contains("{{closure}}")
            || name.starts_with("std::")
            || name.starts_with("<std::")
            || name.starts_with("core::")
            || name.starts_with("<core::")
            || name.starts_with("alloc::")
            || name.starts_with("<alloc::")
        {
            // Rust's std paths and C++'s both start with std::; Rust's trait impls and
            // closures do not exist in C++, and C++'s std has basic_ and __ names.
            if !name.contains("basic_") && !name.contains("std::__") {
                return Language::Rust;
            }
        }
        if name.contains("::") {
            cpp = true;
        }
    }
    if cpp { Language::Cpp } else { Language::C }
}

pub use profiler_model::callers::{is_system_library, user_caller};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_languages() {
        assert_eq!(detect(["read", "read_bytewise", "main"]), Language::C);
        assert_eq!(
            detect([
                "read",
                "<std::fs::File as std::io::Read>::read",
                "app::main"
            ]),
            Language::Rust
        );
        assert_eq!(
            detect(["syscall.Syscall", "os.(*File).Read", "main.main"]),
            Language::Go
        );
        assert_eq!(
            detect(["write", "std::basic_ostream<char>::flush", "Logger::log"]),
            Language::Cpp
        );
        assert_eq!(detect(["app::run::{{closure}}"]), Language::Rust);
    }
}
