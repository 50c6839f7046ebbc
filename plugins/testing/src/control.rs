//! The control file: how a test tells the testing plugin to report availability changes.
//!
//! A background thread polls the file every [`POLL_INTERVAL`]. Whenever its content differs
//! from the last content seen, every line is applied in order:
//!
//! ```text
//! instance down <reason...>     host.set_instance_available(false, reason)
//! instance up                   host.set_instance_available(true, "")
//! keys down <ref> [<ref>...]    host.set_keys_available(refs, false, ...)
//! keys up <ref> [<ref>...]      host.set_keys_available(refs, true, "")
//! ```
//!
//! Lines are commands, not a description of state: writing `instance up` alone brings the
//! instance back but leaves keys marked down as they were. Blank lines and lines starting
//! with `#` are skipped; anything else is logged as a warning and skipped. A missing file
//! changes nothing, and rewriting the same content does not apply it again.
//!
//! The plugin itself follows what it reported, as a real remote backend would: while the
//! instance is down every operation but `info` fails with `UNAVAILABLE` (`health` with the
//! reason), and so do `encrypt` and `decrypt` for keys marked down.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError, Weak},
    thread,
    time::Duration,
};

use abi_stable::std_types::{RStr, RString};
use keybroker_plugin_abi::{host_log, HostBox, LogLevel};

/// How often the control file is read.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// One line of the control file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    InstanceDown(String),
    InstanceUp,
    KeysDown(Vec<String>),
    KeysUp(Vec<String>),
}

/// Parses the control file: the commands, and a message for each line that is not one.
pub(crate) fn parse(content: &str) -> (Vec<Command>, Vec<String>) {
    let mut commands = Vec::new();
    let mut rejected = Vec::new();
    for (index, line) in content.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let command = match (words.next(), words.next()) {
            (Some("instance"), Some("down")) => {
                Some(Command::InstanceDown(words.collect::<Vec<_>>().join(" ")))
            }
            (Some("instance"), Some("up")) if words.next().is_none() => Some(Command::InstanceUp),
            (Some("keys"), Some(state @ ("down" | "up"))) => {
                let references: Vec<String> = words.map(str::to_owned).collect();
                match (references.is_empty(), state) {
                    (true, _) => None,
                    (false, "down") => Some(Command::KeysDown(references)),
                    (false, _) => Some(Command::KeysUp(references)),
                }
            }
            _ => None,
        };
        match command {
            Some(command) => commands.push(command),
            None => rejected.push(format!("control file line {} ignored: {line:?}", index + 1)),
        }
    }
    (commands, rejected)
}

/// What the plugin last reported, shared by the backend and the polling thread.
pub(crate) struct State {
    host: HostBox,
    instance_down: Mutex<Option<String>>,
    keys_down: Mutex<BTreeSet<String>>,
}

impl State {
    pub(crate) fn new(host: HostBox) -> Self {
        Self {
            host,
            instance_down: Mutex::new(None),
            keys_down: Mutex::new(BTreeSet::new()),
        }
    }

    pub(crate) fn host(&self) -> &HostBox {
        &self.host
    }

    /// The reason given by the last `instance down`, if the instance is down.
    pub(crate) fn instance_down_reason(&self) -> Option<String> {
        self.instance_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether `keys down` named this reference (and no later `keys up` did).
    pub(crate) fn is_key_down(&self, reference: &str) -> bool {
        self.keys_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(reference)
    }

    /// Applies commands in order, reporting each to the host.
    pub(crate) fn apply(&self, commands: &[Command]) {
        for command in commands {
            match command {
                Command::InstanceDown(reason) => {
                    *self
                        .instance_down
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(reason.clone());
                    self.host
                        .set_instance_available(false, RStr::from(reason.as_str()));
                    self.log(&format!("instance down: {reason}"));
                }
                Command::InstanceUp => {
                    *self
                        .instance_down
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = None;
                    self.host.set_instance_available(true, RStr::from(""));
                    self.log("instance up");
                }
                Command::KeysDown(references) | Command::KeysUp(references) => {
                    let down = matches!(command, Command::KeysDown(_));
                    {
                        let mut keys_down = self
                            .keys_down
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        for reference in references {
                            if down {
                                keys_down.insert(reference.clone());
                            } else {
                                keys_down.remove(reference);
                            }
                        }
                    }
                    let references: Vec<RString> = references
                        .iter()
                        .map(|r| RString::from(r.as_str()))
                        .collect();
                    let reason = if down { "keys down (control file)" } else { "" };
                    self.host.set_keys_available(
                        references.as_slice().into(),
                        !down,
                        RStr::from(reason),
                    );
                    let state = if down { "down" } else { "up" };
                    self.log(&format!("keys {state}: {}", references.len()));
                }
            }
        }
    }

    fn log(&self, message: &str) {
        host_log(
            &self.host,
            LogLevel::INFO,
            &format!("testing plugin: control file applied: {message}"),
        );
    }
}

/// Reads the control file once and applies it if its content changed since `last`.
pub(crate) fn poll_once(path: &Path, last: &mut Option<String>, state: &State) {
    let Ok(content) = std::fs::read_to_string(path) else {
        // Missing (or unreadable for a moment while a test rewrites it): no change.
        return;
    };
    if last.as_deref() == Some(content.as_str()) {
        return;
    }
    let (commands, rejected) = parse(&content);
    for message in rejected {
        host_log(
            state.host(),
            LogLevel::WARN,
            &format!("testing plugin: {message}"),
        );
    }
    state.apply(&commands);
    *last = Some(content);
}

/// Polls the control file until the backend (the only strong owner of `state`) is dropped.
pub(crate) fn spawn_watcher(
    path: PathBuf,
    mut last: Option<String>,
    state: Weak<State>,
) -> std::io::Result<()> {
    thread::Builder::new()
        .name("kb-testing-control".to_owned())
        .spawn(move || loop {
            thread::sleep(POLL_INTERVAL);
            let Some(state) = state.upgrade() else {
                return;
            };
            poll_once(&path, &mut last, &state);
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::RecordingHost;

    #[test]
    fn parses_every_command() {
        let (commands, rejected) = parse(
            "# comment\n\ninstance down agent  unplugged \ninstance up\n\
             keys down t/a/1 t/a/2\nkeys up t/a/1\ninstance down\n",
        );
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(
            commands,
            vec![
                Command::InstanceDown("agent unplugged".to_owned()),
                Command::InstanceUp,
                Command::KeysDown(vec!["t/a/1".to_owned(), "t/a/2".to_owned()]),
                Command::KeysUp(vec!["t/a/1".to_owned()]),
                Command::InstanceDown(String::new()),
            ]
        );
    }

    #[test]
    fn rejects_unknown_lines() {
        let (commands, rejected) =
            parse("instance sideways\nkeys down\ninstance up now\nreboot\ninstance up");
        assert_eq!(commands, vec![Command::InstanceUp]);
        assert_eq!(rejected.len(), 4, "{rejected:?}");
        assert!(rejected[0].contains("line 1"));
    }

    #[test]
    fn applies_changes_only_when_the_content_changes() {
        let host = RecordingHost::default();
        let state = State::new(host.clone().into_box());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        let mut last = None;

        poll_once(&path, &mut last, &state);
        assert!(host.events().is_empty(), "a missing file changes nothing");

        std::fs::write(&path, "instance down maintenance window\nkeys down t/a/1\n").unwrap();
        poll_once(&path, &mut last, &state);
        assert_eq!(
            state.instance_down_reason().as_deref(),
            Some("maintenance window")
        );
        assert!(state.is_key_down("t/a/1"));
        let events = host.events();
        assert!(events.contains(&"instance false maintenance window".to_owned()));
        assert!(events.contains(&"keys [\"t/a/1\"] false keys down (control file)".to_owned()));
        assert!(events.iter().any(|e| e.starts_with("log INFO")));

        let before = host.events().len();
        poll_once(&path, &mut last, &state);
        assert_eq!(
            host.events().len(),
            before,
            "same content is not applied twice"
        );

        std::fs::write(&path, "instance up\nkeys up t/a/1\n").unwrap();
        poll_once(&path, &mut last, &state);
        assert_eq!(state.instance_down_reason(), None);
        assert!(!state.is_key_down("t/a/1"));
        assert!(host.events().contains(&"instance true ".to_owned()));

        std::fs::remove_file(&path).unwrap();
        let before = host.events().len();
        poll_once(&path, &mut last, &state);
        assert_eq!(host.events().len(), before);
    }
}
