//! Where each setting was written, so that a check made after loading (one that needs this
//! machine, such as which cpus exist) names the place as the loader would:
//! `FILE:LINE: KEY: message`, or the flag that set it.

use std::collections::HashMap;

use super::file::ConfigError;

/// The file and line of every key the loader read, and the keys a flag has overridden.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// `None` when the configuration came from flags alone.
    file: Option<String>,
    lines: HashMap<String, usize>,
    flags: HashMap<String, &'static str>,
}

/// Equal configurations are equal settings, wherever they were written.
impl PartialEq for Origin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Origin {
    pub(crate) fn for_file(file: &str, lines: HashMap<String, usize>) -> Self {
        Self {
            file: Some(file.to_owned()),
            lines,
            flags: HashMap::new(),
        }
    }

    /// Records that `flag` set `key`, replacing whatever the file said.
    pub fn set_by_flag(&mut self, key: &str, flag: &'static str) {
        self.flags.insert(key.to_owned(), flag);
    }

    /// An error about the setting `key` (a dotted path, e.g. `runtime.cpus`), placed where
    /// that setting was written: the flag that set it, else its line in the file.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        if let Some(flag) = self.flags.get(key) {
            return ConfigError {
                file: "ringproxy".to_owned(),
                line: None,
                key: (*flag).to_owned(),
                message,
            };
        }
        ConfigError {
            file: self.file.clone().unwrap_or_else(|| "ringproxy".to_owned()),
            line: self.lines.get(key).copied(),
            key: key.to_owned(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_flag_else_the_line_else_the_file() {
        let lines = HashMap::from([("runtime.cpus".to_owned(), 3)]);
        let mut origin = Origin::for_file("x.toml", lines);
        assert_eq!(
            origin.error("runtime.cpus", "bad").to_string(),
            "x.toml:3: runtime.cpus: bad"
        );
        assert_eq!(
            origin.error("runtime.workers", "bad").to_string(),
            "x.toml: runtime.workers: bad"
        );
        origin.set_by_flag("runtime.cpus", "--cpus");
        assert_eq!(
            origin.error("runtime.cpus", "bad").to_string(),
            "ringproxy: --cpus: bad"
        );
        assert_eq!(
            Origin::default().error("runtime.cpus", "bad").to_string(),
            "ringproxy: runtime.cpus: bad"
        );
    }
}
