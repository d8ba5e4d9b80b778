//! The atomic-directory scheme both writers follow (host files and container archives): slots, links, order.

/// The link naming the live slot.
pub const DATA_LINK: &str = "..data";
/// The two slot directories, alternating.
pub const SLOTS: [&str; 2] = ["..certdock-a", "..certdock-b"];
/// What every slot name starts with (and nothing a caller may name a file).
pub const SLOT_PREFIX: &str = "..certdock-";
/// Inside each slot: the caller's version string, for humans and for checks (`dir/..data/.version`).
pub const VERSION_FILE: &str = ".version";

/// One step of an update, in the order it must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    /// Empty the slot that is not live (its files are the version before the live one).
    ClearSlot(&'static str),
    /// Write file `name` into the slot.
    WriteFile { slot: &'static str, name: &'a str },
    /// Write [`VERSION_FILE`] into the slot, last of the slot's contents.
    WriteVersion(&'static str),
    /// Point [`DATA_LINK`] at the slot: the one atomic switch.
    SwapData(&'static str),
    /// Make `name` a link to `..data/name` (only for links missing or pointing elsewhere).
    LinkFile(&'a str),
}

/// Which slot a `..data` link target names (the last path component); `None` for none of ours,
/// e.g. before the first update or a version directory of an older release.
pub fn slot_of(link_target: &str) -> Option<usize> {
    let last = link_target.rsplit('/').next().unwrap_or(link_target);
    SLOTS.iter().position(|s| *s == last)
}

/// The slot an update writes: the one that is not live.
pub fn next_slot(live: Option<usize>) -> &'static str {
    match live {
        Some(0) => SLOTS[1],
        _ => SLOTS[0],
    }
}

/// Where the public link `name` points: `..data/name`.
pub fn file_link_target(name: &str) -> String {
    format!("{DATA_LINK}/{name}")
}

/// Whether a public link already resolves into the live slot, given its (possibly resolved,
/// absolute) target: the host reads `..data/name`, Docker reports `/dir/..certdock-a/name`.
pub fn link_is_current(target: &str, name: &str, live: Option<usize>) -> bool {
    target == file_link_target(name)
        || live.is_some_and(|slot| target.ends_with(&format!("/{}/{name}", SLOTS[slot])))
}

/// What [`VERSION_FILE`] holds: the caller's version string and a newline.
pub fn version_line(version: &str) -> String {
    format!("{version}\n")
}

/// The name a link is made under before `rename(2)` puts it in place as `name` (by this
/// process: two writers never share one).
pub fn temp_link_name(name: &str) -> String {
    format!(".{name}.{}.tmp", std::process::id())
}

/// Whether `name` is reserved by the layout (never a deliverable file name).
pub fn is_reserved(name: &str) -> bool {
    name.starts_with("..") || name == VERSION_FILE
}

/// The steps of one update of `files`, given the live slot and which public links are already
/// right (`linked`). The layout of a delivery directory (Kubernetes' atomic-writer idea, with
/// two alternating slots):
///
/// ```text
/// dir/..certdock-a/            one of two slot directories, each a complete version
/// dir/..certdock-b/              (plus `.version`, the caller's version string)
/// dir/..data -> ..certdock-b   the live slot: the only entry replaced on an update
/// dir/cert.pem -> ..data/cert.pem, …   made once, re-made only when missing or wrong
/// ```
///
/// An update writes the slot that is not live, then swaps `..data`, then adds missing file
/// links. A reader never sees a half-written file, files read through `..data` belong to one
/// version, and the previous version stays intact until the next update. The host writer
/// (`delivery::bundle`) swaps `..data` with `rename(2)`; the container writer
/// (`docker::upload`) sends the same steps as one archive that Docker extracts in order.
pub fn swap_steps<'a>(
    files: &[&'a str],
    live: Option<usize>,
    linked: impl Fn(&str) -> bool,
) -> Vec<Step<'a>> {
    let slot = next_slot(live);
    let mut steps = vec![Step::ClearSlot(slot)];
    steps.extend(files.iter().map(|name| Step::WriteFile { slot, name }));
    steps.push(Step::WriteVersion(slot));
    steps.push(Step::SwapData(slot));
    steps.extend(
        files
            .iter()
            .filter(|name| !linked(name))
            .map(|name| Step::LinkFile(name)),
    );
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_writes_the_idle_slot_before_swapping_data_then_links() {
        let steps = swap_steps(&["cert.pem", "key.pem"], Some(0), |n| n == "key.pem");
        assert_eq!(
            steps,
            [
                Step::ClearSlot("..certdock-b"),
                Step::WriteFile {
                    slot: "..certdock-b",
                    name: "cert.pem"
                },
                Step::WriteFile {
                    slot: "..certdock-b",
                    name: "key.pem"
                },
                Step::WriteVersion("..certdock-b"),
                Step::SwapData("..certdock-b"),
                Step::LinkFile("cert.pem"),
            ]
        );
    }

    #[test]
    fn slots_alternate_and_foreign_targets_start_at_the_first() {
        assert_eq!(next_slot(None), SLOTS[0]);
        assert_eq!(next_slot(Some(0)), SLOTS[1]);
        assert_eq!(next_slot(Some(1)), SLOTS[0]);
        assert_eq!(slot_of("/run/certdock/..certdock-b"), Some(1));
        assert_eq!(slot_of("..certdock-a"), Some(0));
        assert_eq!(
            slot_of("..certdock-0a1b-deadbeef"),
            None,
            "an older release's version dir"
        );
        assert_eq!(slot_of("/x/..certdock-ab"), None);
    }

    #[test]
    fn a_link_is_current_when_it_goes_through_data_or_into_the_live_slot() {
        assert!(link_is_current("..data/cert.pem", "cert.pem", None));
        assert!(link_is_current(
            "/run/c/..certdock-b/cert.pem",
            "cert.pem",
            Some(1)
        ));
        assert!(!link_is_current(
            "/run/c/..certdock-a/cert.pem",
            "cert.pem",
            Some(1)
        ));
        assert!(!link_is_current("..data/key.pem", "cert.pem", Some(1)));
        assert!(is_reserved("..data") && is_reserved(".version") && !is_reserved("cert.pem"));
    }
}
