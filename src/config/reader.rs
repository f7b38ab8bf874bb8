//! Walks a parsed TOML document, collecting every problem with its line and key path.
//!
//! Reading never stops at the first error: each accessor records what is wrong and returns
//! `None`, so one run reports everything a user has to fix.

use std::collections::HashMap;
use std::fmt::Display;
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::duration::parse_duration;
use super::file::{ConfigError, ConfigErrors};
use super::origin::Origin;

/// Keys earlier versions accepted, by path, with why they went (CHANGELOG.md has the detail).
const REMOVED_KEYS: &[(&str, &str)] = &[
    (
        "runtime.wake_batch",
        "with wake-up batching (see CHANGELOG.md)",
    ),
    (
        "runtime.wake_batch_wait",
        "with wake-up batching (see CHANGELOG.md)",
    ),
];

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// Collects errors against one source text.
pub(crate) struct Reader<'s> {
    text: &'s str,
    file: &'s str,
    errors: Vec<ConfigError>,
    /// The line of every value read, by key path, for checks made after loading.
    lines: HashMap<String, usize>,
}

/// A table being read: its entries, its dotted key path and its span (the line of a
/// missing key's error is the table's header).
pub(crate) struct Table<'t, 'i> {
    entries: &'t DeTable<'i>,
    path: String,
    span: Range<usize>,
}

impl<'t, 'i> Table<'t, 'i> {
    pub(crate) fn root(document: &'t Spanned<DeTable<'i>>) -> Self {
        Self {
            entries: document.get_ref(),
            path: String::new(),
            span: document.span(),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        self.entries.get(key)
    }

    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// Entries with their key spans, for tables keyed by user-chosen names.
    pub(crate) fn entries(
        &self,
    ) -> impl Iterator<Item = (&'t Spanned<std::borrow::Cow<'i, str>>, &'t Value<'i>)> {
        self.entries.iter()
    }
}

impl<'s> Reader<'s> {
    pub(crate) fn new(text: &'s str, file: &'s str) -> Self {
        Self {
            text,
            file,
            errors: Vec::new(),
            lines: HashMap::new(),
        }
    }

    /// The name of the file being read, as errors give it.
    pub(crate) fn file(&self) -> &'s str {
        self.file
    }

    /// Notes where the value at `path` is written.
    pub(crate) fn record_line(&mut self, path: &str, span: &Range<usize>) {
        let line = self.line_of(span.start);
        self.lines.insert(path.to_owned(), line);
    }

    /// Where every value read so far is written.
    pub(crate) fn origin(&mut self) -> Origin {
        Origin::for_file(self.file, std::mem::take(&mut self.lines))
    }

    /// 1-based line of a byte offset into the source.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let before = self
            .text
            .as_bytes()
            .get(..offset)
            .unwrap_or(self.text.as_bytes());
        before.iter().filter(|&&b| b == b'\n').count() + 1
    }

    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = Some(self.line_of(span.start));
        self.push(line, key.into(), message.into());
    }

    /// For something missing from the whole file, which has no line to point at.
    pub(crate) fn error_without_line(
        &mut self,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(None, key.into(), message.into());
    }

    fn push(&mut self, line: Option<usize>, key: String, message: String) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            key,
            message,
        });
    }

    /// How many errors were recorded so far: a part read without adding any is valid.
    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// `value` if nothing was wrong, else every error in file order.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(value);
        }
        Err(self.into_errors())
    }

    /// Every error recorded, in file order (those without a line first).
    pub(crate) fn into_errors(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|error| error.line);
        ConfigErrors(self.errors)
    }

    /// Reports every key of `table` not in `known`: a typo must never be silently ignored.
    /// A key that an earlier version knew says so, so that an upgrade tells what to change.
    pub(crate) fn deny_unknown_keys(&mut self, table: &Table<'_, '_>, known: &[&str]) {
        for (key, _) in table.entries.iter() {
            if known.contains(&key.get_ref().as_ref()) {
                continue;
            }
            let path = table.key_path(key.get_ref());
            let message = match REMOVED_KEYS.iter().find(|(removed, _)| *removed == path) {
                Some((_, why)) => format!("was removed {why}: delete this line"),
                None => format!(
                    "unknown key {:?} (expected one of: {})",
                    key.get_ref(),
                    known.join(", ")
                ),
            };
            self.error(key.span(), path, message);
        }
    }

    /// Views `value` (found at `path`) as a table.
    pub(crate) fn as_table<'t, 'i>(
        &mut self,
        value: &'t Value<'i>,
        path: String,
    ) -> Option<Table<'t, 'i>> {
        match value.get_ref() {
            DeValue::Table(entries) => Some(Table {
                entries,
                path,
                span: value.span(),
            }),
            other => {
                self.error(
                    value.span(),
                    path,
                    format!("expected a table, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// The sub-table `key` of `table`, if present; `known` lists the keys it may hold.
    pub(crate) fn section<'t, 'i>(
        &mut self,
        table: &Table<'t, 'i>,
        key: &str,
        known: &[&str],
    ) -> Option<Table<'t, 'i>> {
        let section = self.as_table(table.get(key)?, table.key_path(key))?;
        self.deny_unknown_keys(&section, known);
        Some(section)
    }

    /// Converts the value of `key`, if present; a conversion error is recorded at the value.
    pub(crate) fn field<'t, 'i, T>(
        &mut self,
        table: &Table<'t, 'i>,
        key: &str,
        convert: impl FnOnce(&'t DeValue<'i>) -> Result<T, String>,
    ) -> Option<T> {
        let value = table.get(key)?;
        self.convert(value, table.key_path(key), convert)
    }

    /// Like [`Reader::field`], but a missing key is an error too.
    pub(crate) fn required<'t, 'i, T>(
        &mut self,
        table: &Table<'t, 'i>,
        key: &str,
        convert: impl FnOnce(&'t DeValue<'i>) -> Result<T, String>,
    ) -> Option<T> {
        if table.get(key).is_none() {
            self.error(
                table.span(),
                table.key_path(key),
                format!("missing required key {key:?}"),
            );
            return None;
        }
        self.field(table, key, convert)
    }

    /// Like [`Reader::field`], but an absent key gives `Some(default)`: `None` then means
    /// the value is invalid (and reported), so a check across keys can skip it.
    pub(crate) fn field_or<'t, 'i, T>(
        &mut self,
        table: &Table<'t, 'i>,
        key: &str,
        default: T,
        convert: impl FnOnce(&'t DeValue<'i>) -> Result<T, String>,
    ) -> Option<T> {
        if table.get(key).is_none() {
            return Some(default);
        }
        self.field(table, key, convert)
    }

    /// Records `message` at the first of `keys` that `table` sets. For a rule relating
    /// keys: the one the user wrote is the one to blame, the other may be at its default.
    pub(crate) fn error_at_set_key(
        &mut self,
        table: &Table<'_, '_>,
        keys: &[&str],
        message: impl Into<String>,
    ) {
        let set = keys.iter().find_map(|&key| Some((key, table.get(key)?)));
        if let Some((key, value)) = set {
            self.error(value.span(), table.key_path(key), message);
        }
    }

    pub(crate) fn convert<'t, 'i, T>(
        &mut self,
        value: &'t Value<'i>,
        path: String,
        convert: impl FnOnce(&'t DeValue<'i>) -> Result<T, String>,
    ) -> Option<T> {
        self.record_line(&path, &value.span());
        convert(value.get_ref())
            .map_err(|message| self.error(value.span(), path, message))
            .ok()
    }
}

/// "a string", "an integer", ...: the type of a value as an error message names it.
pub(crate) fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

pub(crate) fn wrong_type(expected: &str, found: &DeValue<'_>) -> String {
    format!("expected {expected}, found {}", describe(found))
}

pub(crate) fn boolean(value: &DeValue<'_>) -> Result<bool, String> {
    match value {
        DeValue::Boolean(b) => Ok(*b),
        other => Err(wrong_type("a boolean (true or false)", other)),
    }
}

pub(crate) fn string<'t>(value: &'t DeValue<'_>) -> Result<&'t str, String> {
    match value {
        DeValue::String(s) => Ok(s),
        other => Err(wrong_type("a string", other)),
    }
}

pub(crate) fn duration(value: &DeValue<'_>) -> Result<Duration, String> {
    match value {
        DeValue::String(text) => parse_duration(text),
        other => Err(wrong_type("a duration with a unit, e.g. \"10s\"", other)),
    }
}

/// An integer within `range`, converted to `T`.
pub(crate) fn integer_in<T>(range: RangeInclusive<T>) -> impl Fn(&DeValue<'_>) -> Result<T, String>
where
    T: TryFrom<i64> + PartialOrd + Display + Copy,
{
    move |value| {
        let DeValue::Integer(integer) = value else {
            return Err(wrong_type("an integer", value));
        };
        let out_of_range = |shown: &dyn Display| {
            format!(
                "{shown} is out of range (must be between {} and {})",
                range.start(),
                range.end()
            )
        };
        let n = i64::from_str_radix(integer.as_str(), integer.radix())
            .map_err(|_| out_of_range(integer))?;
        let n = T::try_from(n).map_err(|_| out_of_range(&n))?;
        if !range.contains(&n) {
            return Err(out_of_range(&n));
        }
        Ok(n)
    }
}
