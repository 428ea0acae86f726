//! Names kernel addresses from `/proc/kallsyms`: the kernel's own code, module code (with
//! its module) and BPF programs (`bpf_prog_<tag>_<name>`, listed as `[bpf]` symbols).
//!
//! BPF programs are listed only while they are loaded, and the profiler's own are gone by
//! the time it symbolizes, so their symbols are snapshot while the run lasts
//! ([`BpfSymbols::snapshot`]). kallsyms gives no sizes: an address is named after the
//! nearest symbol below it only inside the region that symbol belongs to (the kernel's
//! text, a module's range from `/proc/modules`, a BPF program's JIT image), so an address
//! past the end of the kernel's text is not taken for its last symbol.

use std::collections::HashMap;

use crate::process::bpf_symbols::{BPF_MODULE, BpfSymbols, parse_line};

/// What a kernel address is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelName {
    /// A function of the kernel's own text.
    Kernel(String),
    /// A function of a loaded module, and the module.
    Module {
        /// The function.
        function: String,
        /// The module's name.
        module: String,
    },
    /// A BPF program (or one of its functions): `bpf_prog_<tag>_<name>`.
    Bpf(String),
}

impl KernelName {
    /// The function name.
    pub fn function(&self) -> &str {
        match self {
            Self::Kernel(f) | Self::Bpf(f) | Self::Module { function: f, .. } => f,
        }
    }
}

/// One text symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ksym {
    addr: u64,
    name: Box<str>,
    /// Index into [`Kallsyms::modules`], or `None` for the kernel's own text.
    module: Option<usize>,
}

/// A loaded module's range, from `/proc/modules`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Module {
    name: Box<str>,
    start: u64,
    end: u64,
}

/// The kernel's text symbols, by address.
#[derive(Debug, Clone, Default)]
pub struct Kallsyms {
    syms: Vec<Ksym>,
    modules: Vec<Module>,
    /// The kernel's own text: `_stext` to `_etext`.
    text: Option<(u64, u64)>,
    /// BPF program symbols, by address, each with where it ends.
    bpf: Vec<(u64, u64, Box<str>)>,
}

impl Kallsyms {
    /// The kernel's symbols now, with the BPF programs seen during the run.
    pub fn read(bpf: &BpfSymbols) -> std::io::Result<Self> {
        let kallsyms = std::fs::read_to_string("/proc/kallsyms")?;
        let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
        Ok(Self::parse(&kallsyms, &modules, bpf))
    }

    /// The symbols of `kallsyms` text, modules of `/proc/modules` text, and `bpf`.
    pub fn parse(kallsyms: &str, modules: &str, bpf: &BpfSymbols) -> Self {
        let mut out = Self {
            modules: parse_modules(modules),
            ..Self::default()
        };
        let mut module_index: HashMap<String, usize> = out
            .modules
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.to_string(), i))
            .collect();
        let (mut stext, mut etext) = (None, None);
        let mut bpf_syms = bpf.symbols().clone();
        for line in kallsyms.lines() {
            let Some((addr, name, module)) = parse_line(line) else {
                continue;
            };
            match module {
                None if name == "_stext" => stext = Some(addr),
                None if name == "_etext" => etext = Some(addr),
                _ => {}
            }
            if !is_text(line) {
                continue;
            }
            let module = match module {
                None => None,
                Some(BPF_MODULE) => {
                    bpf_syms.insert(addr, name.into());
                    continue;
                }
                Some(module) => Some(match module_index.get(module) {
                    Some(&i) => i,
                    // A pseudo-module without a range of its own (`__builtin__ftrace`):
                    // its symbols end where the next one starts.
                    None => {
                        out.modules.push(Module {
                            name: module.into(),
                            start: 0,
                            end: 0,
                        });
                        module_index.insert(module.to_owned(), out.modules.len() - 1);
                        out.modules.len() - 1
                    }
                }),
            };
            out.syms.push(Ksym {
                addr,
                name: name.into(),
                module,
            });
        }
        out.syms.sort_by_key(|s| s.addr);
        out.text = stext.zip(etext);
        let mut bpf_sorted: Vec<(u64, Box<str>)> = bpf_syms.into_iter().collect();
        bpf_sorted.sort_by_key(|&(addr, _)| addr);
        for (i, (addr, name)) in bpf_sorted.iter().enumerate() {
            let next = bpf_sorted.get(i + 1).map_or(u64::MAX, |&(a, _)| a);
            // Without its program's size, a symbol is taken to run up to the next one
            // (programs are packed together), and at most a page for the last one.
            let end = bpf
                .size_of(name)
                .map_or(next.min(addr.saturating_add(4096)), |size| {
                    addr.saturating_add(size).min(next)
                });
            out.bpf.push((*addr, end, name.clone()));
        }
        out
    }

    /// The name of kernel address `addr`, or `None` when no symbol's region holds it.
    pub fn lookup(&self, addr: u64) -> Option<KernelName> {
        let i = self.bpf.partition_point(|&(start, _, _)| start <= addr);
        if let Some((_, end, name)) = i.checked_sub(1).map(|i| &self.bpf[i])
            && addr < *end
        {
            return Some(KernelName::Bpf(name.to_string()));
        }
        let i = self.syms.partition_point(|s| s.addr <= addr);
        let sym = &self.syms[..i].last()?;
        match sym.module {
            None => {
                let (start, end) = self.text?;
                (start..end)
                    .contains(&addr)
                    .then(|| KernelName::Kernel(sym.name.to_string()))
            }
            Some(m) => {
                let module = &self.modules[m];
                let inside = if module.end > module.start {
                    (module.start..module.end).contains(&addr)
                } else {
                    // No range known: up to the next symbol, at most a page on.
                    let next = self.syms.get(i).map_or(u64::MAX, |s| s.addr);
                    addr < next && addr - sym.addr < 4096
                };
                inside.then(|| KernelName::Module {
                    function: sym.name.to_string(),
                    module: module.name.to_string(),
                })
            }
        }
    }
}

/// Whether a kallsyms line is a code symbol (`t`, `T`, `w`, `W`): data symbols such as
/// `__stop_runtime_ptr_*` are never where a stack frame is.
fn is_text(line: &str) -> bool {
    matches!(
        line.split_ascii_whitespace().nth(1),
        Some("t" | "T" | "w" | "W")
    )
}

/// Modules and their ranges from `/proc/modules` (`name size refs deps state address`).
fn parse_modules(text: &str) -> Vec<Module> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let size: u64 = fields.get(1)?.parse().ok()?;
            let start = u64::from_str_radix(fields.get(5)?.strip_prefix("0x")?, 16).ok()?;
            Some(Module {
                name: (*fields.first()?).into(),
                start,
                end: start.checked_add(size)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81000000 T _stext
ffffffff81000100 T do_syscall_64
ffffffff81000200 t helper
ffffffff82000000 T _etext
ffffffff83b28974 R __stop_runtime_ptr_USER_PTR_MAX
ffffffffc0100000 t bpf_prog_0123456789abcdef_on_sample\t[bpf]
ffffffffc0279010 T fuse_dev_init\t[fuse]
ffffffffc02791d0 T fuse_ctl_init\t[fuse]
ffffffffc0300000 d fuse_data\t[fuse]
ffffffffc212d000 t ftrace_trampoline\t[__builtin__ftrace]
";
    const MODULES: &str = "fuse 20480 1 - Live 0xffffffffc0279000\n";

    fn table(bpf: &BpfSymbols) -> Kallsyms {
        Kallsyms::parse(KALLSYMS, MODULES, bpf)
    }

    #[test]
    fn kernel_text_is_named_within_its_bounds() {
        let k = table(&BpfSymbols::default());
        assert_eq!(
            k.lookup(0xffffffff81000150),
            Some(KernelName::Kernel("do_syscall_64".into()))
        );
        assert_eq!(k.lookup(0xffffffff81000250).unwrap().function(), "helper");
        // Past the kernel's text, the last symbol before is not the name.
        assert_eq!(k.lookup(0xffffffff83b28980), None);
        assert_eq!(k.lookup(0x1000), None);
    }

    #[test]
    fn module_code_carries_its_module() {
        let k = table(&BpfSymbols::default());
        assert_eq!(
            k.lookup(0xffffffffc0279100),
            Some(KernelName::Module {
                function: "fuse_dev_init".into(),
                module: "fuse".into()
            })
        );
        // Beyond the module's range (20480 bytes from its base).
        assert_eq!(k.lookup(0xffffffffc0279000 + 20480), None);
        assert_eq!(
            k.lookup(0xffffffffc212d010).unwrap(),
            KernelName::Module {
                function: "ftrace_trampoline".into(),
                module: "__builtin__ftrace".into()
            }
        );
    }

    #[test]
    fn bpf_programs_come_from_the_run_snapshot_with_their_size() {
        // Listed in kallsyms now: a page is assumed without a size.
        let k = table(&BpfSymbols::default());
        assert_eq!(
            k.lookup(0xffffffffc0100010),
            Some(KernelName::Bpf(
                "bpf_prog_0123456789abcdef_on_sample".into()
            ))
        );
        // Gone from kallsyms by the end of the run, seen during it, with its JIT size.
        let mut bpf = BpfSymbols::default();
        bpf.add_kallsyms("ffffffffc0400000 t bpf_prog_fedcba9876543210_gone\t[bpf]\n");
        bpf.add_size("fedcba9876543210", 0x2000);
        let k = table(&bpf);
        assert_eq!(
            k.lookup(0xffffffffc0401ff0).unwrap().function(),
            "bpf_prog_fedcba9876543210_gone"
        );
        assert_eq!(k.lookup(0xffffffffc0402000), None);
    }

    #[test]
    fn this_hosts_kallsyms_name_a_kernel_function() {
        let Ok(k) = Kallsyms::read(&BpfSymbols::default()) else {
            eprintln!("skipping: /proc/kallsyms is not readable");
            return;
        };
        let Some(sym) = k.syms.iter().find(|s| &*s.name == "do_syscall_64") else {
            eprintln!("skipping: kallsyms shows no addresses (not root?)");
            return;
        };
        assert_eq!(
            k.lookup(sym.addr + 1),
            Some(KernelName::Kernel("do_syscall_64".into()))
        );
    }
}
