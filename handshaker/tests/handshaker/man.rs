//! umbra-handshaker(8): the page the Debian package installs.

use std::process::Command;

#[test]
fn the_manual_page_is_section_8_and_names_every_option() {
    let bin = env!("CARGO_BIN_EXE_umbra-handshaker");
    let man = Command::new(bin).arg("--man").output().expect("runs");
    assert!(man.status.success(), "--man fails");
    let page = String::from_utf8(man.stdout).expect("UTF-8");
    assert!(
        page.starts_with(".ie") || page.contains("\n.TH umbra-handshaker 8"),
        "not a section 8 page"
    );
    for section in ["OPTIONS", "FILES", "SIGNALS", "SEE ALSO"] {
        assert!(
            page.contains(&format!(".SH {section}")),
            "no {section} section"
        );
    }
    // Every option --help lists is in the page (and the hidden --man is not).
    let help = Command::new(bin).arg("--help").output().expect("runs");
    let help = String::from_utf8(help.stdout).expect("UTF-8");
    let options: Vec<&str> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-'))
        .filter(|w| !w.is_empty())
        .collect();
    assert!(options.len() >= 7, "too few options in --help: {options:?}");
    for o in options {
        assert!(
            page.contains(&format!("\\-\\-{}", o.replace('-', "\\-"))),
            "--{o} is not in the page"
        );
    }
    assert!(
        !page.contains("\\-\\-man"),
        "the page documents the hidden --man"
    );
}
