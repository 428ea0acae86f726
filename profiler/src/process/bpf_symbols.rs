//! The symbols of the BPF programs loaded during the run, read from `/proc/kallsyms`
//! (where the kernel lists each JIT-compiled program as `bpf_prog_<tag>_<name> [bpf]`)
//! while they are loaded: the profiler's own programs are unloaded before kernel frames
//! are symbolized, and other programs may come and go.

use std::collections::HashMap;

/// The module name kallsyms gives BPF programs.
pub const BPF_MODULE: &str = "bpf";

/// The BPF program symbols seen while the run lasted, with the size of each program's JIT
/// image where the kernel told it.
#[derive(Debug, Clone, Default)]
pub struct BpfSymbols {
    /// Start address and name, from kallsyms.
    symbols: HashMap<u64, Box<str>>,
    /// JIT image sizes by program tag (hex, as in the symbol's name).
    sizes: HashMap<String, u64>,
}

impl BpfSymbols {
    /// Adds the BPF programs loaded now: their kallsyms symbols and JIT sizes.
    pub fn snapshot(&mut self) {
        match std::fs::read_to_string("/proc/kallsyms") {
            Ok(text) => self.add_kallsyms(&text),
            Err(err) => log::debug!("cannot read /proc/kallsyms: {err}"),
        }
        for program in aya::programs::loaded_programs().flatten() {
            let size = u64::from(program.size_jitted());
            if size > 0 {
                self.add_size(&format!("{:016x}", program.tag()), size);
            }
        }
    }

    /// Adds the `[bpf]` symbols of kallsyms text.
    pub fn add_kallsyms(&mut self, text: &str) {
        for line in text.lines() {
            if let Some((addr, name, Some(BPF_MODULE))) = parse_line(line) {
                self.symbols.insert(addr, name.into());
            }
        }
    }

    /// Records the JIT size of the program with `tag` (hex).
    pub fn add_size(&mut self, tag: &str, size: u64) {
        self.sizes.insert(tag.to_owned(), size);
    }

    /// The symbols seen: start address and name.
    pub fn symbols(&self) -> &HashMap<u64, Box<str>> {
        &self.symbols
    }

    /// The JIT size of the program a symbol names, by the tag in its name.
    pub fn size_of(&self, name: &str) -> Option<u64> {
        let tag = name.strip_prefix("bpf_prog_")?.get(..16)?;
        self.sizes.get(tag).copied()
    }
}

/// Address, name and module of a kallsyms line (`ffff... t name [module]`).
pub fn parse_line(line: &str) -> Option<(u64, &str, Option<&str>)> {
    let mut fields = line.split_ascii_whitespace();
    let addr = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _kind = fields.next()?;
    let name = fields.next()?;
    let module = fields
        .next()
        .and_then(|m| m.strip_prefix('[')?.strip_suffix(']'));
    (addr != 0).then_some((addr, name, module))
}
