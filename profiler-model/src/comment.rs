//! A profile's comments, typed by what they say: the run's facts, how it sampled or
//! traced, how its stacks were unwound, and what it received and lost. They become text
//! only in the pprof writer and are typed again only by the pprof reader.

use crate::account::Account;
use crate::facts::RunFacts;

/// One comment of a profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Comment {
    /// The run's facts (`run: host ..., kernel ...`), which every profile says first, and
    /// their words.
    Run {
        /// The facts.
        facts: RunFacts,
        /// As they are written: a file's own words, whatever the facts made of them.
        text: String,
    },
    /// How the profile sampled or traced (`sampling: ...`, `traced: ...`): the files say
    /// it, the terminal leaves it to them.
    Method(String),
    /// How the run's stacks were unwound (`unwinding: ...`), the same in every profile of
    /// a run.
    Unwinding(String),
    /// What was received, expected and lost, what it cost, and any other note.
    Account(Account),
}

/// The words a comment of each kind starts with, for the reader alone.
const METHOD: [&str; 2] = ["sampling:", "traced:"];
const UNWINDING: &str = "unwinding:";

impl Comment {
    /// The comment as text, as it is written into a pprof file.
    pub fn text(&self) -> String {
        match self {
            Self::Run { text, .. } | Self::Method(text) | Self::Unwinding(text) => text.clone(),
            Self::Account(account) => account.text(),
        }
    }

    /// The comment of a run's facts.
    pub fn run(facts: RunFacts) -> Self {
        let text = facts.encode();
        Self::Run { facts, text }
    }

    /// The comment a pprof file holds as `text`.
    pub fn read(text: String) -> Self {
        if let Some(facts) = RunFacts::decode(&text) {
            Self::Run { facts, text }
        } else if METHOD.iter().any(|p| text.starts_with(p)) {
            Self::Method(text)
        } else if text.starts_with(UNWINDING) {
            Self::Unwinding(text)
        } else {
            Self::Account(Account::read(text))
        }
    }
}

impl std::fmt::Display for Comment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_the_text_gives_the_comment_back() {
        let comments = [
            Comment::run(RunFacts {
                host: Some("h".to_owned()),
                kernel: Some("6.1.0".to_owned()),
                cpus: Some(2),
                ..RunFacts::default()
            }),
            Comment::Method("sampling: cpu-clock at 99 Hz".to_owned()),
            Comment::Method("traced: every call of read".to_owned()),
            Comment::Unwinding("unwinding: call graph fp".to_owned()),
            Comment::Account(Account::Note("lost: 0 samples".to_owned())),
            Comment::Account(Account::LabelsLeftOut(2)),
        ];
        for comment in comments {
            let again = Comment::read(comment.text());
            assert_eq!(again.text(), comment.text());
            if let Comment::Account(_) = comment {
                assert_eq!(again, comment);
            }
            assert_eq!(
                std::mem::discriminant(&again),
                std::mem::discriminant(&comment),
                "{comment}"
            );
        }
    }
}
