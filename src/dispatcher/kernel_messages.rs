//! Kernel trouble printed on the console while a board boots towards its login or shell
//! prompt: warnings, oopses, BUGs, sanitizer reports and panics, as LAVA's `kernel-messages`
//! check knows them. Each kind is a start pattern and an end pattern; a panic is fatal and
//! ends the job at once instead of waiting for a prompt that cannot come.
//!
//! Pure: the patterns and the classification. `dispatcher::runner` does the waiting.

use std::sync::LazyLock;

use regex::Regex;

/// LAVA's name for the check, the case it records in the `lava` suite.
pub const NAME: &str = "kernel-messages";

/// One kind of kernel message.
#[derive(Debug)]
pub struct Kind {
    /// The message's first words.
    start: Regex,
    /// Its last line.
    pub end: Regex,
    /// Its kind; `None` when only the text can tell (the generic `cut here` block).
    kind: Option<&'static str>,
    /// Whether the kernel cannot go on.
    pub fatal: bool,
}

/// The known kinds, in matching priority order. Line ends are `\r?\n`: a serial console sends
/// `\r\n`, an emulator's stdio may send `\n`.
pub static KINDS: LazyLock<Vec<Kind>> = LazyLock::new(|| {
    let kind = |start: &str, end: &str, kind: Option<&'static str>, fatal: bool| Kind {
        start: Regex::new(start).unwrap_or_else(|e| panic!("kernel message pattern {start}: {e}")),
        end: Regex::new(end).unwrap_or_else(|e| panic!("kernel message pattern {end}: {e}")),
        kind,
        fatal,
    };
    let line = r"\r?\n";
    vec![
        kind(
            r"-\[ cut here \]",
            r"-+\[ end trace \w* \]-+[^\n]*\n",
            None,
            false,
        ),
        kind("Unhandled fault", line, Some("fault"), false),
        kind("BUG: KCSAN:", r"=+\r?\n", Some("kcsan"), false),
        kind("BUG: KASAN:", r"=+\r?\n", Some("kasan"), false),
        kind("BUG: KFENCE:", r"=+\r?\n", Some("kfence"), false),
        kind("Oops(?: -|:)", line, Some("oops"), false),
        kind("WARNING:", r"end trace[^\n]*\n", Some("warning"), false),
        kind("(?:kernel BUG at|BUG:)", line, Some("bug"), false),
        kind("invalid opcode:", line, Some("invalid opcode"), false),
        kind(
            "Kernel panic - not syncing",
            r"end Kernel panic[^\n]*\n",
            Some("panic"),
            true,
        ),
    ]
});

/// The start patterns, in [`KINDS`] order, to wait for alongside a prompt.
pub fn start_patterns() -> Vec<Regex> {
    KINDS.iter().map(|k| k.start.clone()).collect()
}

/// What a message of `KINDS[index]` is, from its text when the pattern alone cannot tell.
pub fn classify(index: usize, message: &str) -> &'static str {
    match KINDS.get(index).and_then(|k| k.kind) {
        Some(kind) => kind,
        None if message.contains("Oops") => "oops",
        None if message.contains("BUG") => "bug",
        None if message.contains("WARNING") => "warning",
        None => "unknown",
    }
}

/// The whole message: the start of its line (from the text `before` the start match), the
/// match, and up to its end, without the final line break.
pub fn message(before: &str, start: &str, rest: &str) -> String {
    let line_start = before.rfind('\n').map_or(before, |i| &before[i + 1..]);
    format!("{line_start}{start}{rest}")
        .trim_end_matches(['\r', '\n'])
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_match(text: &str) -> Option<usize> {
        start_patterns()
            .iter()
            .enumerate()
            .filter_map(|(i, re)| re.find(text).map(|m| (i, m.start())))
            .min_by_key(|&(_, at)| at)
            .map(|(i, _)| i)
    }

    #[test]
    fn a_panic_is_found_fatal_and_ends_at_its_end_marker() {
        let console = "[    1.2] Kernel panic - not syncing: No working init found.\r\n\
                       [    1.3] ---[ end Kernel panic - not syncing: No working init found. ]---\r\n";
        let i = first_match(console).unwrap();
        assert!(KINDS[i].fatal);
        assert_eq!(classify(i, console), "panic");
        let start = KINDS[i].start.find(console).unwrap();
        let end = KINDS[i].end.find(&console[start.end()..]).unwrap();
        let text = message(
            &console[..start.start()],
            start.as_str(),
            &console[start.end()..start.end() + end.end()],
        );
        assert!(text.starts_with("[    1.2] Kernel panic"), "{text}");
        assert!(text.ends_with("init found. ]---"), "{text}");
    }

    #[test]
    fn warnings_and_bugs_are_not_fatal_and_cut_here_is_classified_by_text() {
        for (text, kind) in [
            ("WARNING: CPU: 0 PID: 1 at kernel/x.c:1\r\n", "warning"),
            ("BUG: unable to handle page fault\r\n", "bug"),
            ("kernel BUG at mm/slub.c:1!\r\n", "bug"),
            ("Internal error: Oops: 5 [#1]\r\n", "oops"),
            ("BUG: KASAN: use-after-free\r\n", "kasan"),
            ("Unhandled fault: alignment\r\n", "fault"),
        ] {
            let i = first_match(text).unwrap_or_else(|| panic!("{text}"));
            assert!(!KINDS[i].fatal, "{text}");
            assert_eq!(classify(i, text), kind, "{text}");
        }
        let cut = "------------[ cut here ]------------\r\nWARNING: CPU: 0\r\n";
        let i = first_match(cut).unwrap();
        assert_eq!(classify(i, cut), "warning");
        assert_eq!(classify(i, "-[ cut here ]\r\nsomething"), "unknown");
    }

    #[test]
    fn a_clean_boot_matches_nothing() {
        let boot = "[    0.000000] Linux version 6.1.0\r\nRun /init as init process\r\n/ # ";
        assert_eq!(first_match(boot), None);
    }
}
