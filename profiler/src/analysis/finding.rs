//! One finding as one value: what it is about, its title, details and hint in words, and
//! where the report's flame graph should look. The words are made once ([`super::words`]);
//! the terminal summary and the HTML report only lay them out.

use profiler_model::ProfileKind;

/// What a finding is about; the report's panel groups and colours by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// A small-I/O hot path (its case is a detail).
    SmallIo,
    /// A futex several threads waited on, or a Go lock or channel goroutines waited at.
    Contention,
    /// Allocator frames in many CPU samples.
    Allocation,
    /// Garbage-collector frames in many CPU samples.
    GarbageCollection,
    /// A heap site making many small allocations.
    SmallAllocations,
    /// A heap site whose memory in use only grew.
    LeakSuspect,
    /// Go's read/write syscalls in many CPU samples (the summary shows it; the report's
    /// panel does not list it).
    GoSmallIo,
    /// A thread off CPU for a large share of the window, for a reason with a fix.
    OffCpu,
    /// A JVM or Node.js process whose CPU samples are mostly in JIT code with no name.
    UnnamedJit,
}

impl FindingKind {
    /// The name the report's data and script use.
    pub fn name(self) -> &'static str {
        match self {
            Self::SmallIo => "small-io",
            Self::Contention => "contention",
            Self::Allocation => "allocation",
            Self::GarbageCollection => "gc",
            Self::SmallAllocations => "small-allocations",
            Self::LeakSuspect => "leak-suspect",
            Self::GoSmallIo => "go-small-io",
            Self::OffCpu => "off-cpu",
            Self::UnnamedJit => "unnamed-jit",
        }
    }
}

/// A piece of a sentence.
///
/// Names and target strings are kept apart from the words around them, since each
/// renderer shows them its own way: the terminal escapes what a target wrote and may cut a
/// long name, the report shows both whole. Some findings read shorter in the terminal's
/// narrow lines than in the report; [`Span::Full`] and [`Span::Brief`] hold the words only
/// one reading has, so both readings are made here, side by side.
#[derive(Debug, Clone, PartialEq)]
pub enum Span {
    /// Words of ours.
    Words(String),
    /// A function name or a call path.
    Name(String),
    /// Something else the target controls (a command name).
    Target(String),
    /// Only in the full reading (the report).
    Full(Vec<Span>),
    /// Only in the brief reading (the terminal summary).
    Brief(Vec<Span>),
}

/// How much of a [`Text`] to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Everything but the brief-only words: the report.
    Full,
    /// Everything but the full-only words: the terminal summary.
    Brief,
}

/// A sentence made of [`Span`]s.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Text(pub Vec<Span>);

impl Text {
    /// A sentence of our words only.
    pub fn words(words: impl Into<String>) -> Self {
        Self(vec![Span::Words(words.into())])
    }

    /// Appends our words.
    pub fn push(mut self, words: impl Into<String>) -> Self {
        self.0.push(Span::Words(words.into()));
        self
    }

    /// Appends a name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.0.push(Span::Name(name.into()));
        self
    }

    /// Appends a string the target controls.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.0.push(Span::Target(target.into()));
        self
    }

    /// Appends spans only one reading has.
    pub fn only(mut self, reading: Reading, spans: Text) -> Self {
        self.0.push(match reading {
            Reading::Full => Span::Full(spans.0),
            Reading::Brief => Span::Brief(spans.0),
        });
        self
    }

    /// Appends another sentence's spans.
    pub fn then(mut self, more: Text) -> Self {
        self.0.extend(more.0);
        self
    }

    /// The sentence in `reading`, names shown by `name` and target strings by `target`.
    pub fn render(
        &self,
        reading: Reading,
        name: &dyn Fn(&str) -> String,
        target: &dyn Fn(&str) -> String,
    ) -> String {
        let mut out = String::new();
        render_spans(&self.0, reading, name, target, &mut out);
        out
    }

    /// The full reading, every name and target string as it is (the report escapes on
    /// its own).
    pub fn full(&self) -> String {
        self.render(Reading::Full, &str::to_owned, &str::to_owned)
    }
}

fn render_spans(
    spans: &[Span],
    reading: Reading,
    name: &dyn Fn(&str) -> String,
    target: &dyn Fn(&str) -> String,
    out: &mut String,
) {
    for span in spans {
        match span {
            Span::Words(w) => out.push_str(w),
            Span::Name(n) => out.push_str(&name(n)),
            Span::Target(t) => out.push_str(&target(t)),
            Span::Full(inner) if reading == Reading::Full => {
                render_spans(inner, reading, name, target, out)
            }
            Span::Brief(inner) if reading == Reading::Brief => {
                render_spans(inner, reading, name, target, out)
            }
            Span::Full(_) | Span::Brief(_) => {}
        }
    }
}

/// What a detail line tells, so a renderer can choose the ones its layout has room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// The process, by command name (and pid).
    Process,
    /// Which case of small I/O.
    Case,
    /// The call path.
    Path,
    /// The calls a buffer would save.
    Saves,
    /// A function that waited, and how long.
    WaitedIn,
    /// The matching functions, with their shares.
    Functions,
    /// Their callers, with their shares.
    Callers,
    /// How many allocations, and their bytes.
    Allocations,
}

/// A line under a finding's title.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// What it tells.
    pub fact: Fact,
    /// The line.
    pub text: Text,
}

/// A finding: what was found, in words, with what to do and where to look.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What it is about.
    pub kind: FindingKind,
    /// The profile it is about.
    pub profile: ProfileKind,
    /// One line saying what was found.
    pub title: Text,
    /// Further lines: the call path, what waited, the saving.
    pub details: Vec<Detail>,
    /// What to do.
    pub hint: String,
    /// Functions the report highlights.
    pub functions: Vec<String>,
    /// The process (its command name) the report zooms into, if one.
    pub process: Option<String>,
    /// Frames under the process leading to the place the report zooms to; may stop short
    /// or be empty.
    pub path: Vec<String>,
    /// The function the report zooms to (the heaviest frame of that name under `path`).
    pub focus: String,
}

impl Finding {
    /// The details telling `fact`, in order.
    pub fn details_of(&self, fact: Fact) -> impl Iterator<Item = &Text> {
        self.details
            .iter()
            .filter(move |d| d.fact == fact)
            .map(|d| &d.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reading_shows_its_own_words_and_renders_names() {
        let text = Text::words("x in ")
            .name("a_long_name")
            .only(Reading::Full, Text::words(" in full"))
            .only(Reading::Brief, Text::words(" briefly"))
            .push(" by ")
            .target("app");
        assert_eq!(text.full(), "x in a_long_name in full by app");
        let short = |n: &str| n.chars().take(3).collect::<String>();
        let upper = |t: &str| t.to_uppercase();
        assert_eq!(
            text.render(Reading::Brief, &short, &upper),
            "x in a_l briefly by APP"
        );
    }
}
